"""train_group's contract beyond equivalence: what it refuses, its hooks, cancelling one run,
checkpoints in the solo format (a killed group resumes exactly; a group's checkpoint resumes as
a solo run), snapshots, splitting a fused model into savable models, and the per-model SGD."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
import torch.nn.functional as F

from tests.engine.fused_cases import (
    FLOAT64,
    assert_matches_solo,
    assert_same_history,
    assert_same_weights,
    group_recipes,
    solo_run,
    tiny_images,
)
from workers.engine.artifacts import load_model, save_model
from workers.engine.fused import FusedModel, FusedSGD, scheduled_lr, stack_inputs, train_group
from workers.engine.models import build_model
from workers.engine.pruning import prune_with_plan
from workers.engine.training import Recipe, TrainingError, make_optimizer, milestone_epochs

SHAPE = (1, 8, 8)
make = functools.partial(build_model, "digits_cnn", num_classes=10, input_shape=SHAPE)


@pytest.fixture(scope="module")
def data():
    return tiny_images(SHAPE)


def comparable(history):
    return [{k: v for k, v in dataclasses.asdict(m).items() if k != "seconds"} for m in history]


# --- what a group refuses --------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [("epochs", 4), ("momentum", 0.8), ("milestones", (0.5,)), ("batch_size", 4), ("augment", False)],
)
def test_recipes_may_differ_only_in_lr_wd_and_seed(data, field, value):
    recipes = group_recipes()
    recipes[2] = dataclasses.replace(recipes[2], **{field: value})
    with pytest.raises(TrainingError, match=rf"recipes\[2\] differs .*{field}"):
        train_group([make() for _ in recipes], data, recipes)


def test_models_of_different_architectures_are_refused(data):
    pruned = prune_with_plan(make(), SHAPE, {"conv2": 0.5}).model
    with pytest.raises(TrainingError, match="model 1 differs from model 0.*conv2"):
        train_group([make(), pruned], data, group_recipes(seeds=(0, 1), lrs=(0.1, 0.1), wds=(0, 0)))


def test_bad_group_arguments_name_what_is_wrong(data):
    model = make()
    recipes = group_recipes(seeds=(0, 1), lrs=(0.1, 0.2), wds=(0, 0))
    with pytest.raises(TrainingError, match="same model object twice"):
        train_group([model, model], data, recipes)
    with pytest.raises(TrainingError, match="one recipe per model"):
        train_group([make()], data, recipes)
    with pytest.raises(TrainingError, match="checkpoint_paths has 1 entries for 2 models"):
        train_group([make(), make()], data, recipes, checkpoint_paths=["a.ckpt"])
    with pytest.raises(TrainingError, match="dtype must be one of float32, float64"):
        train_group([make(), make()], data, recipes, dtype="float16")
    with pytest.raises(TrainingError, match="compile is not supported"):
        train_group([make(), make()], data, [dataclasses.replace(r, compile=True) for r in recipes])


# --- hooks and cancelling one run ------------------------------------------------------------


def test_cancelling_one_run_drops_it_at_the_epoch_and_the_others_go_on(data, tmp_path):
    recipes = group_recipes(seeds=(0, 1, 2, 3))
    models = [make() for _ in recipes]
    calls = []
    paths = [tmp_path / f"run{i}.ckpt" for i in range(4)]

    def on_epoch(index, metrics):
        calls.append((index, metrics.epoch))

    results = train_group(
        models,
        data,
        recipes,
        dtype=FLOAT64,
        checkpoint_paths=paths,
        on_epoch=on_epoch,
        should_stop=lambda i: i == 2,
    )
    assert [r.status for r in results] == ["succeeded", "succeeded", "cancelled", "succeeded"]
    assert [r.epochs for r in results] == [3, 3, 1, 3]
    assert calls == [(0, 1), (1, 1), (2, 1), (3, 1), (0, 2), (1, 2), (3, 2), (0, 3), (1, 3), (3, 3)]
    assert results[2].fast_path["group_size"] == 4 and results[0].fast_path["group_size"] == 4
    keep = [0, 1, 3]
    assert_matches_solo(
        make, data, [recipes[i] for i in keep], [models[i] for i in keep], [results[i] for i in keep]
    )
    # the cancelled run is its solo run cancelled after epoch 1 ...
    solo_model, solo = solo_run(make, data, recipes[2], should_stop=lambda: True)
    assert solo.status == "cancelled"
    assert_same_history(results[2].history, solo.history)
    assert_same_weights(models[2], solo_model)
    # ... and its checkpoint, written by the group, resumes as a solo run to the uninterrupted run
    resumed_model, resumed = solo_run(make, data, recipes[2], checkpoint_path=paths[2])
    straight_model, straight = solo_run(make, data, recipes[2])
    assert resumed.status == "succeeded" and comparable(resumed.history) == comparable(straight.history)
    assert_same_weights(resumed_model, straight_model)


class Killed(Exception):
    pass


def test_a_killed_group_resumes_from_its_checkpoints_exactly(data, tmp_path):
    recipes = group_recipes(seeds=(0, 1, 0, 1))
    paths = [tmp_path / f"run{i}.ckpt" for i in range(4)]

    def die_after_epoch_two_of_run_zero(index, metrics):
        if (index, metrics.epoch) == (0, 2):
            raise Killed  # the worker dies: run 0 has checkpointed epoch 2, runs 1-3 only epoch 1

    with pytest.raises(Killed):
        train_group([make() for _ in recipes], data, recipes, dtype=FLOAT64, checkpoint_paths=paths,
                    on_epoch=die_after_epoch_two_of_run_zero)  # fmt: skip
    seen = []
    resumed_models = [make() for _ in recipes]
    resumed = train_group(
        resumed_models, data, recipes, dtype=FLOAT64, checkpoint_paths=paths,
        on_epoch=lambda i, m: seen.append((i, m.epoch)),
    )  # fmt: skip
    assert seen == [(0, 3), (1, 2), (2, 2), (3, 2), (1, 3), (2, 3), (3, 3)]  # runs at different epochs
    straight_models = [make() for _ in recipes]
    straight = train_group(straight_models, data, recipes, dtype=FLOAT64)
    for a, b, model_a, model_b in zip(resumed, straight, resumed_models, straight_models, strict=True):
        assert a.status == b.status == "succeeded"
        assert comparable(a.history) == comparable(b.history)
        for (name, x), (_, y) in zip(model_a.state_dict().items(), model_b.state_dict().items(), strict=True):
            assert torch.equal(x, y), name


def test_snapshots_hold_the_weights_of_their_epoch(data, tmp_path):
    recipes = group_recipes(seeds=(0, 1), lrs=(0.05, 0.1), wds=(5e-4, 5e-4))
    snapshot = tmp_path / "run1-epoch1.pt"
    train_group([make(), make()], data, recipes, dtype=FLOAT64, snapshots=[None, (1, snapshot)])
    solo_snapshot = tmp_path / "solo-epoch1.pt"
    solo_run(make, data, recipes[1], snapshot_epoch=1, snapshot_path=solo_snapshot)
    ours, theirs = make().to(FLOAT64), make().to(FLOAT64)
    ours.load_state_dict(torch.load(snapshot, weights_only=True))
    theirs.load_state_dict(torch.load(solo_snapshot, weights_only=True))
    assert_same_weights(ours, theirs)


# --- fusing and splitting models ---------------------------------------------------------------


def test_split_models_save_and_reload_as_ordinary_models(data, tmp_path):
    models = [make() for _ in range(3)]
    fused = FusedModel(models)
    fused.eval()
    x = torch.randn(5, *SHAPE)
    fused_logits = fused.logits(x)
    for k, model in enumerate(fused.split(models[0])):
        assert type(model) is type(models[0])
        path = tmp_path / f"m{k}.pt"
        save_model(model, path, model_name="digits_cnn", num_classes=10, input_shape=SHAPE)
        loaded, _ = load_model(path)
        with torch.no_grad():
            assert torch.allclose(loaded.eval()(x), fused_logits[k], rtol=1e-5, atol=1e-6)
            assert torch.allclose(models[k].eval()(x), fused_logits[k], rtol=1e-5, atol=1e-6)


def test_per_model_batches_give_each_model_its_own_loss():
    models = [make() for _ in range(2)]
    fused = FusedModel(models)
    xs, ys = [torch.randn(6, *SHAPE) for _ in models], [torch.randint(0, 10, (6,)) for _ in models]
    losses, logits = fused(stack_inputs(xs, torch.contiguous_format), torch.stack(ys))
    for k, model in enumerate(models):
        assert torch.allclose(losses[k], F.cross_entropy(model(xs[k]), ys[k]), rtol=1e-5)
        assert logits[k].shape == (6, 10)
    with pytest.raises(TrainingError, match="per-model batches must be"):
        fused(torch.randn(6, 3, *SHAPE), torch.zeros(3, 6, dtype=torch.long))


# --- the per-model SGD -------------------------------------------------------------------------


class _Params(torch.nn.Module):
    def __init__(self, tensors):
        super().__init__()
        self.tensors = torch.nn.ParameterList(tensors)


@pytest.mark.parametrize("momentum, nesterov", [(0.9, False), (0.9, True), (0.0, False)])
def test_fused_sgd_steps_each_model_as_torch_sgd_does(momentum, nesterov):
    torch.manual_seed(0)
    lrs, wds = [0.1, 0.03, 0.5], [1e-4, 0.0, 5e-3]
    shapes = [(4, 3, 3, 3), (4,), (10, 4)]
    solo = [[torch.nn.Parameter(torch.randn(s)) for s in shapes] for _ in lrs]
    stacked = [torch.stack([p[i].detach() for p in solo]).requires_grad_() for i in range(len(shapes))]
    # the solo runs' optimizer: make_optimizer's (the fused kernel where this torch has it)
    optimizers = [
        make_optimizer(_Params(p), Recipe(lr=lr, weight_decay=wd, momentum=momentum, nesterov=nesterov))[0]
        for p, lr, wd in zip(solo, lrs, wds, strict=True)
    ]
    fused = FusedSGD(stacked, lrs=lrs, weight_decays=wds, momentum=momentum, nesterov=nesterov)
    for step in range(3):
        grads = [torch.randn(len(lrs), *s) for s in shapes]
        for k, params in enumerate(solo):
            for p, g in zip(params, grads, strict=True):
                p.grad = g[k].clone()
        for p, g in zip(stacked, grads, strict=True):
            p.grad = g.clone()
        for opt in optimizers:
            opt.step()
        fused.step()
        for k, params in enumerate(solo):
            for i, p in enumerate(params):
                assert torch.equal(stacked[i][k], p), (step, k, i)


def test_scheduled_lr_is_multisteplr():
    recipe = Recipe(epochs=10, lr=0.3, milestones=(0.2, 0.21, 0.7), gamma=0.3)
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=recipe.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(opt, milestone_epochs(recipe), gamma=recipe.gamma)
    for epoch in range(recipe.epochs):
        assert scheduled_lr(recipe, epoch) == opt.param_groups[0]["lr"], epoch
        opt.step()
        scheduler.step()
