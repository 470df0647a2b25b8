"""Artefact downloads: the stored file of an artefact row, confined to the artefact directory, under
a name that says what it is (study, run or variant, kind)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from sqlalchemy.orm import Session

from backend.artefact_layout import confined
from backend.db.models import Artefact, Run, Variant
from backend.services.errors import NotFound
from backend.settings import Settings

UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.+-]+")


def _name_part(text: str) -> str:
    return UNSAFE_NAME.sub("-", text).strip("-.") or "x"


def download_name(artefact: Artefact, *, study_id: int | None, variant: str | None) -> str:
    """`study-3-run-17-base-checkpoint.pt` for a run's file, `study-3-u50-model.pt` for a
    variant's (no run owns a pruned or measured model): study, run or variant, kind, and the
    stored file's extension. Names are reduced to letters, digits and _ . + - (a header value)."""
    suffix = "".join(PurePosixPath(artefact.path).suffixes[-1:])
    parts = [f"study-{study_id}"] if study_id is not None else []
    if artefact.run_id is not None:
        parts.append(f"run-{artefact.run_id}")
    if variant:
        parts.append(_name_part(variant))
    parts.append(_name_part(artefact.kind))
    stem = "-".join(parts)
    return stem + "." + _name_part(suffix[1:]) if len(suffix) > 1 else stem


def owner_names(session: Session, artefact: Artefact) -> tuple[int | None, str | None]:
    """(study id, variant name) of the run or variant an artefact belongs to."""
    variant_id = artefact.variant_id
    study_id = None
    if artefact.run_id is not None:
        run = session.get(Run, artefact.run_id)
        if run is not None:
            study_id, variant_id = run.study_id, run.variant_id
    variant = session.get(Variant, variant_id) if variant_id is not None else None
    if variant is not None and study_id is None:
        study_id = variant.study_id
    return study_id, None if variant is None else variant.name


def artefact_file(session: Session, artefact_id: int, settings: Settings) -> tuple[Path, str]:
    """(path on disk, download name) of an artefact; NotFound when the row or file is missing or
    the stored path would leave the artefact directory."""
    artefact = session.get(Artefact, artefact_id)
    if artefact is None:
        raise NotFound(f"artefact {artefact_id} not found")
    path = confined(settings.artifact_root, artefact.path)
    if path is None:
        raise NotFound(f"artefact {artefact_id}: its path is outside the artefact directory")
    if not path.is_file():
        raise NotFound(f"artefact {artefact_id}: its file is missing")
    study_id, variant = owner_names(session, artefact)
    return path, download_name(artefact, study_id=study_id, variant=variant)
