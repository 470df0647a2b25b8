"""Measurements on hand-built models whose numbers can be worked out by hand."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from workers.engine.measure import (
    MeasurementError,
    compression_rate,
    count_params,
    environment_info,
    file_size_bytes,
    latency,
    weight_histograms,
)


def tiny() -> nn.Sequential:
    # conv 2->4 k3 no bias: 72; BN(4): 8; linear 4->3: 12 + 3 = 95 parameters.
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def test_count_params_total_and_nonzero():
    model = tiny()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].weight[0].zero_()  # 18 zeros
        model[5].weight.fill_(2.0)
        model[5].bias.zero_()  # 3 zeros
    # BN: weight 1 (4 non-zero), bias 0 (4 zeros).
    assert count_params(model) == (95, 95 - 18 - 3 - 4)


def test_count_params_sees_attached_pruning_masks_and_shared_weights():
    model = tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    prune.l1_unstructured(model[0], "weight", amount=0.5)  # 36 of 72 masked, mask still attached
    assert count_params(model) == (95, 95 - 36)
    shared = nn.Sequential(model[5], model[5])
    assert count_params(shared) == (15, 15)


def test_compression_rate_and_file_size(tmp_path):
    assert compression_rate(1000, 250) == 4.0
    with pytest.raises(MeasurementError, match="params"):
        compression_rate(1000, 0)
    path = tmp_path / "m.onnx"
    path.write_bytes(b"x" * 100)
    assert file_size_bytes(path) == 100
    (tmp_path / "m.onnx.data").write_bytes(b"y" * 50)  # external data counts with its model
    assert file_size_bytes(path) == 150
    with pytest.raises(MeasurementError, match="missing"):
        file_size_bytes(tmp_path / "missing.pt")


def test_latency_torch_shape_and_sanity():
    model = tiny().train()
    threads_before = torch.get_num_threads()
    result = latency(model, (2, 8, 8), batch_sizes=(1, 4), warmup=2, runs=5, threads=1)
    assert result["runtime"] == "torch" and result["device"] == "cpu"
    assert result["threads"] == 1 and result["input_shape"] == [2, 8, 8]
    assert result["meets_spec"] is False  # fewer runs than SPEC section 6 asks for
    assert set(result["by_batch"]) == {"1", "4"}
    for timing in result["by_batch"].values():
        assert 0 < timing["min_ms"] <= timing["median_ms"] <= timing["p90_ms"] < 1000
    assert result["by_batch"]["4"]["images_per_s"] == pytest.approx(
        4000 / result["by_batch"]["4"]["median_ms"]
    )
    assert model.training  # flags restored
    assert torch.get_num_threads() == threads_before
    json.dumps(result)  # stored as JSON with the run


def test_latency_default_protocol_meets_spec():
    spec = latency(tiny().eval(), (2, 8, 8), batch_sizes=(1,))
    assert spec["meets_spec"] is True and spec["warmup"] >= 10 and spec["runs"] >= 50


def test_latency_rejects_bad_arguments():
    with pytest.raises(MeasurementError, match="input_shape"):
        latency(tiny(), (8, 8))
    with pytest.raises(MeasurementError, match="runs"):
        latency(tiny(), (2, 8, 8), runs=0)
    with pytest.raises(MeasurementError, match="torch module or an .onnx path"):
        latency(object(), (2, 8, 8))


def test_int8_onnx_histograms_and_latency(tmp_path):
    from workers.engine.quantise import quantise_int8

    model = tiny().eval()
    hist = weight_histograms(model, bins=10)
    assert set(hist) == {"0", "5"}
    assert len(hist["0"]["edges"]) == 11 and sum(hist["0"]["counts"]) == 72 == hist["0"]["total"]
    path = quantise_int8(model, [torch.randn(8, 2, 8, 8)], tmp_path / "tiny8.onnx")
    int8_hist = weight_histograms(path, bins=10)
    # Both layers are found under their torch names in the int8 file, with the same number of weights.
    assert set(int8_hist) == {"0", "5"}
    assert sorted(h["total"] for h in int8_hist.values()) == [12, 72]
    # The ONNX Runtime path of latency() on the same file.
    onnx_result = latency(path, (2, 8, 8), batch_sizes=(1, 3), warmup=2, runs=5, threads=1)
    assert onnx_result["runtime"] == "onnxruntime" and onnx_result["threads"] == 1
    assert set(onnx_result["by_batch"]) == {"1", "3"}
    assert all(t["median_ms"] > 0 for t in onnx_result["by_batch"].values())


def test_environment_info_names_versions_and_cpu():
    info = environment_info()
    assert info["torch"] == torch.__version__
    for key in ("torchvision", "onnxruntime", "cpu_model", "torch_threads", "device", "device_name"):
        assert info[key], key
    assert set(info["cpu_flags"]) >= {"avx2", "avx512f", "avx512_vnni", "amx_tile"}
    assert all(isinstance(v, bool) for v in info["cpu_flags"].values())
    json.dumps(info)
