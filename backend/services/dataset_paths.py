"""The server-side check of a spec's data set: its path confined to the allowed data roots, its
files there (when `check_dataset_paths`), its synthetic size within the operator's cap.

The pydantic model (`backend/spec.py`) checks format only, because it cannot see the settings; the
worker confines the stored path again before reading (`workers/jobs/common.py: get_data`), since the roots
may have changed since the study was created. Messages quote what the user wrote, never the
directory it resolved to: error bodies must not show readers where the server keeps its data.
"""

from __future__ import annotations

from backend.services.errors import FieldError
from backend.settings import Settings
from backend.spec import StudySpec
from workers.engine import catalog
from workers.engine.errors import DataError

PATH_LOC: list[str | int] = ["body", "dataset", "path"]


def check_dataset_allowed(spec: StudySpec, settings: Settings) -> None:
    """Raise FieldError (422) naming the dataset field when the spec may not use its data set here."""
    dataset = spec.dataset
    if dataset.name == "synthetic":
        try:
            catalog.check_synthetic_size(
                dataset.synthetic_shape, dataset.synthetic_size, settings.max_dataset_bytes
            )
        except DataError as exc:
            raise FieldError(["body", "dataset", "synthetic_size"], str(exc)) from None
    if not catalog.DATASETS[dataset.name].needs_path or dataset.path is None:
        return  # the model already refused a missing path where one is needed
    try:
        resolved = catalog.resolve_dataset_path(dataset.path, settings.dataset_roots)
    except DataError as exc:
        raise FieldError(PATH_LOC, str(exc)) from None
    if not settings.check_dataset_paths:
        return
    try:
        catalog.check_dataset_path(dataset.name, resolved)
    except DataError as exc:
        # The layout messages name files under the resolved directory; show them under the path
        # the user gave instead (a relative path or a symlink must not reveal where it leads).
        raise FieldError(PATH_LOC, str(exc).replace(str(resolved), dataset.path)) from None
