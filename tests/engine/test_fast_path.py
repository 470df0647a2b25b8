"""The fast-path switches of the training loop keep the recipe's meaning (CPU, digits_cnn)."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
import torch.nn.functional as F

from workers.engine import training
from workers.engine.data import DatasetSpec, load_dataset
from workers.engine.models import build_model
from workers.engine.training import Recipe, make_optimizer, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetSpec("digits"))


def small_recipe(**overrides) -> Recipe:
    base = dict(epochs=1, batch_size=64, lr=0.05, weight_decay=5e-4, eval_batch_size=512)
    return Recipe(**{**base, **overrides})


def test_switches_are_recorded_and_the_numerics_changing_ones_are_off_by_default():
    r = Recipe()
    assert r.compile is False and r.amp is False  # both change kernels or numerics: opt-in only
    assert r.channels_last is True  # layout only, CUDA only
    d = r.to_dict()
    for switch in ("compile", "amp", "channels_last", "eval_batch_size"):
        assert switch in d
    fast = Recipe(compile=True, amp=True, channels_last=False, eval_batch_size=4096)
    assert Recipe.from_dict(fast.to_dict()) == fast
    with pytest.raises(training.RecipeError, match="compile"):
        Recipe.from_dict({"compile": "yes"})


def _sgd_steps(optimizer_for, steps: int = 4) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("digits_cnn", num_classes=10)
    optimizer = optimizer_for(model)
    data = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(32, 1, 8, 8, generator=data)
        y = torch.randint(0, 10, (32,), generator=data)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_and_foreach_sgd_give_the_plain_loops_weights(nesterov):
    recipe = Recipe(lr=0.1, weight_decay=5e-3, momentum=0.9, nesterov=nesterov)
    kwargs = dict(lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=nesterov)

    def plain(model):  # the per-tensor for-loop reference implementation
        return torch.optim.SGD(model.parameters(), **kwargs, foreach=False, fused=False)

    def foreach(model):
        return torch.optim.SGD(model.parameters(), **kwargs, foreach=True)

    reference = _sgd_steps(plain)
    ours = _sgd_steps(lambda model: make_optimizer(model, recipe)[0])  # what train() uses
    multi = _sgd_steps(foreach)
    for name in reference:
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(multi[name], reference[name], rtol=1e-5, atol=1e-6, msg=name)
    # the steps moved the weights: the comparison is not between untouched copies
    assert not torch.equal(reference["conv1.weight"], _sgd_steps(plain, steps=0)["conv1.weight"])


def test_cuda_only_switches_change_nothing_on_cpu_and_are_reported(digits):
    plain_model, fast_model = (build_model("digits_cnn", num_classes=10) for _ in range(2))
    plain = train(plain_model, digits, small_recipe(channels_last=False, amp=False), device="cpu")
    fast = train(fast_model, digits, small_recipe(channels_last=True, amp=True), device="cpu")
    for name, tensor in plain_model.state_dict().items():
        assert torch.equal(tensor, fast_model.state_dict()[name]), name
    assert [m.val_top1 for m in plain.history] == [m.val_top1 for m in fast.history]
    assert fast.fast_path["channels_last"] is False and fast.fast_path["amp_bf16"] is False
    assert fast.fast_path["data_on_device"] is True and fast.fast_path["compile"] is False
    assert fast.fast_path["optimizer"] == fast.optimizer
    assert all(p.is_contiguous() for p in fast_model.parameters())


def test_compile_switch_compiles_the_training_model_only_when_asked(digits, monkeypatch):
    compiled: list[torch.nn.Module] = []

    def recording_compile(model, *args, **kwargs):  # stands in for inductor, far too slow here
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", recording_compile)
    model = build_model("digits_cnn", num_classes=10)
    train(model, digits, small_recipe(), device="cpu")
    assert compiled == []
    result = train(model, digits, small_recipe(compile=True), device="cpu")
    assert compiled == [model] and result.fast_path["compile"] is True


def test_fast_path_flags_on_cuda_and_for_a_dataloader_set():
    cuda = training.fast_path(Recipe(amp=True), torch.device("cuda"))
    assert cuda["channels_last"] and cuda["cudnn_benchmark"] and cuda["amp_bf16"]
    assert cuda["data_on_device"] is False  # no TensorData given (imagefolder streams from disk)
    cpu = training.fast_path(Recipe(amp=True), torch.device("cpu"))
    assert not (cpu["channels_last"] or cpu["cudnn_benchmark"] or cpu["amp_bf16"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_does_not_sync_the_host_per_step():
    # host syncs per epoch must not grow with the number of steps
    def syncs(n_images: int) -> int:
        data = load_dataset(
            DatasetSpec("synthetic", synthetic_size=n_images, synthetic_shape=(3, 32, 32), val_fraction=0.2)
        )
        model = build_model("resnet20", num_classes=10)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train(model, data, dataclasses.replace(small_recipe(), batch_size=32), device="cuda")
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    assert syncs(640) == syncs(160)
