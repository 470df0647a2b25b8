"""Fused training on CUDA (needs a GPU: these run on a lent device machine, `bench/cuda_session.sh
fused-tests`; CI has none). On the CPU the fused group is checked bit for bit against solo runs
in float64 (test_fused_equivalence.py); here, in float32 with cudnn's kernels, the first step's
gradients agree within float32 rounding, a short fused run lands within seed noise of its solo
runs, and the fused step is captured in a CUDA graph (dropout generators included)."""

from __future__ import annotations

import dataclasses
import functools
import math

import pytest
import torch
import torch.nn.functional as F

from tests.engine.fused_cases import tiny_images
from workers.engine.data import DatasetSpec, load_dataset
from workers.engine.fused import FusedModel, stack_inputs, train_group
from workers.engine.models import build_model, init_kaiming
from workers.engine.training import Recipe, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def exact_float32():
    """No TF32 and deterministic cudnn: float32 rounding is then the only difference left."""
    saved = (
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.deterministic,
    )
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    yield
    (
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.deterministic,
    ) = saved


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2_cifar"])
@pytest.mark.parametrize(
    "memory_format", [torch.channels_last, torch.contiguous_format], ids=["nhwc", "nchw"]
)
def test_first_step_gradients_equal_solo_gradients(exact_float32, name, memory_format):
    models = []
    for seed in range(4):
        torch.manual_seed(seed)
        model = build_model(name, num_classes=10, input_shape=(3, 32, 32))
        init_kaiming(model)
        models.append(model.cuda().to(memory_format=memory_format))
    fused = FusedModel(models, device="cuda", memory_format=memory_format)
    g = torch.Generator().manual_seed(0)
    xs = [
        torch.randn(32, 3, 32, 32, generator=g).cuda().contiguous(memory_format=memory_format) for _ in models
    ]
    ys = [torch.randint(0, 10, (32,), generator=g).cuda() for _ in models]
    losses, _ = fused(stack_inputs(xs, memory_format), torch.stack(ys))
    losses.sum().backward()
    for k, model in enumerate(models):
        loss = F.cross_entropy(model(xs[k]), ys[k])
        loss.backward()
        assert losses[k].item() == pytest.approx(loss.item(), rel=1e-5)
        for param_name, param in model.named_parameters():
            fused_grad = fused.params[param_name].grad[k]
            scale = param.grad.abs().max().item() + 1e-12
            assert (fused_grad - param.grad).abs().max().item() <= 1e-4 * scale + 1e-7, (k, param_name)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetSpec("digits"))


def test_a_short_fused_run_is_within_seed_noise_of_its_solo_runs(digits):
    # 1437 images at batch 64: 22 full batches (graphed) and a partial one (eager) per epoch
    base = Recipe(epochs=4, batch_size=64, milestones=(0.5,), weight_decay=5e-4)
    recipes = [
        dataclasses.replace(base, lr=lr, seed=seed) for lr, seed in ((0.02, 0), (0.05, 1), (0.1, 2), (0.2, 3))
    ]
    make = functools.partial(build_model, "digits_cnn", num_classes=10)
    fused = train_group([make() for _ in recipes], digits, recipes, device="cuda")
    assert all(r.fast_path["cuda_graph"] is True and "cuda_graph_error" not in r.fast_path for r in fused)
    for recipe, result in zip(recipes, fused, strict=True):
        solo = train(make(), digits, recipe, device="cuda")
        assert result.status == solo.status == "succeeded"
        assert [m.lr for m in result.history] == pytest.approx([m.lr for m in solo.history])
        # seed noise of digits_cnn after 4 epochs is about one point (360 validation images)
        assert abs(result.top1 - solo.top1) <= 3.0, (recipe.lr, result.top1, solo.top1)


def test_the_fused_step_with_dropout_is_graphed():
    shape = (3, 32, 32)
    data = tiny_images(shape, n_train=256, n_val=64)
    base = Recipe(epochs=3, batch_size=32, milestones=(0.5,), eval_batch_size=64)
    recipes = [dataclasses.replace(base, lr=lr, seed=seed) for lr, seed in ((0.01, 0), (0.02, 1), (0.05, 2))]
    make = functools.partial(build_model, "mobilenet_v2", num_classes=10, input_shape=shape)
    results = train_group([make() for _ in recipes], data, recipes, device="cuda")
    for result in results:
        assert result.fast_path["cuda_graph"] is True, result.fast_path.get("cuda_graph_error")
        assert result.status == "succeeded"
        assert all(math.isfinite(m.train_loss) and math.isfinite(m.val_loss) for m in result.history)


def test_a_diverging_model_does_not_reach_the_others(digits):
    base = Recipe(epochs=3, batch_size=64, milestones=(0.5,), weight_decay=5e-4)
    recipes = [dataclasses.replace(base, lr=lr, seed=seed) for lr, seed in ((0.05, 0), (1e30, 1), (0.1, 2))]
    make = functools.partial(build_model, "digits_cnn", num_classes=10)
    results = train_group([make() for _ in recipes], digits, recipes, device="cuda")
    assert [r.status for r in results] == ["succeeded", "diverged", "succeeded"]
    for recipe, result in zip(recipes, results, strict=True):
        if result.status == "diverged":
            continue
        solo = train(make(), digits, recipe, device="cuda")
        assert all(math.isfinite(m.train_loss) for m in result.history)
        assert abs(result.top1 - solo.top1) <= 3.0, (recipe.lr, result.top1, solo.top1)
