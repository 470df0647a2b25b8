"""The one FLOP counter of prunescape (docs/spec.md section 3).

`torch.utils.flop_counter.FlopCounterMode` counts 2 FLOPs per multiply-accumulate and only has
formulas for matrix products and convolutions, so BN, activations, pooling and residual adds are
already absent; we still sum only the conv/linear ops explicitly so that a future torch adding
formulas for other ops (attention, say) cannot silently change our figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from workers.engine.catalog import FLOPS_CONVENTION

__all__ = ["FLOPS_CONVENTION", "count_flops"]

# aten ops that conv and linear layers lower to (linear -> addmm/mm; batched linear -> bmm).
_COUNTED_OPS = {"convolution", "_convolution", "mm", "addmm", "bmm", "baddbmm"}


def _op_name(op: object) -> str:
    # Keys are OpOverloadPackets such as aten.addmm; their str() is "aten.addmm".
    return str(op).split(".")[-1]


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass of a single (C, H, W) input, per FLOPS_CONVENTION.

    Runs in eval mode under no_grad on the model's own device and restores its training flags.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3:
        raise ValueError(f"count_flops: input_shape must be (C, H, W), got {tuple(input_shape)}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32

    # Remember every submodule's flag: a model may deliberately hold some parts in eval mode.
    was_training = {module: module.training for module in model.modules()}
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros((1, *shape), device=device, dtype=dtype))
    finally:
        for module, flag in was_training.items():
            module.training = flag
    counts = counter.get_flop_counts().get("Global", {})
    return int(sum(n for op, n in counts.items() if _op_name(op) in _COUNTED_OPS))
