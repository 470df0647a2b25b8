"""Artefact downloads: the stored file of an artefact row, confined to the artefact directory."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from backend.artefact_layout import confined
from backend.db.models import Artefact
from backend.services.errors import NotFound
from backend.settings import Settings


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
    return path, path.name
