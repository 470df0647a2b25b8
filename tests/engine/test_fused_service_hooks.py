"""What the service needs of the fused engine beyond train_group's contract: `on_leave` reports
each run as soon as it leaves the group (so the worker stores it while the others train), and the
`auto` group size (fused/probe.py): memory arithmetic everywhere, the probe itself on CUDA."""

from __future__ import annotations

import functools

import pytest
import torch

from tests.engine.fused_cases import FLOAT64, group_recipes, tiny_images
from workers.engine.fused import train_group
from workers.engine.fused.probe import (
    AUTO_GROUP_CAP,
    CPU_AUTO_GROUP_SIZE,
    auto_group_size,
    group_size_for_memory,
    probe_peak_bytes,
)
from workers.engine.models import build_model

SHAPE = (1, 8, 8)
make = functools.partial(build_model, "digits_cnn", num_classes=10, input_shape=SHAPE)


@pytest.fixture(scope="module")
def data():
    return tiny_images(SHAPE)


def test_on_leave_reports_each_run_once_when_it_leaves_with_its_result(data, tmp_path):
    recipes = group_recipes(seeds=(0, 1, 0), lrs=(0.02, 0.05, 0.1), wds=(1e-4, 5e-4, 1e-3))
    events = []
    paths = [tmp_path / f"run{i}.ckpt" for i in range(3)]
    results = train_group(
        [make() for _ in recipes],
        data,
        recipes,
        dtype=FLOAT64,
        checkpoint_paths=paths,
        on_epoch=lambda i, m: events.append(("epoch", i, m.epoch)),
        should_stop=lambda i: i == 1,
        on_leave=lambda i, r: events.append(("leave", i, r)),
    )
    left = [(e[1], e[2]) for e in events if e[0] == "leave"]
    assert [i for i, _ in left] == [1, 0, 2]  # once each; the cancelled run first
    # run 1 is reported after epoch 1, before the others train epoch 2
    assert events.index(("leave", 1, left[0][1])) < events.index(("epoch", 0, 2))
    assert left[0][1].status == "cancelled" and left[0][1].epochs == 1
    for index, result in left:
        assert result.fast_path["fused"] is True and result.fast_path["group_size"] == 3
        assert result.history == results[index].history and result.status == results[index].status
    # a group resumed already finished reports every run before it returns
    again = []
    train_group([make() for _ in recipes], data, recipes, dtype=FLOAT64, checkpoint_paths=paths,
                on_leave=lambda i, r: again.append((i, r.status, r.epochs)))  # fmt: skip
    assert sorted(again) == [(0, "succeeded", 3), (1, "succeeded", 3), (2, "succeeded", 3)]


def test_group_size_for_memory_fits_the_free_memory_with_a_margin():
    mib = 2**20
    # 100 MiB for the first model, 60 MiB each more: 40 fixed; 0.7 x 1000 MiB = 700 -> (700-40)/60 = 11
    assert group_size_for_memory(100 * mib, 160 * mib, 1000 * mib) == 11
    assert group_size_for_memory(100 * mib, 160 * mib, 1000 * mib, margin=1.0) == 16
    assert group_size_for_memory(100 * mib, 160 * mib, 10**6 * mib) == AUTO_GROUP_CAP  # capped
    assert group_size_for_memory(100 * mib, 160 * mib, 50 * mib) == 1  # not even one more: alone
    # a second model that seems free (the allocator rounded both up alike): each counts as the first
    assert group_size_for_memory(100 * mib, 100 * mib, 1000 * mib) == 7


def test_auto_on_the_cpu_is_the_bench_constant():
    recipe = group_recipes()[0]
    assert auto_group_size(make(), recipe, SHAPE, 10, torch.device("cpu")) == CPU_AUTO_GROUP_SIZE


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the memory probe measures CUDA memory")
def test_the_cuda_probe_measures_more_for_two_models_and_leaves_the_model_alone():
    device = torch.device("cuda")
    recipe = group_recipes(batch_size=128, eval_batch_size=1000)[0]
    model = build_model("resnet20", num_classes=10, input_shape=(3, 32, 32))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one = probe_peak_bytes(model, recipe, (3, 32, 32), 10, 1, device)
    two = probe_peak_bytes(model, recipe, (3, 32, 32), 10, 2, device)
    assert 0 < one < two < 3 * one
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    size = auto_group_size(model, recipe, (3, 32, 32), 10, device)
    free, _ = torch.cuda.mem_get_info(device)
    assert 1 <= size <= AUTO_GROUP_CAP
    assert one + (size - 1) * (two - one) <= free  # what it chose fits what is free now


@pytest.mark.parametrize("masked", [False, True])
def test_the_probe_steps_run_for_plain_and_masked_models_and_leave_them_alone(masked):
    """The probe's steps on the CPU (its memory figures are CUDA's): an unstructured variant's
    masked model fuses like its training group does, and the run's own model is not touched."""
    from torch.nn.utils import prune

    from workers.engine.fused.probe import probe_steps

    model = make()
    if masked:
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                prune.l1_unstructured(module, "weight", amount=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = group_recipes(batch_size=16, eval_batch_size=32)[0]
    probe_steps(model, recipe, SHAPE, 10, 2, torch.device("cpu"))
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_a_masked_group_that_keeps_its_weights_trains_as_its_solo_runs(data):
    """An unstructured variant retrained by rewind or finetune: masks attached, reinit=False (the
    job's arguments). Its group matches the solo runs, zeros kept."""
    from tests.engine.fused_cases import assert_same_history, assert_same_weights, solo_run
    from workers.engine.pruning import prune_unstructured
    from workers.jobs.common import attach_masks

    sparse = prune_unstructured(make(), amount=0.6, scope="global").model
    state = sparse.state_dict()

    def masked():
        model = make()
        model.load_state_dict(state)
        return attach_masks(model)

    recipes = group_recipes(seeds=(0, 0), lrs=(0.05, 0.1), wds=(5e-4, 1e-3))
    models = [masked().to(FLOAT64) for _ in recipes]
    results = train_group(models, data, recipes, dtype=FLOAT64, reinit=False)
    for recipe, model, result in zip(recipes, models, results, strict=True):
        solo_model, solo = solo_run(masked, data, recipe, reinit=False)
        assert result.status == solo.status == "succeeded"
        assert_same_history(result.history, solo.history)
        assert_same_weights(model, solo_model)
        zeros = sum(
            int((m.weight_orig * m.weight_mask == 0).sum())
            for m in model.modules()
            if hasattr(m, "weight_mask")
        )
        assert zeros >= sum(
            int((v == 0).sum()) for k, v in state.items() if k.endswith("weight") and v.dim() > 1
        )
