"""Model artefacts: pruned models reload without class surgery; sparse size shows sparsity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from workers.engine.artifacts import load_model, save_model, sparse_size_bytes
from workers.engine.errors import ModelError
from workers.engine.models import build_model
from workers.engine.pruning import prune_structured, prune_unstructured

CIFAR = (3, 32, 32)


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name)


def _with_running_stats(model: nn.Module, input_shape) -> nn.Module:
    """A few training-mode forwards so BN statistics differ from a fresh build's."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, *input_shape))
    return model.eval()


@pytest.mark.parametrize(("name", "method"), [("resnet20", "nonuniform"), ("mobilenetv2_cifar", "uniform")])
def test_pruned_model_round_trip_gives_identical_outputs(tmp_path: Path, name: str, method: str) -> None:
    pruned = prune_structured(_model(name), CIFAR, method=method, flops_ratio=0.5).model
    pruned = _with_running_stats(pruned, CIFAR)
    path = tmp_path / "models" / f"{name}.pt"
    written = save_model(
        pruned, path, model_name=name, num_classes=10, input_shape=CIFAR, meta={"variant": "u50"}
    )
    assert written == path.stat().st_size > 0
    assert [p.name for p in path.parent.iterdir()] == [path.name], "temporary file left behind"

    loaded, meta = load_model(path)
    assert meta == {"variant": "u50", "model_name": name, "num_classes": 10, "input_shape": CIFAR}
    assert type(loaded) is type(pruned)
    x = torch.randn(3, *CIFAR)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
    shapes = {n: tuple(t.shape) for n, t in loaded.state_dict().items()}
    assert shapes == {n: tuple(t.shape) for n, t in pruned.state_dict().items()}
    for original, reloaded in zip(pruned.modules(), loaded.modules(), strict=True):
        if isinstance(original, nn.Conv2d):
            assert reloaded.groups == original.groups
    # The reloaded model trains like any other.
    loaded.train()
    nn.functional.cross_entropy(loaded(x), torch.tensor([0, 1, 2])).backward()


def test_masked_model_is_saved_with_masks_folded_in(tmp_path: Path) -> None:
    result = prune_unstructured(_model("digits_cnn"), amount=0.5, scope="layer", permanent=False)
    path = tmp_path / "sparse.pt"
    save_model(result.model, path, model_name="digits_cnn", num_classes=10, input_shape=(1, 8, 8))
    assert hasattr(result.model.conv2, "weight_orig"), "saving must not change the caller's model"
    loaded, _ = load_model(path)
    assert not hasattr(loaded.conv2, "weight_orig")
    assert torch.equal(loaded.conv2.weight, result.model.conv2.weight_orig * result.model.conv2.weight_mask)


def test_sparse_size_shows_unstructured_sparsity(tmp_path: Path) -> None:
    model = _model("resnet20")
    path = tmp_path / "dense.pt"
    dense = save_model(model, path, model_name="resnet20", num_classes=10, input_shape=CIFAR)
    # Without zeros the encoding saves only what zlib finds in float32 exponents (about 10 %).
    assert sparse_size_bytes(model) > 0.75 * dense
    sparse_model = prune_unstructured(model, amount=0.9, scope="global").model
    sparse = sparse_size_bytes(sparse_model)
    assert sparse < dense / 4
    assert (
        save_model(sparse_model, path, model_name="resnet20", num_classes=10, input_shape=CIFAR) > 0.9 * dense
    )
    masked = prune_unstructured(model, amount=0.9, scope="global", permanent=False).model
    assert sparse_size_bytes(masked) == sparse


def test_load_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt"
    with pytest.raises(ModelError, match="missing.pt"):
        load_model(missing)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ModelError, match="other.pt"):
        load_model(other)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="garbage.pt"):
        load_model(garbage)


def test_reserved_meta_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model_name"):
        save_model(
            _model("digits_cnn"),
            tmp_path / "m.pt",
            model_name="digits_cnn",
            num_classes=10,
            input_shape=(1, 8, 8),
            meta={"model_name": "x"},
        )
