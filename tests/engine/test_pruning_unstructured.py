"""Unstructured L1 magnitude pruning (docs/spec.md section 4): exact sparsity, permanence, kept masks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workers.engine.errors import PruningError
from workers.engine.models import build_model
from workers.engine.pruning import make_permanent, prune_unstructured, weight_sparsity

DIGITS = (1, 8, 8)


def _model(name: str = "resnet20") -> nn.Module:
    torch.manual_seed(0)
    return build_model(name)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach() for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


def _has_reparametrisation(model: nn.Module) -> bool:
    return any(hasattr(m, "weight_orig") or hasattr(m, "weight_mask") for m in model.modules())


def test_layer_scope_zeroes_the_amount_in_every_layer() -> None:
    model = _model()
    result = prune_unstructured(model, amount=0.7, scope="layer")
    original, pruned = _weights(model), _weights(result.model)
    for name, weight in pruned.items():
        zeros = weight == 0
        assert int(zeros.sum()) == round(0.7 * weight.numel()), name
        # The zeroed weights are the layer's smallest in magnitude.
        magnitude = original[name].abs()
        assert magnitude[zeros].max() <= magnitude[~zeros].min()
        assert torch.equal(weight[~zeros], original[name][~zeros])
    total = sum(w.numel() for w in original.values())
    assert result.prunable_weights == total
    assert result.zero_weights == sum(round(0.7 * w.numel()) for w in original.values())
    assert result.sparsity == pytest.approx(result.zero_weights / total)
    assert not _has_reparametrisation(result.model)
    assert all(int((w == 0).sum()) == 0 for w in _weights(model).values()), "input model changed"


def test_global_scope_is_exact_over_all_weights_and_uneven_per_layer() -> None:
    model = _model()
    result = prune_unstructured(model, amount=0.8, scope="global")
    total = sum(w.numel() for w in _weights(model).values())
    assert result.zero_weights == round(0.8 * total)
    assert result.sparsity == pytest.approx(round(0.8 * total) / total)
    original = torch.cat([w.abs().flatten() for w in _weights(model).values()])
    pruned = torch.cat([w.flatten() for w in _weights(result.model).values()])
    assert original[pruned == 0].max() <= original[pruned != 0].min()
    per_layer = [float((w == 0).float().mean()) for w in _weights(result.model).values()]
    assert max(per_layer) - min(per_layer) > 0.05
    assert not _has_reparametrisation(result.model)


def test_masks_survive_an_optimizer_step_then_become_permanent() -> None:
    model = _model("digits_cnn")
    result = prune_unstructured(model, amount=0.6, scope="global", permanent=False)
    pruned = result.model
    assert hasattr(pruned.conv2, "weight_orig") and hasattr(pruned.conv2, "weight_mask")
    masks = {n: m.weight_mask.clone() for n, m in pruned.named_modules() if hasattr(m, "weight_mask")}
    optimiser = torch.optim.SGD(pruned.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    x, y = torch.randn(4, *DIGITS), torch.tensor([0, 1, 2, 3])
    for _ in range(2):
        optimiser.zero_grad()
        nn.functional.cross_entropy(pruned(x), y).backward()
        optimiser.step()
    pruned(x)  # the forward pre-hook recomputes weight = weight_orig * mask
    modules = dict(pruned.named_modules())
    for name, mask in masks.items():
        assert torch.all(modules[name].weight[mask == 0] == 0), name
        # The optimiser moved the underlying weights, so the zeros really come from the mask.
        assert torch.any(modules[name].weight_orig[mask == 0] != 0), name
    zeros_before, total = weight_sparsity(pruned)
    assert zeros_before >= result.zero_weights
    make_permanent(pruned)
    assert not _has_reparametrisation(pruned)
    assert weight_sparsity(pruned) == (zeros_before, total)
    assert pruned(x).shape == (4, 10)


def test_amount_zero_prunes_nothing() -> None:
    result = prune_unstructured(_model("digits_cnn"), amount=0.0, scope="layer")
    assert result.zero_weights == 0 and result.sparsity == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"amount": 1.0}, "amount"),
        ({"amount": -0.1}, "amount"),
        ({"amount": float("nan")}, "amount"),
        ({"amount": 0.5, "scope": "model"}, "scope"),
    ],
)
def test_invalid_arguments_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(PruningError, match=field):
        prune_unstructured(_model("digits_cnn"), **kwargs)
