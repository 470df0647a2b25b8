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
    assert result["meets_spec"] is False  # fewer runs than docs/spec.md section 6 asks for
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


# --- latency by runtime ----------------------------------------------------------------------------

DIGITS = (1, 8, 8)
QUICK = {"batch_sizes": (1, 4), "warmup": 1, "runs": 2, "threads": 1}


def _digits(seed: int = 0) -> nn.Module:
    from workers.engine.models import build_model

    torch.manual_seed(seed)
    return build_model("digits_cnn", num_classes=10, input_shape=DIGITS).eval()


def _assert_measured(record: dict, runtime: str, precision: str, model_format: str) -> None:
    assert record["runtime"] == runtime and record["supported"] is True, record
    assert record["precision"] == precision and record["model_format"] == model_format
    assert record["library"] in ("torch", "onnxruntime") and record["library_version"]
    assert record["device"] == runtime.split("-")[1] and record["device_name"]
    assert record["threads"] == 1 and record["warmup"] == 1 and record["runs"] == 2
    assert record["meets_spec"] is False  # fewer warm-up and timed runs than docs/spec.md section 6 asks
    assert set(record["by_batch"]) == {"1", "4"}
    for timing in record["by_batch"].values():
        assert 0 < timing["min_ms"] <= timing["median_ms"] <= timing["p90_ms"]


def test_every_runtime_is_named_and_cpu_runtimes_time_fp32():
    from workers.engine.runtimes import RUNTIMES, latency_by_runtime

    model = _digits().train()
    records = latency_by_runtime(model, None, DIGITS, devices=("cpu", "cuda"), **QUICK)
    assert list(records) == list(RUNTIMES)
    assert all(records[name]["runtime"] == name for name in records)
    _assert_measured(records["onnxruntime-cpu"], "onnxruntime-cpu", "fp32", "onnx-fp32")
    _assert_measured(records["torch-cpu"], "torch-cpu", "fp32", "torch")
    # The ORT figure is of this model's own export, checked against its logits.
    assert records["onnxruntime-cpu"]["max_abs_diff_vs_torch"] < 1e-4
    assert model.training  # the caller's module is left as it was
    if not torch.cuda.is_available():
        assert records["torch-cuda"] == {
            "runtime": "torch-cuda",
            "supported": False,
            "precision": "fp32",
            "reason": f"torch {torch.__version__} sees no CUDA device",
        }
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        ort_cuda = records["onnxruntime-cuda"]
        assert ort_cuda["supported"] is False and "CUDAExecutionProvider" in ort_cuda["reason"]
    json.dumps(records, allow_nan=False)
    # Only the CPU runtimes unless CUDA is asked for.
    assert list(latency_by_runtime(model, None, DIGITS, **QUICK)) == ["onnxruntime-cpu", "torch-cpu"]


def test_runtime_names_agree_with_the_analysis():
    from backend.analysis import latency as analysis
    from workers.engine import runtimes

    assert analysis.RUNTIMES == runtimes.RUNTIMES and analysis.DEFAULT_RUNTIME == runtimes.DEFAULT_RUNTIME


def test_int8_is_timed_on_onnxruntime_cpu_only(tmp_path):
    from workers.engine.quantise import quantise_int8
    from workers.engine.runtimes import REASON_INT8_ORT_CUDA, REASON_INT8_TORCH, latency_by_runtime

    model = _digits()
    path = quantise_int8(model, [torch.randn(16, *DIGITS)], tmp_path / "q8.onnx")
    records = latency_by_runtime(model, path, DIGITS, precision="int8", devices=("cpu", "cuda"), **QUICK)
    _assert_measured(records["onnxruntime-cpu"], "onnxruntime-cpu", "int8", "onnx-qdq")
    assert records["torch-cpu"] == {
        "runtime": "torch-cpu",
        "supported": False,
        "precision": "int8",
        "reason": REASON_INT8_TORCH,
    }
    assert records["torch-cuda"]["supported"] is False
    assert records["onnxruntime-cuda"]["supported"] is False
    if torch.cuda.is_available():
        assert records["torch-cuda"]["reason"] == REASON_INT8_TORCH
    # No module is needed for int8; a QDQ file is, and a QDQ file is never timed as fp32.
    assert latency_by_runtime(None, path, DIGITS, precision="int8", **QUICK)["onnxruntime-cpu"]["supported"]
    with pytest.raises(MeasurementError, match="onnx_path.*QDQ"):
        latency_by_runtime(model, None, DIGITS, precision="int8", **QUICK)
    with pytest.raises(MeasurementError, match="quantised.*precision is 'fp32'"):
        latency_by_runtime(model, path, DIGITS, precision="fp32", **QUICK)
    assert "TensorRT" in REASON_INT8_ORT_CUDA


def test_fp16_is_timed_in_torch_and_refused_by_ort_cpu():
    from workers.engine.quantise import to_fp16
    from workers.engine.runtimes import REASON_FP16_ORT_CPU, latency_by_runtime

    model = _digits()
    for given in (model, to_fp16(model)):  # the fp32 source or its half copy
        records = latency_by_runtime(given, None, DIGITS, precision="fp16", **QUICK)
        assert records["onnxruntime-cpu"] == {
            "runtime": "onnxruntime-cpu",
            "supported": False,
            "precision": "fp16",
            "reason": REASON_FP16_ORT_CPU,
        }
        _assert_measured(records["torch-cpu"], "torch-cpu", "fp16", "torch")
    with pytest.raises(MeasurementError, match="precision 'fp32' but the model holds"):
        latency_by_runtime(_digits().half(), None, DIGITS, precision="fp32", **QUICK)


def test_ort_cpu_runs_an_fp16_graph_in_fp32(tmp_path):
    """Why fp16 on onnxruntime-cpu is refused: its optimised graph convolves fp32 weights."""
    import onnx
    import onnxruntime as ort

    from workers.engine.quantise import export_onnx
    from workers.engine.runtimes import convert_fp16

    fp32 = export_onnx(_digits(), DIGITS, tmp_path / "fp32.onnx")
    half = convert_fp16(fp32, tmp_path / "fp16.onnx")
    stored = onnx.load(str(half))
    conv_weights = {n.input[1] for n in stored.graph.node if n.op_type == "Conv"}
    assert {i.data_type for i in stored.graph.initializer if i.name in conv_weights} == {
        onnx.TensorProto.FLOAT16
    }
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    session = ort.InferenceSession(str(half), options, providers=["CPUExecutionProvider"])
    x = torch.randn(3, *DIGITS).numpy()
    with torch.inference_mode():
        expected = _digits()(torch.from_numpy(x)).numpy()
    # The conversion keeps float32 input and output and the model's logits (to fp16 precision).
    assert abs(session.run(None, {"input": x})[0] - expected).max() < 1e-2
    optimised = onnx.load(str(tmp_path / "optimised.onnx"))
    inits = {i.name: i.data_type for i in optimised.graph.initializer}
    convs = [n for n in optimised.graph.node if n.op_type == "Conv"]
    assert convs and {inits[n.input[1]] for n in convs if n.input[1] in inits} == {onnx.TensorProto.FLOAT}


def test_a_pruned_model_is_timed_on_its_own_export(tmp_path):
    from workers.engine.pruning import prune_structured
    from workers.engine.quantise import export_onnx
    from workers.engine.runtimes import latency_by_runtime

    base = _digits()
    pruned = prune_structured(base, DIGITS, method="uniform", flops_ratio=0.5).model.eval()
    base_onnx = export_onnx(base, DIGITS, tmp_path / "base.onnx")
    # The base's export given for the pruned variant is refused, not timed under its name.
    with pytest.raises(MeasurementError, match="not an export of this model"):
        latency_by_runtime(pruned, base_onnx, DIGITS, **QUICK)
    own = export_onnx(pruned, DIGITS, tmp_path / "pruned.onnx")
    given = latency_by_runtime(pruned, own, DIGITS, runtimes=["onnxruntime-cpu"], **QUICK)
    assert list(given) == ["onnxruntime-cpu"] and given["onnxruntime-cpu"]["max_abs_diff_vs_torch"] < 1e-4
    exported = latency_by_runtime(pruned, None, DIGITS, **QUICK)["onnxruntime-cpu"]
    assert exported["model_format"] == "onnx-fp32" and exported["max_abs_diff_vs_torch"] < 1e-4


def test_latency_on_one_runtime_and_a_resnet20_at_cifar_size():
    from workers.engine.models import build_model
    from workers.engine.runtimes import latency_on

    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    record = latency_on(
        "onnxruntime-cpu", model, None, (3, 32, 32), batch_sizes=(1,), warmup=0, runs=2, threads=1
    )
    assert record["runtime"] == "onnxruntime-cpu" and record["input_shape"] == [3, 32, 32]
    assert record["meets_spec"] is False and record["by_batch"]["1"]["median_ms"] > 0
    with pytest.raises(MeasurementError, match="unknown runtime"):
        latency_on("tensorrt", model, None, (3, 32, 32))


def test_latency_by_runtime_rejects_bad_arguments(tmp_path):
    from workers.engine.runtimes import latency_by_runtime

    model = _digits()
    bad = [
        ({"precision": "int4"}, "precision"),
        ({"devices": ("tpu",)}, "devices"),
        ({"devices": "cpu"}, "devices"),
        ({"runtimes": ["tensorrt"]}, "runtimes"),
        ({"runs": 0}, "runs"),
        ({"batch_sizes": (1, 100_000)}, "batch sizes"),
        ({"threads": 0}, "threads"),
    ]
    for kwargs, field in bad:
        with pytest.raises(MeasurementError, match=field):
            latency_by_runtime(model, None, DIGITS, **{**QUICK, **kwargs})
    with pytest.raises(MeasurementError, match="input_shape"):
        latency_by_runtime(model, None, (8, 8), **QUICK)
    with pytest.raises(MeasurementError, match="does not exist"):
        latency_by_runtime(model, tmp_path / "missing.onnx", DIGITS, **QUICK)
    with pytest.raises(MeasurementError, match="needs the variant's torch module"):
        latency_by_runtime(None, None, DIGITS, **QUICK)
    with pytest.raises(MeasurementError, match="torch module or None"):
        latency_by_runtime(object(), None, DIGITS, **QUICK)  # type: ignore[arg-type]


def test_onnxruntime_io_bound_timing_path(tmp_path):
    """The IOBinding timing that onnxruntime-cuda uses, run here with the CPU provider."""
    from workers.engine.measure import latency_protocol
    from workers.engine.quantise import export_onnx
    from workers.engine.runtimes import _Unsupported, ort_bound_latency

    path = export_onnx(_digits(), DIGITS, tmp_path / "fp32.onnx")
    protocol = latency_protocol(DIGITS, batch_sizes=(1, 4), warmup=1, runs=2, threads=1)
    record = ort_bound_latency(path, protocol, provider="CPUExecutionProvider", device_type="cpu")
    assert record["runtime"] == "onnxruntime" and record["device"] == "cpu" and record["threads"] == 1
    assert set(record["by_batch"]) == {"1", "4"} and record["meets_spec"] is False
    assert all(t["median_ms"] > 0 for t in record["by_batch"].values())
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        # Asking for a provider this onnxruntime lacks is a "not supported" record, not a CPU figure.
        with pytest.raises(_Unsupported):
            ort_bound_latency(path, protocol, provider="CUDAExecutionProvider", device_type="cuda")
