"""Sensitivity scans and iterative pruning on a digits_cnn trained for a few epochs."""

from __future__ import annotations

import pytest
import torch

from workers.engine.data import DatasetSpec, load_dataset
from workers.engine.errors import PruningError
from workers.engine.flops import count_flops
from workers.engine.models import build_model
from workers.engine.scan import iterative_prune, sensitivity_scan
from workers.engine.training import Recipe, evaluate, train


@pytest.fixture(scope="module")
def data():
    return load_dataset(DatasetSpec("digits"))


@pytest.fixture(scope="module")
def trained(data):
    model = build_model("digits_cnn")
    train(model, data, Recipe(epochs=3, batch_size=64, lr=0.05, weight_decay=5e-4, seed=0))
    return model.eval()


@pytest.fixture(scope="module")
def reference(trained, data):
    _, top1, top5 = evaluate(trained, data)
    return top1, top5


def test_unstructured_global_scan(trained, data, reference):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    rows = sensitivity_scan(trained, data, kind="unstructured", scope="global", fractions=(0, 0.5, 0.95))
    assert [r["fraction"] for r in rows] == [0, 0.5, 0.95]
    assert all(r["layer"] is None for r in rows)
    assert (rows[0]["top1"], rows[0]["top5"]) == reference
    assert rows[0]["sparsity"] == 0
    assert rows[1]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert rows[2]["sparsity"] == pytest.approx(0.95, abs=0.01)
    assert rows[2]["top1"] < reference[0] - 10
    # The scanned model itself is never pruned.
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())


def test_unstructured_layer_scan_has_a_row_per_layer_and_fraction(trained, data, reference):
    rows = sensitivity_scan(trained, data, kind="unstructured", scope="layer", fractions=(0.0, 0.9))
    layers = ["conv1", "conv2", "conv3", "fc"]
    assert [(r["layer"], r["fraction"]) for r in rows] == [(n, f) for n in layers for f in (0.0, 0.9)]
    by_key = {(r["layer"], r["fraction"]): r for r in rows}
    assert by_key[("conv1", 0.0)]["top1"] == reference[0]
    # Pruning 90 % of one layer zeroes 90 % of that layer: the global zero fraction is that share.
    total = sum(trained.get_submodule(n).weight.numel() for n in layers)
    share = trained.conv3.weight.numel() / total
    assert by_key[("conv3", 0.9)]["sparsity"] == pytest.approx(0.9 * share, abs=0.005)
    assert min(by_key[(n, 0.9)]["top1"] for n in layers) < reference[0]


def test_structured_scan_reports_flops_ratio(trained, data, reference):
    rows = sensitivity_scan(trained, data, kind="structured", scope="global", fractions=(0.0, 0.5, 0.9))
    assert rows[0]["flops_ratio"] == 1.0 and rows[0]["top1"] == reference[0]
    assert rows[1]["flops_ratio"] < 0.8
    assert rows[2]["flops_ratio"] < rows[1]["flops_ratio"]
    assert rows[2]["top1"] < reference[0]
    per_layer = sensitivity_scan(trained, data, kind="structured", scope="layer", fractions=(0.5,))
    assert [r["layer"] for r in per_layer] == ["conv2", "conv3"]
    assert all(0.5 < r["flops_ratio"] < 1.0 for r in per_layer)


def test_scan_rejects_bad_arguments(trained, data):
    with pytest.raises(PruningError, match="fractions"):
        sensitivity_scan(trained, data, fractions=(0.5, 1.0))
    with pytest.raises(PruningError, match="kind"):
        sensitivity_scan(trained, data, kind="channels")
    with pytest.raises(PruningError, match="target"):
        iterative_prune(trained, data, Recipe(epochs=1), target=1.5, steps=2)


def test_iterative_unstructured_finetune_reaches_target(trained, data):
    recipe = Recipe(epochs=1, batch_size=64, lr=0.01, weight_decay=5e-4, milestones=(0.5,))
    result = iterative_prune(trained, data, recipe, target=0.8, steps=2, kind="unstructured")
    sparsities = [row["sparsity"] for row in result.history]
    assert sparsities[0] == pytest.approx(1 - 0.2**0.5, abs=0.01)  # geometric schedule
    assert sparsities[1] == pytest.approx(0.8, abs=0.01)
    # Retraining kept the pruned weights at zero and left plain (mask-free) weights.
    assert not hasattr(result.model.conv2, "weight_mask")
    weights = [result.model.get_submodule(n).weight for n in ("conv1", "conv2", "conv3", "fc")]
    zero = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zero == pytest.approx(0.8, abs=0.01)
    assert result.history[-1]["top1"] > 50
    assert result.history[-1]["params_nonzero"] < result.history[-1]["params"]


def test_iterative_structured_reinit_reaches_flops_target(trained, data):
    recipe = Recipe(epochs=2, batch_size=64, lr=0.05, weight_decay=5e-4)
    result = iterative_prune(trained, data, recipe, target=0.5, steps=2, kind="structured", retrain="reinit")
    ratios = [row["flops_ratio"] for row in result.history]
    assert ratios[0] > ratios[1]
    assert ratios[1] == pytest.approx(0.5, abs=0.05)
    assert count_flops(result.model, (1, 8, 8)) / count_flops(trained, (1, 8, 8)) == pytest.approx(ratios[1])
    assert result.history[-1]["top1"] > 50


def test_step_targets_linear_and_geometric():
    from workers.engine.scan import step_targets

    # k equal steps in the amount / in the FLOPs ratio (a study's `iterations`)
    assert step_targets(0.6, 3, kind="unstructured", schedule="linear") == pytest.approx([0.2, 0.4, 0.6])
    assert step_targets(0.4, 3, kind="structured", schedule="linear") == pytest.approx([0.8, 0.6, 0.4])
    # the same share of what is left every round
    assert step_targets(0.75, 2, kind="unstructured") == pytest.approx([0.5, 0.75])
    assert step_targets(0.25, 2, kind="structured") == pytest.approx([0.5, 0.25])
    with pytest.raises(PruningError, match="schedule"):
        step_targets(0.5, 2, kind="structured", schedule="cubic")


def test_scan_stops_when_asked(trained, data):
    asked = []

    def stop_after_two() -> bool:
        asked.append(1)
        return len(asked) > 2

    rows = sensitivity_scan(
        trained,
        data,
        kind="unstructured",
        scope="global",
        fractions=(0, 0.2, 0.4, 0.6),
        should_stop=stop_after_two,
    )
    # 0 is the reference (no question); 0.2 and 0.4 ran; asked a third time before 0.6: stop
    assert [r["fraction"] for r in rows] == [0, 0.2, 0.4]


def test_iterative_stops_between_rounds_and_keeps_the_rounds_done(trained, data):
    recipe = Recipe(epochs=1, batch_size=64, lr=0.01, weight_decay=5e-4, milestones=(0.5,))
    rounds = []
    result = iterative_prune(
        trained, data, recipe, target=0.6, steps=3, kind="unstructured", schedule="linear",
        on_step=rounds.append, should_stop=lambda: len(rounds) >= 1,
    )  # fmt: skip
    assert result.status == "cancelled"
    assert [row["step"] for row in result.history] == [1]
    assert result.history[0]["target"] == pytest.approx(0.2)
    assert result.history[0]["sparsity"] == pytest.approx(0.2, abs=0.01)
    assert result.sparsity == pytest.approx(0.2, abs=0.01)  # the model of the last round done


def test_iterative_structured_linear_nonuniform_reports_kept_fractions_of_the_input(trained, data):
    recipe = Recipe(epochs=1, batch_size=64, lr=0.01, weight_decay=5e-4, milestones=(0.5,))
    result = iterative_prune(
        trained, data, recipe, target=0.5, steps=2, kind="structured", method="nonuniform", schedule="linear"
    )
    assert result.status == "succeeded"
    assert [row["target"] for row in result.history] == pytest.approx([0.75, 0.5])
    assert result.history[0]["flops_ratio"] == pytest.approx(0.75, abs=0.02)
    assert result.flops_ratio == pytest.approx(0.5, abs=0.02)
    assert result.flops == count_flops(result.model, (1, 8, 8))
    assert result.base_flops == count_flops(trained, (1, 8, 8))
    # fractions of the input model's filters, cumulative over both rounds
    for name, kept in result.kept_channels.items():
        assert result.kept_fractions[name] == kept / trained.get_submodule(name).out_channels
        assert result.model.get_submodule(name).out_channels == kept
    assert min(result.kept_fractions.values()) < 1.0


def test_rewind_resets_surviving_weights_and_keeps_the_mask(trained):
    from workers.engine.models import build_model
    from workers.engine.pruning import prune_unstructured
    from workers.engine.scan import _rewind_to

    early = build_model("digits_cnn").state_dict()
    pruned = prune_unstructured(trained, amount=0.5, scope="global", permanent=False).model
    _rewind_to(pruned, early)
    for name in ("conv2", "fc"):
        module = pruned.get_submodule(name)
        assert torch.equal(module.weight, early[f"{name}.weight"] * module.weight_mask)
        assert module.weight_mask.mean() < 0.9  # the pruned pattern is still there
    assert torch.equal(pruned.fc.bias, early["fc.bias"])
    assert torch.equal(pruned.bn2.running_mean, early["bn2.running_mean"])
    with pytest.raises(PruningError, match="rewind"):
        iterative_prune(trained, None, Recipe(epochs=1), target=0.5, steps=2, kind="structured", retrain="rewind",
                        rewind_state=early)  # fmt: skip
