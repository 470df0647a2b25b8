"""A data set seen in another floating-point precision, for float64 equivalence checks on the CPU.

`CastData(data, torch.float64)` yields the wrapped set's batches (float32 after normalisation)
cast to float64; labels untouched. With a model converted by `model.to(torch.float64)` it makes
the solo `train()` run in float64 without any change to the default float32 path, and it is what
`train_group(..., dtype=torch.float64)` and `prunescape train --dtype float64` use.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from workers.engine.data import Batch, Data
from workers.engine.training import TrainingError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parse_dtype(value: str | torch.dtype) -> torch.dtype:
    """torch.float32 / torch.float64 from a name or a dtype; anything else is a TrainingError."""
    if isinstance(value, torch.dtype) and value in DTYPES.values():
        return value
    if isinstance(value, str) and value in DTYPES:
        return DTYPES[value]
    raise TrainingError(f"dtype must be one of {', '.join(DTYPES)}, got {value!r}")


class CastData(Data):
    """`data` with every image batch cast to `dtype` (module docstring)."""

    def __init__(self, data: Data, dtype: torch.dtype) -> None:
        self.data, self.dtype = data, parse_dtype(dtype)
        for name in ("name", "num_classes", "input_shape", "n_train", "n_val", "mean", "std"):
            setattr(self, name, getattr(data, name))

    def train_batches(
        self, batch_size: int, *, device: torch.device | str, generator: torch.Generator, augment: bool = True
    ) -> Iterator[Batch]:
        for x, y in self.data.train_batches(batch_size, device=device, generator=generator, augment=augment):
            yield x.to(self.dtype), y

    def val_batches(self, batch_size: int, *, device: torch.device | str) -> Iterator[Batch]:
        for x, y in self.data.val_batches(batch_size, device=device):
            yield x.to(self.dtype), y

    def calibration_batches(self, n_batches: int, batch_size: int) -> list[Tensor]:
        return [x.to(self.dtype) for x in self.data.calibration_batches(n_batches, batch_size)]
