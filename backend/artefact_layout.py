"""Where a study's files live under the artefact directory (`settings.artifact_dir`, shared by
every worker and the API). Paths are relative to it, as they are stored in the database.

    study_<id>/                          everything of one study (removed whole when it is deleted)
    study_<id>/run_<id>/checkpoint.pt    training checkpoint (a redelivered run resumes from it)
    study_<id>/run_<id>/model.pt         the trained model (artifacts.save_model)
    study_<id>/run_<id>/rewind_e<t>.pt   base weights at epoch t (prior run only, for rewind variants)
    study_<id>/run_<id>/model.onnx       an int8 / mixed model of a quantise run
    study_<id>/variant_<id>/model.*      the variant's model: pruned architecture + weights, or what
                                         its measure run measured
    study_<id>/variant_<id>/model_fp32.onnx  its fp32 ONNX export, timed by ONNX Runtime (measure run)
"""

from __future__ import annotations

from pathlib import Path


def study_dir(study_id: int) -> str:
    return f"study_{study_id}"


def run_dir(study_id: int, run_id: int) -> str:
    return f"{study_dir(study_id)}/run_{run_id}"


def variant_dir(study_id: int, variant_id: int) -> str:
    return f"{study_dir(study_id)}/variant_{variant_id}"


def checkpoint_rel(study_id: int, run_id: int) -> str:
    return f"{run_dir(study_id, run_id)}/checkpoint.pt"


def rewind_rel(study_id: int, run_id: int, epoch: int) -> str:
    return f"{run_dir(study_id, run_id)}/rewind_e{epoch}.pt"


def confined(root: Path, relative: str) -> Path | None:
    """`root / relative`, resolved, or None when the stored path would leave `root`."""
    base = Path(root).resolve()
    path = (base / relative).resolve()
    return path if path.is_relative_to(base) else None
