"""IDX files (the FashionMNIST format), raw or gzipped, read within a byte cap.

The header declares the array's size; it is checked against the cap before anything is
allocated, a raw file's length against the header before it is read (a sparse 1 TiB file is
refused unread), and a gzip stream is inflated in 1 MiB chunks into a buffer of the declared size
and refused as soon as it holds more (a gzip bomb stops there).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from workers.engine.catalog import DATASETS, MAX_BYTES_SETTING, MAX_DATASET_BYTES
from workers.engine.errors import DataError

_IDX_NDIM = {2049: 1, 2051: 3}  # magic number -> dimensions (labels, images)
_READ_CHUNK = 2**20


def read_idx(path: Path, *, max_bytes: int = MAX_DATASET_BYTES, already: int = 0) -> np.ndarray:
    """An IDX file (raw or .gz) of unsigned bytes: magic 2049 (labels, 1-d) or 2051 (images, 3-d).

    Nothing is allocated from the file before its header is checked: the size it declares (the
    product of its dimensions, one byte each) plus `already` (bytes the run loaded before) must be
    within `max_bytes`; a raw file's length must be the header plus that size (a sparse 1 TiB file
    is refused unread); a gzip stream is inflated in 1 MiB chunks into a buffer of the declared
    size and refused as soon as it holds more (a gzip bomb stops there).
    """
    expected = DATASETS["fashionmnist"].layout
    gz = path.suffix == ".gz"
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as f:
            return _read_idx_stream(f, path, gz=gz, max_bytes=max_bytes, already=already)
    except FileNotFoundError:
        raise DataError(f"fashionmnist: {path} is missing; expected {expected}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"fashionmnist: {path} cannot be read ({exc}); expected {expected}") from exc


def _read_idx_stream(
    f: io.BufferedIOBase, path: Path, *, gz: bool, max_bytes: int, already: int
) -> np.ndarray:
    expected = DATASETS["fashionmnist"].layout
    head = f.read(8)
    if len(head) < 8:
        raise DataError(f"fashionmnist: {path} is too short for an IDX header; expected {expected}")
    magic = struct.unpack(">i", head[:4])[0]
    ndim = _IDX_NDIM.get(magic)
    if ndim is None:
        raise DataError(
            f"fashionmnist: {path} has magic number {magic}, expected 2049 (labels) or 2051 (images); "
            f"expected {expected}"
        )
    header = 4 + 4 * ndim
    head += f.read(header - len(head))
    if len(head) < header:
        raise DataError(f"fashionmnist: {path} is truncated in its header; expected {expected}")
    dims = struct.unpack(f">{ndim}i", head[4:header])
    if any(d < 0 for d in dims):
        raise DataError(
            f"fashionmnist: {path}: its dimensions {dims} must not be negative; expected {expected}"
        )
    need = math.prod(dims)
    if already + need > max_bytes:
        loaded = f", {already} already loaded" if already else ""
        raise DataError(
            f"fashionmnist: {path} declares {need} bytes of data (dimensions {dims}), above the cap of "
            f"{max_bytes} bytes a run may load{loaded} ({MAX_BYTES_SETTING})"
        )
    if not gz:
        body_size = os.fstat(f.fileno()).st_size - header
        if body_size != need:
            raise DataError(
                f"fashionmnist: {path} holds {body_size} bytes after the header, its dimensions {dims} "
                f"need {need}; expected {expected}"
            )
    body = np.empty(need, dtype=np.uint8)
    view = memoryview(body)
    filled = 0
    while filled < need:
        n = f.readinto(view[filled : filled + _READ_CHUNK])
        if not n:
            break
        filled += n
    if filled < need:
        raise DataError(
            f"fashionmnist: {path} holds {filled} bytes after the header, its dimensions {dims} "
            f"need {need}; expected {expected}"
        )
    if f.read(1):
        raise DataError(
            f"fashionmnist: {path} holds more than the {need} bytes its dimensions {dims} need after "
            f"the header; refused"
        )
    return body.reshape(dims)
