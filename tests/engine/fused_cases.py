"""Shared by the fused-training tests: a tiny image set, group recipes, and the solo reference.

The set is a few dozen random uint8 images with CIFAR's augmentation (pad + crop + flip), so
that every fused model must reproduce its own data order and augmentation. 20 training images at
batch 8 give two full batches and a partial one per epoch; 3 epochs with the milestone after
epoch 1 train two epochs past it. Everything runs in float64 on the CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import nn

from workers.engine.data import Augment, TensorData
from workers.engine.fused import CastData
from workers.engine.training import EpochMetrics, Recipe, TrainResult, train

FLOAT64 = torch.float64
LRS = (0.02, 0.05, 0.1, 0.2)
WDS = (1e-4, 5e-4, 1e-3, 0.0)
# Losses: |a - b| <= REL * |a| + ABS. Weights: 1e-9 relative to the tensor's largest entry,
# max|a - b| <= REL * max|a| + ABS. Elementwise relative error is no measure for entries that are
# rounding noise around an exact zero (a BatchNorm bias whose gradient is zero in exact
# arithmetic, a running mean near 0): on the Zen 4 test machine of 2026-12-02 the float64 kernels
# round a group's (N, B*C, ...) tensors one ulp differently from one model's in a few layers
# (MobileNetV2's 1x1 maps: 1e-10 absolute on entries of size 1-10 after 3 epochs, so 1e-11 of the
# tensor, and 1e-2 of its entries nearest zero), where the previous machine was bit for bit. A
# wrong learning rate or weight decay per model moves whole tensors by 1e-3 or more.
REL, ABS = 1e-9, 1e-12


def tiny_images(
    shape: tuple[int, int, int], *, n_train: int = 20, n_val: int = 12, seed: int = 0
) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_train + n_val, *shape), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n_train + n_val,), generator=g)
    return TensorData(
        "tiny", images[:n_train], labels[:n_train], images[n_train:], labels[n_train:], num_classes=10,
        augment=Augment(pad=2, flip=True),
    )  # fmt: skip


def group_recipes(
    seeds: Sequence[int] = (0, 0, 0, 0), lrs: Sequence[float] = LRS, wds: Sequence[float] = WDS, **fields
) -> list[Recipe]:
    base = Recipe(**{"epochs": 3, "batch_size": 8, "milestones": (0.34,), "eval_batch_size": 8, **fields})
    return [
        dataclasses.replace(base, lr=lr, weight_decay=wd, seed=seed)
        for lr, wd, seed in zip(lrs, wds, seeds, strict=True)
    ]


def solo_run(
    make: Callable[[], nn.Module], data: TensorData, recipe: Recipe, **kwargs
) -> tuple[nn.Module, TrainResult]:
    """The reference: the ordinary `train()` of one run, in float64 (model and batches cast)."""
    model = make().to(FLOAT64)
    return model, train(model, CastData(data, FLOAT64), recipe, **kwargs)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= REL * abs(a) + ABS


def assert_same_history(fused: list[EpochMetrics], solo: list[EpochMetrics]) -> None:
    assert len(fused) == len(solo)
    for f, s in zip(fused, solo, strict=True):
        assert f.epoch == s.epoch and f.lr == s.lr, (f, s)
        for name in ("train_loss", "val_loss"):
            assert _close(getattr(s, name), getattr(f, name)), (name, f, s)
        assert (f.train_top1, f.val_top1, f.val_top5) == (s.train_top1, s.val_top1, s.val_top5), (f, s)


def assert_same_weights(fused: nn.Module, solo: nn.Module) -> None:
    a, b = solo.state_dict(), fused.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        if a[name].is_floating_point():
            difference, scale = (a[name] - b[name]).abs().max(), a[name].abs().max()
            assert difference <= REL * scale + ABS, (
                f"{name} differs: {float(difference):.3g} of {float(scale):.3g}"
            )
        else:
            assert torch.equal(a[name], b[name]), f"{name} differs"


def assert_matches_solo(
    make: Callable[[], nn.Module], data: TensorData, recipes: Sequence[Recipe], models: Sequence[nn.Module],
    results: Sequence[TrainResult],
) -> None:  # fmt: skip
    """Each fused model has the weights, losses and accuracies of its solo run."""
    for recipe, model, result in zip(recipes, models, results, strict=True):
        solo_model, solo = solo_run(make, data, recipe)
        assert result.status == solo.status and result.epochs == solo.epochs
        assert (result.top1, result.top5) == (solo.top1, solo.top5)
        assert_same_history(result.history, solo.history)
        assert_same_weights(model, solo_model)
