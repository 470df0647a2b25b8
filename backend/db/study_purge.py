"""Removing a study for good: its rows, then its files.

Only a study none of whose runs is still held by a worker is purged (the service cancels first and
waits; see backend/services/study_actions.py: delete_study). Rows go in dependency order in one
transaction (also right where SQLite foreign keys are off); files go after the commit: every
recorded artefact, then the study's whole directory (checkpoints and anything a worker wrote
without recording it), both confined to the artefact directory.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.artefact_layout import confined, study_dir
from backend.db.models import Artefact, EpochMetric, Run, Study, Variant

log = logging.getLogger(__name__)


def recorded_files(session: Session, study_id: int) -> set[str]:
    """Relative paths of every file the database records for the study."""
    run_ids = sa.select(Run.id).where(Run.study_id == study_id)
    variant_ids = sa.select(Variant.id).where(Variant.study_id == study_id)
    paths: set[str] = set(
        session.scalars(
            sa.select(Artefact.path).where(
                sa.or_(Artefact.run_id.in_(run_ids), Artefact.variant_id.in_(variant_ids))
            )
        )
    )
    for model_path, checkpoint_path in session.execute(
        sa.select(Run.model_path, Run.checkpoint_path).where(Run.study_id == study_id)
    ):
        paths.update(p for p in (model_path, checkpoint_path) if p)
    paths.update(
        p for p in session.scalars(sa.select(Variant.model_path).where(Variant.study_id == study_id)) if p
    )
    return paths


def purge_study(session: Session, study_id: int, artifact_root: Path) -> bool:
    """Delete the study's rows and files; False when there was no such study. Commits."""
    if session.get(Study, study_id) is None:
        return False
    paths = recorded_files(session, study_id)
    run_ids = sa.select(Run.id).where(Run.study_id == study_id)
    variant_ids = sa.select(Variant.id).where(Variant.study_id == study_id)
    session.execute(sa.update(Run).where(Run.study_id == study_id).values(depends_on_id=None))
    session.execute(
        sa.delete(Artefact).where(sa.or_(Artefact.run_id.in_(run_ids), Artefact.variant_id.in_(variant_ids)))
    )
    session.execute(sa.delete(EpochMetric).where(EpochMetric.run_id.in_(run_ids)))
    session.execute(sa.delete(Run).where(Run.study_id == study_id))
    session.execute(sa.update(Variant).where(Variant.study_id == study_id).values(source_variant_id=None))
    session.execute(sa.delete(Variant).where(Variant.study_id == study_id))
    session.execute(sa.delete(Study).where(Study.id == study_id))
    session.commit()
    remove_files(artifact_root, paths, study_id)
    return True


def remove_files(artifact_root: Path, paths: set[str], study_id: int) -> None:
    """Remove the recorded files and the study's directory; a file that will not go is logged."""
    for rel in sorted(paths):
        path = confined(artifact_root, rel)
        if path is None or not path.is_file():
            continue
        try:
            path.unlink()
        except OSError as exc:
            log.warning("could not remove artefact %s: %s", path, exc)
    folder = confined(artifact_root, study_dir(study_id))
    if folder is not None and folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder, onerror=lambda _f, p, exc: log.warning("could not remove %s: %s", p, exc[1]))


def purge_if_released(session: Session, study_id: int, artifact_root: Path) -> bool:
    """Purge a study marked `deleting` once none of its runs is running any more; True if purged.
    Called by a worker whenever one of its runs ends, and by the reconciler for every such study
    (a worker that died mid-run never ends its run itself). Commits."""
    study = session.get(Study, study_id)
    if study is None or study.status != "deleting":
        session.commit()
        return False
    running = session.scalar(
        sa.select(sa.func.count()).where(Run.study_id == study_id, Run.status == "running")
    )
    if running:
        session.commit()
        return False
    return purge_study(session, study_id, artifact_root)
