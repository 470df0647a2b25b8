"""Checkpoint file I/O: atomic writes and safe reads of plain-dict torch checkpoints.

A checkpoint is written to a temporary file beside the target, flushed to disk and then moved over
the target with `os.replace`, so a worker killed mid-write leaves either the previous checkpoint
or the new one, never a torn file. Reads use `weights_only=True`: checkpoints hold only tensors,
numbers, strings, lists and dicts, and loading never runs pickled code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from workers.engine.errors import EngineError


class CheckpointError(EngineError):
    """A checkpoint file that cannot be read, or that does not fit the run resuming from it."""


def save_atomic(obj: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write `obj` with `torch.save` to `path` atomically (tmp file + fsync + os.replace), readable
    by this user only (0600, like the model files of `artifacts.save_model`)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            torch.save(obj, f)
            f.flush()
            # without fsync a power loss after os.replace can leave an empty file behind the name
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by `save_atomic` onto the CPU; raise CheckpointError if unreadable."""
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (pickle, zip, runtime) for a bad file
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} cannot be read ({exc}); delete it to start the run afresh"
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} does not hold a dict (got {type(obj).__name__})"
        )
    return obj
