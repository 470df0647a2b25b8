"""The study's SGD over a fused group: one step for B models, a learning rate and weight decay each.

Per model k the update is `torch.optim.SGD`'s (dampening 0, coupled weight decay), and it is run
by torch's own functional SGD (`torch.optim.sgd.sgd`, the fused kernel where this torch has it
for the device, else foreach: `make_optimizer`'s choice) on model k's slices of the stacked
(B, ...) parameters, gradients and momentum buffers, with model k's lr and weight decay. So each
model's weights get the solo run's arithmetic bit for bit; that matters, because training a small
BatchNorm net on tiny batches amplifies a one-ulp difference (an FMA here, none there) to O(1)
within a few steps, and then no fused run could be compared with its solo run at all.

Momentum buffers are stacked too and start at zero: the kernel's `buf = momentum * buf + g` is
then exactly the first step's `buf = g`. On CUDA the lr reaches the kernel as a (B,) float32
device tensor (each model a 0-d view), which a captured CUDA graph reads at every replay;
`set_lr` (after each epoch's schedule step) writes it in place. Momentum and milestones are the
group's (architecture-level recipe fields); `scheduled_lr` is MultiStepLR's learning rate,
computed as MultiStepLR computes it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim.sgd import sgd

from workers.engine.training import Recipe, TrainingError, milestone_epochs


def scheduled_lr(recipe: Recipe, epochs_done: int) -> float:
    """The lr of epoch `epochs_done + 1`: MultiStepLR's chain of `lr * gamma ** count` at each
    milestone epoch, in the same floating-point operations (so the floats are the solo run's)."""
    counts = Counter(milestone_epochs(recipe))
    lr = recipe.lr
    for epoch in range(1, epochs_done + 1):
        if counts[epoch]:
            lr = lr * recipe.gamma ** counts[epoch]
    return lr


class FusedSGD:
    """SGD with per-model lr and weight decay over stacked parameters (module docstring)."""

    # TrainStep pins Python-float learning rates of `param_groups` in device tensors for a CUDA
    # graph; this optimizer's lr already is a device tensor there, so there is nothing to pin
    param_groups: tuple = ()

    def __init__(
        self,
        params: Sequence[Tensor],
        *,
        lrs: Sequence[float],
        weight_decays: Sequence[float],
        momentum: float,
        nesterov: bool = False,
        momentum_buffers: Sequence[Tensor] | None = None,
    ) -> None:
        if not params:
            raise TrainingError("a fused optimizer needs parameters")
        self.params = list(params)
        size = self.params[0].shape[0]
        if len(lrs) != size or len(weight_decays) != size:
            raise TrainingError(f"{len(lrs)} lrs and {len(weight_decays)} weight decays for {size} models")
        if nesterov and momentum == 0:
            raise TrainingError("nesterov needs momentum > 0")
        self.size, self.momentum, self.nesterov = size, float(momentum), nesterov
        self.weight_decays = [float(wd) for wd in weight_decays]
        first = self.params[0]
        self._device_lr = first.device.type != "cpu"  # graphs read a tensor; the CPU kernel takes floats
        self.lrs = [float(lr) for lr in lrs]
        self.lr = torch.tensor(self.lrs, dtype=torch.float32, device=first.device)
        self.buffers: list[Tensor] = []
        if self.momentum > 0:
            if momentum_buffers is None:
                self.buffers = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
            else:
                self.buffers = [b.detach().clone() for b in momentum_buffers]
                for b, p in zip(self.buffers, self.params, strict=True):
                    if b.shape != p.shape or b.stride() != p.stride():
                        raise TrainingError(
                            f"momentum buffer {tuple(b.shape)} strides {b.stride()} for a parameter "
                            f"{tuple(p.shape)} strides {p.stride()}"
                        )
        self.implementation = sgd_implementation(first.dtype, first.device)
        self._sliced_for: list[int] = []

    def set_lr(self, lrs: Sequence[float]) -> None:
        """The learning rate of each model for the coming steps (in place: graphs read this tensor)."""
        if len(lrs) != self.size:
            raise TrainingError(f"{len(lrs)} learning rates for {self.size} models")
        self.lrs = [float(lr) for lr in lrs]
        self.lr.copy_(torch.tensor(self.lrs, dtype=torch.float32))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        with_grad = [i for i, p in enumerate(self.params) if p.grad is not None]  # as SGD: skip the rest
        if not with_grad:
            return
        if with_grad != self._sliced_for:  # model k's views of the parameters and buffers, made once
            self._sliced_for = with_grad
            self._param_slices = [[self.params[i][k] for i in with_grad] for k in range(self.size)]
            self._buffer_slices = [
                [self.buffers[i][k] for i in with_grad] if self.buffers else [None] * len(with_grad)
                for k in range(self.size)
            ]
        fused = self.implementation == "sgd-group-fused"
        grads = [self.params[i].grad for i in with_grad]
        for k in range(self.size):
            sgd(
                self._param_slices[k],
                [g[k] for g in grads],
                self._buffer_slices[k],
                foreach=not fused,
                fused=fused,
                weight_decay=self.weight_decays[k],
                momentum=self.momentum,
                lr=self.lr[k] if self._device_lr else self.lrs[k],
                dampening=0.0,
                nesterov=self.nesterov,
                maximize=False,
            )


def sgd_implementation(dtype: torch.dtype, device: torch.device) -> str:
    """ "sgd-group-fused" where torch's fused SGD kernel takes this device and dtype, else
    "sgd-group-foreach": make_optimizer's rule, so a group steps each model as its solo run does."""
    probe = torch.zeros(1, dtype=dtype, device=device, requires_grad=True)
    try:
        torch.optim.SGD([probe], lr=0.1, fused=True)
    except (RuntimeError, ValueError):
        return "sgd-group-foreach"
    return "sgd-group-fused"
