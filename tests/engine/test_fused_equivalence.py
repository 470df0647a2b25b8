"""A fused group of 4 runs trains each model exactly as its solo `train()` run (SPEC section 8): on
the CPU in float64, weights, losses and accuracies agree to 1e-9 relative (in practice bit for
bit). Tiny data (tests/engine/fused_cases.py): 3 epochs, two past the milestone, a partial batch
per epoch, augmentation on. The torchvision nets are in test_fused_torchvision.py."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch

from tests.engine.fused_cases import (
    FLOAT64,
    assert_matches_solo,
    assert_same_weights,
    group_recipes,
    solo_run,
    tiny_images,
)
from workers.engine.fused import train_group
from workers.engine.models import build_model
from workers.engine.pruning import prune_structured, prune_unstructured
from workers.jobs.common import attach_masks


def registry(name: str, shape: tuple[int, int, int]):
    return functools.partial(build_model, name, num_classes=10, input_shape=shape)


def nonuniform_resnet20(shape: tuple[int, int, int]):
    # a pruned variant's architecture: every run of the variant starts from this structure
    pruned = prune_structured(
        build_model("resnet20", input_shape=shape), shape, method="nonuniform", flops_ratio=0.5
    )
    return lambda: copy.deepcopy(pruned.model)


def masked_resnet20(shape: tuple[int, int, int]):
    # an unstructured variant as workers/jobs.py trains it: zeros kept by attached masks
    sparse = prune_unstructured(build_model("resnet20", input_shape=shape), amount=0.6, scope="global").model
    return lambda: attach_masks(copy.deepcopy(sparse))


# name: (input shape, model builder, training images, recipe fields). mobilenetv2_cifar runs at
# 4x4 (its float64 depthwise convs are a loop of one conv per channel on the CPU) with one full
# batch per epoch, and in NCHW: at 1x1 spatial size NCHW and NHWC are the same strides, so
# kernels pick layouts by other rules, and then the grouped and the solo conv take different ones
CASES = {
    "digits_cnn": ((1, 8, 8), lambda shape: registry("digits_cnn", shape), 20, {}),
    "resnet20": ((3, 8, 8), lambda shape: registry("resnet20", shape), 20, {}),
    "mobilenetv2_cifar": (
        (3, 4, 4),
        lambda shape: registry("mobilenetv2_cifar", shape),
        8,
        {"channels_last": False},
    ),
    "resnet20_nonuniform": ((3, 8, 8), nonuniform_resnet20, 20, {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_group_of_four_matches_solo_runs(case):
    shape, builder, n_train, fields = CASES[case]
    make = builder(shape)
    data = tiny_images(shape, n_train=n_train)
    recipes = group_recipes(**fields)
    models = [make() for _ in recipes]
    results = train_group(models, data, recipes, dtype=FLOAT64)
    assert all(r.fast_path["fused"] and r.fast_path["group_size"] == 4 for r in results)
    assert len({r.history[-1].train_loss for r in results}) == 4  # four different runs, not one
    assert_matches_solo(make, data, recipes, models, results)


def test_four_seeds_each_get_their_own_init_order_and_augmentation():
    shape = (3, 8, 8)
    make, data = registry("resnet20", shape), tiny_images(shape)
    recipes = group_recipes(seeds=(0, 1, 2, 3))
    models = [make() for _ in recipes]
    results = train_group(models, data, recipes, dtype=FLOAT64)
    assert_matches_solo(make, data, recipes, models, results)


def test_two_seeds_twice_share_batches_per_seed():
    shape = (3, 8, 8)
    make, data = registry("resnet20", shape), tiny_images(shape)
    recipes = group_recipes(seeds=(5, 7, 5, 7))
    models = [make() for _ in recipes]
    results = train_group(models, data, recipes, dtype=FLOAT64)
    assert_matches_solo(make, data, recipes, models, results)


def test_unstructured_variant_keeps_its_zeros_and_matches_solo():
    shape = (3, 8, 8)
    make, data = masked_resnet20(shape), tiny_images(shape)
    recipes = group_recipes()
    models = [make() for _ in recipes]
    zeros_before = int((models[0].conv1.weight == 0).sum())
    results = train_group(models, data, recipes, dtype=FLOAT64)
    assert_matches_solo(make, data, recipes, models, results)
    for model in models:
        assert hasattr(model.conv1, "weight_mask")  # still the caller's masked model
        assert int((model.conv1.weight_orig * model.conv1.weight_mask == 0).sum()) == zeros_before


def test_a_diverging_model_is_frozen_and_leaves_the_others_as_their_solo_runs():
    shape = (3, 8, 8)
    make, data = registry("resnet20", shape), tiny_images(shape)
    recipes = group_recipes(lrs=(0.02, 1e50, 0.1, 0.2))
    models = [make() for _ in recipes]
    frozen = {}

    def on_epoch(index, metrics):
        if index == 1:
            frozen[metrics.epoch] = {k: v.clone() for k, v in models[1].state_dict().items()}

    results = train_group(models, data, recipes, dtype=FLOAT64, on_epoch=on_epoch)
    assert [r.status for r in results] == ["succeeded", "diverged", "succeeded", "succeeded"]
    solo_model, solo = solo_run(make, data, recipes[1])
    assert solo.status == "diverged" and results[1].epochs == solo.epochs < 3
    assert not math.isfinite(results[1].history[-1].train_loss)
    # frozen where the solo run stopped: no update and no BatchNorm statistics after its last epoch
    last = frozen[results[1].epochs]
    for name, value in models[1].state_dict().items():
        assert torch.equal(value.nan_to_num(), last[name].nan_to_num()), name
        assert torch.equal(value.nan_to_num(), solo_model.state_dict()[name].nan_to_num()), name
    assert_matches_solo(
        make,
        data,
        [recipes[i] for i in (0, 2, 3)],
        [models[i] for i in (0, 2, 3)],
        [results[i] for i in (0, 2, 3)],
    )


def test_a_group_of_one_is_the_solo_run():
    shape = (1, 8, 8)
    make, data = registry("digits_cnn", shape), tiny_images(shape)
    recipes = group_recipes(seeds=(3,), lrs=(0.1,), wds=(5e-4,))
    models = [make()]
    results = train_group(models, data, recipes, dtype=FLOAT64)
    assert results[0].fast_path["group_size"] == 1
    assert_matches_solo(make, data, recipes, models, results)
    solo_model, _ = solo_run(make, data, recipes[0])
    assert_same_weights(models[0], solo_model)
