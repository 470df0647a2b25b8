"""The CUDA-graph training step computes what the eager step computes (needs a GPU: these run on
the lent device machine, `bench/cuda_session.sh tests`; CI has none). On the CPU the switch is
inert, which tests/engine/test_fast_path.py checks everywhere."""

from __future__ import annotations

import pytest
import torch

from workers.engine.data import DatasetSpec, load_dataset
from workers.engine.models import build_model
from workers.engine.training import Recipe, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetSpec("digits"))


def recipe(**overrides) -> Recipe:
    # 1437 training images at batch 64: 22 full batches (graphed) and a partial one (eager) per
    # epoch; the milestone at epoch 2 checks that a replayed step sees the scheduled lr
    base = dict(epochs=4, batch_size=64, lr=0.05, weight_decay=5e-4, milestones=(0.5,), gamma=0.1)
    return Recipe(**{**base, **overrides})


def run(digits, r: Recipe, **kwargs):
    torch.backends.cudnn.deterministic = True  # bit-comparable kernels for both sides
    try:
        model = build_model("digits_cnn", num_classes=10)
        return model, train(model, digits, r, device="cuda", **kwargs)
    finally:
        torch.backends.cudnn.deterministic = False


def test_graphed_run_matches_the_eager_run(digits):
    eager_model, eager = run(digits, recipe(cuda_graph=False))
    graph_model, graphed = run(digits, recipe())
    assert graphed.fast_path["cuda_graph"] is True and eager.fast_path["cuda_graph"] is False
    assert [m.lr for m in graphed.history] == [m.lr for m in eager.history]
    assert [m.lr for m in graphed.history] == pytest.approx([0.05, 0.05, 0.005, 0.005])
    for g, e in zip(graphed.history, eager.history, strict=True):
        assert g.train_loss == pytest.approx(e.train_loss, rel=1e-3, abs=1e-4)
        assert abs(g.val_top1 - e.val_top1) <= 0.6  # at most two of 360 validation images
    for (name, a), (_, b) in zip(
        graph_model.state_dict().items(), eager_model.state_dict().items(), strict=True
    ):
        if a.is_floating_point():
            assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), name


def test_lr_schedule_reaches_the_replayed_step(digits):
    # lr collapses to 1e-12 x after epoch 1: a graph that kept the captured lr would keep learning
    _, r = run(digits, recipe(epochs=3, milestones=(0.34,), gamma=1e-12))
    assert r.fast_path["cuda_graph"] is True
    first, second, third = r.history
    assert second.lr == pytest.approx(0.05e-12)
    assert third.val_top1 == pytest.approx(second.val_top1, abs=0.3)
    assert third.train_loss == pytest.approx(second.train_loss, rel=0.02)


def test_graphed_run_resumes_from_its_checkpoint(digits, tmp_path):
    ckpt = tmp_path / "run.ckpt"
    calls = iter([True])
    _, stopped = run(digits, recipe(), checkpoint_path=ckpt, should_stop=lambda: next(calls, False))
    assert stopped.status == "cancelled" and stopped.epochs == 1
    resumed_model, resumed = run(digits, recipe(), checkpoint_path=ckpt)
    straight_model, straight = run(digits, recipe())
    assert resumed.status == "succeeded" and [m.lr for m in resumed.history] == [
        m.lr for m in straight.history
    ]
    assert resumed.history[-1].val_top1 == pytest.approx(straight.history[-1].val_top1, abs=1.0)


def test_amp_graphed_run_trains(digits):
    _, r = run(digits, recipe(amp=True))
    assert r.fast_path["cuda_graph"] is True and r.fast_path["amp_bf16"] is True
    assert r.history[-1].val_top1 > 80
