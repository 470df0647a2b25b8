"""Quantisation on a digits_cnn trained for a few epochs: int8 / mixed through ONNX Runtime, fp16,
and unstructured pruning combined with int8 in both orders."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from workers.engine.data import DatasetSpec, load_dataset
from workers.engine.errors import QuantisationError
from workers.engine.models import build_model
from workers.engine.quantise import (
    HalfPrecision,
    OnnxClassifier,
    export_onnx,
    onnx_weight_sparsity,
    onnx_weights,
    prune_and_quantise,
    prune_quantised,
    quantise_int8,
    to_fp16,
)
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
def calib(data):
    return data.calibration_batches(4, 64)


@pytest.fixture(scope="module")
def fp32_onnx(trained, tmp_path_factory):
    return export_onnx(trained, (1, 8, 8), tmp_path_factory.mktemp("q") / "fp32.onnx")


@pytest.fixture(scope="module")
def int8_onnx(trained, calib, tmp_path_factory):
    return quantise_int8(trained, calib, tmp_path_factory.mktemp("q") / "int8.onnx")


def test_export_has_dynamic_batch_and_matches_torch(trained, fp32_onnx):
    runner = OnnxClassifier(fp32_onnx, threads=1)
    for batch in (1, 7):
        x = torch.randn(batch, 1, 8, 8)
        with torch.no_grad():
            expected = trained(x).numpy()
        np.testing.assert_allclose(runner.predict(x), expected, atol=1e-4)


def test_int8_is_qdq_per_channel_smaller_and_accurate(trained, data, fp32_onnx, int8_onnx):
    graph = onnx.load(str(int8_onnx)).graph
    ops = [node.op_type for node in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    weights = {w.layer: w for w in onnx_weights(onnx.load(str(int8_onnx)))}
    assert set(weights) == {"conv1", "conv2", "conv3", "fc"}
    modules = dict(trained.named_modules())
    for name, weight in weights.items():
        assert weight.values.dtype == np.int8, name
        # Per-channel: one scale per output channel; symmetric: zero point 0.
        assert weight.scale.shape == (modules[name].weight.shape[0],), name
        assert weight.zero_point is None or not weight.zero_point.any(), name
    # Activations are per-tensor uint8 (asymmetric: a zero point of its own).
    activation_zero_points = [
        numpy_helper.to_array(init)
        for init in graph.initializer
        if init.name.endswith("_zero_point") and init.data_type == onnx.TensorProto.UINT8
    ]
    assert activation_zero_points and all(z.size == 1 for z in activation_zero_points)

    assert int8_onnx.stat().st_size < 0.5 * fp32_onnx.stat().st_size
    _, fp32_top1, _ = evaluate(trained, data)
    int8_top1, int8_top5 = OnnxClassifier(int8_onnx).evaluate(data)
    assert fp32_top1 > 80
    assert abs(int8_top1 - fp32_top1) <= 2.0
    assert int8_top5 >= int8_top1


def test_mixed_keeps_classifier_fp32(trained, calib, data, tmp_path):
    path = quantise_int8(trained, calib, tmp_path / "mixed.onnx", mixed=True)
    weights = {w.layer: w for w in onnx_weights(onnx.load(str(path)))}
    assert weights["fc"].scale is None and weights["fc"].values.dtype == np.float32
    np.testing.assert_allclose(weights["fc"].values, trained.fc.weight.detach().numpy())
    assert all(weights[name].values.dtype == np.int8 for name in ("conv1", "conv2", "conv3"))
    _, fp32_top1, _ = evaluate(trained, data)
    assert abs(OnnxClassifier(path).evaluate(data)[0] - fp32_top1) <= 2.0


def test_fp16_runs_in_half_and_stays_accurate(trained, data):
    half = to_fp16(trained)
    assert isinstance(half, HalfPrecision)
    assert all(p.dtype == torch.float16 for p in half.parameters())
    assert trained.fc.weight.dtype == torch.float32  # the source model is untouched
    out = half(torch.randn(3, 1, 8, 8))
    assert out.dtype == torch.float32 and out.shape == (3, 10)
    _, fp32_top1, _ = evaluate(trained, data)
    _, fp16_top1, _ = evaluate(half, data)
    assert abs(fp16_top1 - fp32_top1) <= 1.0


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_quantise_then_prune_zeroes_int8_weights(int8_onnx, data, tmp_path, scope):
    result = prune_quantised(int8_onnx, tmp_path / f"qp-{scope}.onnx", amount=0.5, scope=scope)
    assert result.sparsity == pytest.approx(0.5, abs=0.01)
    assert onnx_weight_sparsity(result.path) == (result.zero_weights, result.prunable_weights)
    if scope == "layer":
        for weight in onnx_weights(onnx.load(str(result.path))):
            assert (weight.values == 0).mean() == pytest.approx(0.5, abs=0.02), weight.layer
    top1, _ = OnnxClassifier(result.path).evaluate(data)
    assert top1 > 30  # still a working classifier (chance is 10 %)


def test_prune_then_quantise_keeps_sparsity(trained, calib, data, tmp_path):
    result = prune_and_quantise(
        trained, calib, tmp_path / "pq.onnx", amount=0.5, scope="layer", order="prune_then_quantise"
    )
    # Pruned zeros quantise to exactly 0; a few tiny survivors may round to 0 as well.
    assert 0.5 <= result.sparsity <= 0.55
    assert OnnxClassifier(result.path).evaluate(data)[0] > 30
    assert trained.conv2.weight.count_nonzero() == trained.conv2.weight.numel()  # source untouched


def test_errors_name_what_is_wrong(trained, tmp_path):
    with pytest.raises(QuantisationError, match="calib_batches"):
        quantise_int8(trained, [], tmp_path / "x.onnx")
    with pytest.raises(QuantisationError, match="does not exist"):
        OnnxClassifier(tmp_path / "missing.onnx")
    with pytest.raises(QuantisationError, match="input_shape"):
        export_onnx(trained, (8, 8), tmp_path / "x.onnx")
    with pytest.raises(QuantisationError, match="amount"):
        prune_quantised(tmp_path / "x.onnx", tmp_path / "y.onnx", amount=1.0)
