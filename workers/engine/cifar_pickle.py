"""CIFAR-10 batch files (python pickles) read without letting a pickle run code.

The unpickler admits only the globals a CIFAR-10 batch refers to (numpy's array reconstruction,
`numpy.ndarray`, `numpy.dtype`, and `_codecs.encode` for Python 2 byte strings), mapped to
stand-ins: nothing of numpy runs on the file's values; the array is built from a checked dtype,
shape and byte length, plain numeric dtypes only. Anything else is refused with a DataError naming
the file and the global.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path

import numpy as np

from workers.engine.catalog import CIFAR_BATCH_MAX_BYTES, DATASETS
from workers.engine.errors import DataError


class _Refused(Exception):
    """Something a CIFAR-10 batch never holds; the message says what (it follows the file's name)."""


class _NdarrayName:
    """What the pickle's `numpy.ndarray` names: only an argument of the reconstructor, never called."""


_NDARRAY = _NdarrayName()
# The plain numeric dtypes an array may declare (numpy's pickled type strings); no objects, no records.
_PLAIN_DTYPES = frozenset({"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"})


def _text(value: object) -> object:
    """A Python 2 pickle's `str` arrives as bytes under encoding="bytes"; compare it as text."""
    return value.decode("latin-1") if isinstance(value, bytes) else value


class _PickledDtype:
    """Stands in for `numpy.dtype(...)` + its `__setstate__`: records a plain type, builds nothing."""

    def __init__(self, typestr: object, align: object = False, copy: object = False) -> None:
        self.typestr = _text(typestr)
        if self.typestr not in _PLAIN_DTYPES:
            raise _Refused(
                f"holds a numpy array of dtype {str(self.typestr)[:40]!r}, which a CIFAR-10 batch never holds; "
                "refused"
            )
        self.byteorder = "|"

    def __setstate__(self, state: object) -> None:
        # numpy writes (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 5 or state[2:5] != (None, None, None):
            raise _Refused("holds a structured numpy dtype, which a CIFAR-10 batch never holds; refused")
        byteorder = _text(state[1])
        if byteorder not in ("<", ">", "|", "="):
            raise _Refused(f"holds a numpy dtype of byte order {str(byteorder)[:8]!r}; refused")
        self.byteorder = byteorder

    def dtype(self) -> np.dtype:
        return np.dtype(("" if self.byteorder in "|=" else self.byteorder) + self.typestr)


class _PickledArray:
    """Stands in for an ndarray while unpickling: its state is checked and copied out afterwards."""

    def __init__(self, state: object = None) -> None:
        self.state = state

    def __setstate__(self, state: object) -> None:
        self.state = state


def _reconstruct(subtype: object, shape: object, typecode: object) -> _PickledArray:
    if subtype is not _NDARRAY:
        raise _Refused("reconstructs an array of a type other than numpy.ndarray; refused")
    return _PickledArray()


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> _PickledArray:
    # pickle protocol 5 writes arrays as numpy's _frombuffer(bytes, dtype, shape, order)
    return _PickledArray((1, shape, dtype, _text(order) == "F", buffer))


def _latin1(text: object, encoding: object) -> bytes:
    # protocols 0-2 written by Python 3 store bytes as _codecs.encode(str, "latin1")
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("calls _codecs.encode on something other than latin-1 text; refused")
    return text.encode("latin-1")


# Every global a CIFAR-10 batch refers to, under numpy 1.x and 2.x names, mapped to the stand-ins
# above: unpickling such a batch runs none of numpy's code on the file's values.
_CIFAR_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _PickledDtype,
    ("_codecs", "encode"): _latin1,
}


class _CifarUnpickler(pickle.Unpickler):
    """Admits only the globals of `_CIFAR_GLOBALS`; anything else is refused before it is called."""

    def find_class(self, module: str, name: str) -> object:
        found = _CIFAR_GLOBALS.get((module, name))
        if found is None:
            raise _Refused(
                f"refers to {module[:80]}.{name[:80]}, which a CIFAR-10 batch never holds; refused"
            )
        return found


def _unpickled_array(value: object) -> np.ndarray:
    """The ndarray a `_PickledArray` describes, checked against its bytes and copied out of them."""
    if not isinstance(value, _PickledArray) or not isinstance(value.state, tuple):
        raise _Refused("is not a numpy array")
    # numpy also accepts the unversioned 4-tuple (shape, dtype, is_fortran, rawdata)
    state = value.state if len(value.state) == 5 else (1, *value.state)
    if len(state) != 5:
        raise _Refused("is a numpy array with a malformed state")
    _, shape, dtype, fortran, raw = state
    if not isinstance(dtype, _PickledDtype) or not isinstance(raw, bytes | bytearray):
        raise _Refused("is a numpy array with a malformed state")
    if not isinstance(shape, tuple) or len(shape) > 8 or any(type(d) is not int or d < 0 for d in shape):
        raise _Refused(f"is a numpy array of shape {str(shape)[:80]}")
    dt = dtype.dtype()
    if len(raw) != math.prod(shape) * dt.itemsize:
        raise _Refused(f"is a numpy array of shape {shape} whose data holds {len(raw)} bytes")
    return np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C").copy()


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    expected = DATASETS["cifar10"].layout
    try:
        with open(path, "rb") as f:
            # _cifar10 checked the size; reading one byte more catches a file that grew since.
            raw = f.read(CIFAR_BATCH_MAX_BYTES + 1)
    except FileNotFoundError:
        raise DataError(f"cifar10: {path} is missing; expected {expected}") from None
    except OSError as exc:
        raise DataError(f"cifar10: {path} cannot be read ({exc.strerror}); expected {expected}") from None
    if len(raw) > CIFAR_BATCH_MAX_BYTES:
        raise DataError(f"cifar10: {path} grew above {CIFAR_BATCH_MAX_BYTES} bytes while it was read")
    try:
        entry = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _Refused as exc:
        raise DataError(f"cifar10: {path} {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a malformed file
        raise DataError(f"cifar10: {path} is not a CIFAR-10 pickle ({exc}); expected {expected}") from exc
    if not isinstance(entry, dict):
        raise DataError(f"cifar10: {path} holds a {type(entry).__name__}, not a dict; expected {expected}")
    images = entry.get(b"data", entry.get("data"))
    labels = entry.get(b"labels", entry.get("labels"))
    if images is None or labels is None:
        raise DataError(f"cifar10: {path} has no b'data' / b'labels' entries; expected {expected}")
    try:
        images = _unpickled_array(images)
    except _Refused as exc:
        raise DataError(f"cifar10: {path} b'data' {exc}; expected {expected}") from None
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        raise DataError(
            f"cifar10: {path} b'data' is {images.dtype} {images.shape}, expected uint8 N x 3072; "
            f"expected {expected}"
        )
    # A list of plain ints 0..9, checked one by one before numpy sees it (a list of lists would
    # otherwise become an array as big as the references in it allow).
    if (
        not isinstance(labels, list)
        or len(labels) != images.shape[0]
        or not all(type(v) is int and 0 <= v <= 9 for v in labels)
    ):
        raise DataError(
            f"cifar10: {path} b'labels' must be {images.shape[0]} integers in 0..9; expected {expected}"
        )
    return images.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)
