"""Whether the artefact store can take a run's files: the check behind /health's `artefacts`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

MIN_FREE_BYTES = 256 * 2**20  # below this a run's checkpoints and model files may not fit


def artefact_store_health(root: Path, min_free_bytes: int = MIN_FREE_BYTES) -> dict[str, Any]:
    """{"ok", "free_bytes", "error"?} for the artefact directory `root`. A directory that does not
    exist yet is fine when the deepest existing ancestor is a writable directory (the first run
    creates it); a file in its place, a read-only directory or too little free space is not."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return {"ok": False, "error": f"{existing} is not a directory, so artefacts cannot be written"}
    if not os.access(existing, os.W_OK | os.X_OK):
        return {"ok": False, "error": f"{existing} is not writable by this process"}
    free = shutil.disk_usage(existing).free
    if free < min_free_bytes:
        return {
            "ok": False,
            "free_bytes": free,
            "error": f"only {free / 2**20:.0f} MiB free for artefacts (runs need at least {min_free_bytes / 2**20:.0f} MiB)",
        }
    return {"ok": True, "free_bytes": free}
