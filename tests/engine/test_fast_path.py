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
    assert r.channels_last is True  # layout only, every device
    assert r.cpu_malloc_cache is True  # allocator only, CPU runs
    d = r.to_dict()
    for switch in ("compile", "amp", "channels_last", "cpu_malloc_cache", "eval_batch_size"):
        assert switch in d
    fast = Recipe(compile=True, amp=True, channels_last=False, cpu_malloc_cache=False, eval_batch_size=4096)
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


def test_cpu_switches_keep_the_results_and_are_reported(digits):
    # channels_last (other conv kernels) and the malloc cache (allocator only) take effect on CPU;
    # amp is CUDA only. None may change what the run computes beyond float rounding.
    plain_model, fast_model = (build_model("digits_cnn", num_classes=10) for _ in range(2))
    plain_recipe = small_recipe(channels_last=False, cpu_malloc_cache=False, amp=False)
    plain = train(plain_model, digits, plain_recipe, device="cpu")
    fast = train(fast_model, digits, small_recipe(channels_last=True, amp=True), device="cpu")
    for name, tensor in plain_model.state_dict().items():
        torch.testing.assert_close(fast_model.state_dict()[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    for a, b in zip(plain.history, fast.history, strict=True):
        assert abs(a.val_top1 - b.val_top1) <= 100 / digits.n_val  # at most one image flips
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
    assert plain.fast_path["channels_last"] is False and fast.fast_path["channels_last"] is True
    assert fast.fast_path["amp_bf16"] is False and fast.fast_path["cudnn_benchmark"] is False
    assert fast.fast_path["cpu_malloc_cache"] is (training._glibc() is not None)
    assert plain.fast_path["cpu_malloc_cache"] is False
    assert fast.fast_path["data_on_device"] is True and fast.fast_path["compile"] is False
    assert fast.fast_path["optimizer"] == fast.optimizer
    assert all(p.is_contiguous() for p in fast_model.parameters())  # handed back in the usual layout


def test_malloc_cache_changes_no_bit_and_a_checkpoint_resumes_across_it(digits, tmp_path):
    straight_model, resumed_model = (build_model("digits_cnn", num_classes=10) for _ in range(2))
    straight = train(straight_model, digits, small_recipe(epochs=2, cpu_malloc_cache=False), device="cpu")
    ckpt = tmp_path / "ckpt.pt"
    stop_after_one = small_recipe(epochs=2)
    train(resumed_model, digits, stop_after_one, device="cpu", checkpoint_path=ckpt, should_stop=lambda: True)
    resumed = train(
        resumed_model,
        digits,
        small_recipe(epochs=2, cpu_malloc_cache=False),
        device="cpu",
        checkpoint_path=ckpt,
    )
    assert resumed.epochs == 2 and resumed.history[-1].val_loss == straight.history[-1].val_loss
    for name, tensor in straight_model.state_dict().items():
        assert torch.equal(tensor, resumed_model.state_dict()[name]), name


_FAULTS_SCRIPT = """
import json, resource, torch
from workers.engine import training

def faults(rounds=8, mb=48):  # page faults of `rounds` blocks, each allocated, filled and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        torch.ones(mb * 2**20 // 4)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

out = {"before": faults()}
with training.cpu_malloc_cache() as outer:
    with training.cpu_malloc_cache() as inner:
        pass
    out.update(outer=outer, inner=inner, depth=training._malloc_depth, inside=faults())
# blocks larger than any free one the heap kept, so only the restored mmap path can serve them
out.update(depth_after=training._malloc_depth, after=faults(rounds=4, mb=256))
print(json.dumps(out))
"""


@pytest.mark.skipif(training._glibc() is None, reason="glibc only")
def test_malloc_cache_reuses_big_blocks_without_page_faults_and_nests():
    # a fresh interpreter: a test process's heap has free blocks of its own that hide the effect
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS_SCRIPT], cwd=root, capture_output=True, text=True, check=True
    )
    out = json.loads(done.stdout.splitlines()[-1])
    pages = 48 * 2**20 // 4096  # what one block faults when it is freshly mapped
    assert out["before"] > 6 * pages  # glibc's defaults: every block is mapped and faulted afresh
    assert out["outer"] is True and out["inner"] is True
    assert out["depth"] == 1  # the inner exit did not restore glibc's defaults
    # the heap grows to fit the block once (twice if small allocations split the first free
    # block meanwhile); every other round reuses it without a fault
    assert out["inside"] < 2.5 * pages
    assert out["depth_after"] == 0 and out["after"] > 3 * pages * 256 // 48  # defaults back
    with training.cpu_malloc_cache(enabled=False) as off:
        assert off is False


def test_resume_gives_momentum_buffers_their_parameters_layout():
    # the fused kernel walks parameter and buffer as flat memory: strides must agree
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(8, 4, 3, 3).contiguous(memory_format=torch.channels_last))
    buffer = torch.randn(8, 4, 3, 3)  # NCHW, as a checkpoint from an NCHW run holds it
    grad = torch.randn(8, 4, 3, 3)
    expected = param.detach() - 0.1 * (0.9 * buffer + grad)
    opt = torch.optim.SGD([param], lr=0.1, momentum=0.9, fused=True)  # what make_optimizer picks on CPU
    opt.state[param]["momentum_buffer"] = buffer.clone()
    training._match_state_layout(opt)
    assert opt.state[param]["momentum_buffer"].stride() == param.stride()
    param.grad = grad.contiguous(memory_format=torch.channels_last)
    opt.step()
    torch.testing.assert_close(param.detach(), expected)


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


def test_a_run_records_which_switches_took_effect_on_its_device(tmp_path, digits):
    """What a user reads on the run page ("fast path in effect") is what the run did: a CPU run of
    a tensor set keeps its data on the device and runs channels_last, never a CUDA graph; an
    imagefolder run streams through a DataLoader (data not on the device); switches turned off in
    the recipe are off in the record."""
    import numpy as np
    from PIL import Image

    on = train(build_model("digits_cnn", num_classes=10), digits, small_recipe(), device="cpu").fast_path
    assert on["data_on_device"] is True and on["channels_last"] is True
    assert on["cuda_graph"] is False and on["cudnn_benchmark"] is False and on["amp_bf16"] is False
    assert on["cpu_malloc_cache"] is (training._glibc() is not None)
    off = train(
        build_model("digits_cnn", num_classes=10),
        digits,
        small_recipe(channels_last=False, cpu_malloc_cache=False, amp=True),
        device="cpu",
    ).fast_path
    assert off["channels_last"] is False and off["cpu_malloc_cache"] is False
    assert off["amp_bf16"] is False  # bf16 autocast is CUDA only: a CPU run stays fp32

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("a", "b"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
                    tmp_path / split / label / f"{i}.png"
                )
    folder = load_dataset(DatasetSpec("imagefolder", path=str(tmp_path), image_size=16))
    folder.num_workers = 0
    streamed = train(
        build_model("digits_cnn", num_classes=2, input_shape=(3, 16, 16)),
        folder,
        small_recipe(),
        device="cpu",
    ).fast_path
    assert streamed["data_on_device"] is False and streamed["channels_last"] is True


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

    # 16 steps vs 4: a sync per step would add >= 12; seen on an H100: 131 vs 130 (a one-off, not per step)
    assert syncs(640) - syncs(160) <= 2
