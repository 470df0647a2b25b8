"""The training recipe and loop on the real digits data set and digits_cnn (CPU, a few epochs)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from workers.engine.checkpoint import CheckpointError
from workers.engine.data import DatasetSpec, load_dataset
from workers.engine.models import build_model
from workers.engine.training import (
    EpochMetrics,
    Recipe,
    RecipeError,
    TrainingError,
    evaluate,
    make_optimizer,
    milestone_epochs,
    pick_device,
    train,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetSpec("digits"))


def fresh_model() -> nn.Module:
    return build_model("digits_cnn", num_classes=10)


def small_recipe(**overrides) -> Recipe:
    base = dict(epochs=4, batch_size=64, lr=0.05, weight_decay=5e-4, eval_batch_size=512)
    return Recipe(**{**base, **overrides})


def comparable(history: list[EpochMetrics]) -> list[dict]:
    """Metrics without the wall time, which legitimately differs between runs."""
    return [{k: v for k, v in dataclasses.asdict(m).items() if k != "seconds"} for m in history]


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), f"{name} differs"


# --- Recipe -------------------------------------------------------------------------------------


def test_recipe_defaults_are_the_studys():
    r = Recipe()
    assert (r.epochs, r.batch_size, r.lr, r.weight_decay, r.momentum) == (180, 128, 0.1, 1e-4, 0.9)
    assert (r.milestones, r.gamma, r.nesterov, r.init) == ((0.5, 0.75), 0.1, False, "kaiming")
    assert milestone_epochs(r) == [90, 135]


def test_recipe_round_trips_through_dict():
    r = Recipe(epochs=7, lr=0.3, milestones=(0.3, 0.6, 0.9), nesterov=True, amp=True)
    d = r.to_dict()
    assert d["milestones"] == [0.3, 0.6, 0.9]
    assert Recipe.from_dict(d) == r
    assert set(d) == {f.name for f in dataclasses.fields(Recipe)}


def test_recipe_from_dict_names_unknown_key():
    with pytest.raises(RecipeError, match="learning_rate"):
        Recipe.from_dict({"epochs": 3, "learning_rate": 0.1})


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("epochs", 2.5),
        ("batch_size", 0),
        ("lr", 0.0),
        ("lr", -1.0),
        ("lr", float("nan")),
        ("weight_decay", -1e-4),
        ("milestones", [0.75, 0.5]),
        ("milestones", [0.5, 1.0]),
        ("milestones", [0.0, 0.5]),
        ("momentum", 1.0),
        ("init", "xavier"),
        ("augment", "yes"),
    ],
)
def test_recipe_rejects_out_of_range_values_naming_the_field(field, value):
    with pytest.raises(RecipeError, match=field):
        Recipe.from_dict({field: value})


def test_recipe_nesterov_needs_momentum():
    with pytest.raises(RecipeError, match="nesterov"):
        Recipe(nesterov=True, momentum=0.0)


# --- optimiser and schedule (no data needed) ----------------------------------------------------


def test_weight_decay_is_coupled_into_the_gradient_momentum_0():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    lr, wd = 0.3, 0.05
    optimizer, _ = make_optimizer(model, Recipe(lr=lr, weight_decay=wd, momentum=0.0))
    ((model(x) - y) ** 2).sum().backward()
    gw, gb = model.weight.grad.clone(), model.bias.grad.clone()
    optimizer.step()
    # coupled (torch.optim.SGD): w - lr * (g + wd * w). Decoupled w - lr*g - wd*w would differ.
    torch.testing.assert_close(model.weight.detach(), w0 - lr * (gw + wd * w0), rtol=0, atol=1e-6)
    torch.testing.assert_close(model.bias.detach(), b0 - lr * (gb + wd * b0), rtol=0, atol=1e-6)


def test_weight_decay_enters_the_momentum_buffer():
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    lr, wd, mom = 0.1, 0.2, 0.9
    optimizer, _ = make_optimizer(model, Recipe(lr=lr, weight_decay=wd, momentum=mom))
    x = torch.randn(4, 3)
    w = model.weight.detach().clone()
    buf = None
    for _ in range(2):
        optimizer.zero_grad()
        model(x).pow(2).sum().backward()
        g = model.weight.grad.clone() + wd * w  # coupled: decay is part of the gradient...
        buf = g if buf is None else mom * buf + g  # ...and therefore of the momentum
        w = w - lr * buf
        optimizer.step()
    torch.testing.assert_close(model.weight.detach(), w, rtol=0, atol=1e-6)


def test_milestones_round_and_never_hit_epoch_0():
    assert milestone_epochs(Recipe(epochs=4)) == [2, 3]
    assert milestone_epochs(Recipe(epochs=10, milestones=(0.33, 0.66))) == [3, 7]
    assert milestone_epochs(Recipe(epochs=1)) == [1, 1]


def test_pick_device():
    assert pick_device("cpu") == CPU
    assert pick_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(TrainingError, match="tpu"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="CUDA"):
            pick_device("cuda")


# --- the loop on digits -------------------------------------------------------------------------


def test_trains_above_50_percent_and_lr_drops_10x_at_milestones(digits):
    seen: list[EpochMetrics] = []
    model = fresh_model()
    result = train(model, digits, small_recipe(), device="cpu", on_epoch=seen.append)
    assert result.status == "succeeded"
    assert result.epochs == 4 and [m.epoch for m in seen] == [1, 2, 3, 4]
    assert result.history == seen
    assert result.top1 > 50.0
    assert result.top1 == seen[-1].val_top1 and result.top5 == seen[-1].val_top5
    assert all(0 <= m.val_top1 <= m.val_top5 <= 100 for m in seen)
    assert result.device == "cpu" and result.optimizer in {"sgd-fused", "sgd-foreach"}
    assert result.seconds == pytest.approx(sum(m.seconds for m in seen))
    # milestones (0.5, 0.75) of 4 epochs = after epochs 2 and 3
    lrs = [m.lr for m in seen]
    assert lrs == pytest.approx([0.05, 0.05, 0.005, 0.0005], rel=1e-12)
    # evaluate() agrees with the last epoch's validation figures
    loss, top1, top5 = evaluate(model, digits, batch_size=300)
    assert (top1, top5) == pytest.approx((result.top1, result.top5))
    assert loss == pytest.approx(seen[-1].val_loss, rel=1e-5)


def test_same_seed_same_result_different_seed_different(digits):
    recipe = small_recipe(epochs=2)
    runs = []
    for seed in (0, 0, 1):
        model = fresh_model()
        result = train(model, digits, dataclasses.replace(recipe, seed=seed), device="cpu")
        runs.append((model, result))
    (m0, r0), (m0b, r0b), (m1, r1) = runs
    assert_same_weights(m0, m0b)
    assert comparable(r0.history) == comparable(r0b.history)
    assert not torch.equal(m0.conv1.weight, m1.conv1.weight)
    assert comparable(r0.history) != comparable(r1.history)


def test_reinit_false_keeps_given_weights_and_snapshot_0_is_the_initial_weights(digits, tmp_path):
    model = fresh_model()
    with torch.no_grad():
        model.fc.weight.fill_(0.01)
    given = {k: v.clone() for k, v in model.state_dict().items()}
    snap = tmp_path / "init.pt"
    train(
        model,
        digits,
        small_recipe(epochs=1),
        device="cpu",
        reinit=False,
        snapshot_epoch=0,
        snapshot_path=snap,
    )
    saved = torch.load(snap, weights_only=True)
    for k in given:
        assert torch.equal(saved[k], given[k]), k


def test_snapshot_after_epoch_t_equals_a_t_epoch_run(digits, tmp_path):
    recipe = small_recipe(epochs=2, milestones=())  # no schedule: epoch 1 is the same in both runs
    snap = tmp_path / "rewind.pt"
    train(fresh_model(), digits, recipe, device="cpu", snapshot_epoch=1, snapshot_path=snap)
    one_epoch = fresh_model()
    train(one_epoch, digits, dataclasses.replace(recipe, epochs=1), device="cpu")
    rewound = fresh_model()
    rewound.load_state_dict(torch.load(snap, weights_only=True))
    assert_same_weights(rewound, one_epoch)


def test_cancel_then_resume_is_bitwise_identical_to_an_uninterrupted_run(digits, tmp_path):
    recipe = small_recipe(epochs=4)  # LR drops after epochs 2 and 3: the scheduler must resume too
    straight_model = fresh_model()
    straight = train(straight_model, digits, recipe, device="cpu")

    ckpt = tmp_path / "run" / "ckpt.pt"
    first_part: list[EpochMetrics] = []
    cancelled = train(
        fresh_model(),
        digits,
        recipe,
        device="cpu",
        checkpoint_path=ckpt,
        on_epoch=first_part.append,
        should_stop=lambda: len(first_part) >= 2,
    )
    assert cancelled.status == "cancelled" and cancelled.epochs == 2
    assert ckpt.exists()
    assert list(ckpt.parent.iterdir()) == [ckpt]  # no temporary file left behind

    # a new process would start from a freshly built model; the torch RNG is disturbed on purpose
    torch.manual_seed(12345)
    resumed_model = fresh_model()
    second_part: list[EpochMetrics] = []
    resumed = train(
        resumed_model, digits, recipe, device="cpu", checkpoint_path=ckpt, on_epoch=second_part.append
    )
    assert resumed.status == "succeeded" and resumed.epochs == 4
    assert [m.epoch for m in second_part] == [3, 4]
    assert_same_weights(resumed_model, straight_model)
    assert comparable(resumed.history) == comparable(straight.history)
    assert (resumed.top1, resumed.top5) == (straight.top1, straight.top5)

    # a finished checkpoint resumes straight to the same result without training again
    again: list[EpochMetrics] = []
    done = train(fresh_model(), digits, recipe, device="cpu", checkpoint_path=ckpt, on_epoch=again.append)
    assert (
        again == []
        and done.status == "succeeded"
        and comparable(done.history) == comparable(straight.history)
    )

    # the checkpoint belongs to its recipe
    with pytest.raises(CheckpointError, match="lr"):
        train(fresh_model(), digits, dataclasses.replace(recipe, lr=0.1), device="cpu", checkpoint_path=ckpt)


def test_absurd_lr_diverges_with_metrics(digits, tmp_path):
    seen: list[EpochMetrics] = []
    recipe = small_recipe(epochs=5, lr=1e4, milestones=())
    ckpt = tmp_path / "ckpt.pt"
    result = train(fresh_model(), digits, recipe, device="cpu", on_epoch=seen.append, checkpoint_path=ckpt)
    assert result.status == "diverged"
    assert 1 <= result.epochs < 5 and len(seen) == result.epochs
    assert not math.isfinite(seen[-1].train_loss)
    assert 0.0 <= result.top1 <= result.top5 <= 100.0  # a real accuracy, whatever the weights are
    # the stored run stays diverged: resuming it reports the same outcome without training
    again = train(fresh_model(), digits, recipe, device="cpu", checkpoint_path=ckpt)
    assert again.status == "diverged" and again.epochs == result.epochs


def test_snapshot_arguments_are_checked(digits, tmp_path):
    with pytest.raises(TrainingError, match="snapshot_path"):
        train(fresh_model(), digits, small_recipe(epochs=1), device="cpu", snapshot_epoch=0)
    with pytest.raises(TrainingError, match="snapshot_epoch"):
        train(
            fresh_model(),
            digits,
            small_recipe(epochs=1),
            device="cpu",
            snapshot_epoch=3,
            snapshot_path=tmp_path / "s",
        )


def test_a_checkpoint_resumes_only_into_the_run_that_wrote_it(digits, tmp_path):
    """Issue 13: a deleted run's checkpoint was resumed by the next study's run that got the same
    path. A checkpoint carries its run's identity; another identity is refused, not resumed."""
    from workers.engine.training import ForeignCheckpointError

    recipe = small_recipe(epochs=3)
    ckpt = tmp_path / "run_7" / "checkpoint.pt"
    mine = {"study_id": 1, "run_id": 7, "variant": "base", "dataset": {"name": "digits"}}
    done: list[EpochMetrics] = []
    train(
        fresh_model(),
        digits,
        recipe,
        device="cpu",
        checkpoint_path=ckpt,
        checkpoint_identity=mine,
        on_epoch=done.append,
        should_stop=lambda: len(done) >= 1,
    )
    for other in ({**mine, "study_id": 2}, {**mine, "run_id": 8}, {**mine, "dataset": {"name": "cifar10"}}):
        with pytest.raises(ForeignCheckpointError, match="not resumed"):
            train(
                fresh_model(), digits, recipe, device="cpu", checkpoint_path=ckpt, checkpoint_identity=other
            )
    resumed: list[EpochMetrics] = []
    result = train(
        fresh_model(), digits, recipe, device="cpu", checkpoint_path=ckpt, checkpoint_identity=mine,
        on_epoch=resumed.append,
    )  # fmt: skip
    assert result.status == "succeeded" and [m.epoch for m in resumed] == [2, 3]  # its own: resumed
