"""The engine's `prunescape` subcommands, called as a user would (main([...]) and one subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from backend.cli.main import main
from workers.engine.artifacts import load_model
from workers.engine.flops import FLOPS_CONVENTION


def run_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def run_error(capsys, *argv: str) -> str:
    """Run a command that must fail; return its one-line error message."""
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse-level errors
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_measure_resnet56_matches_the_paper_figures(capsys):
    out = run_json(capsys, "measure", "--model", "resnet56")
    assert out["params"] == 853018
    assert out["flops"] == 250971392
    assert out["flops_convention"] == FLOPS_CONVENTION
    assert out["input_shape"] == [3, 32, 32]
    assert out["params_nonzero"] <= out["params"]


def test_measure_layers_and_input(capsys):
    out = run_json(capsys, "measure", "--model", "digits_cnn", "--layers", "--input", "1x16x16")
    assert out["input_shape"] == [1, 16, 16]
    assert [(row["name"], row["out_channels"]) for row in out["layers"]] == [("conv2", 64), ("conv3", 64)]
    small = run_json(capsys, "measure", "--model", "digits_cnn")
    assert out["flops"] > 3 * small["flops"]  # 4x the pixels before the pool


def test_measure_latency_names_the_runtime_with_every_figure(capsys):
    out = run_json(capsys, "measure", "--model", "digits_cnn", "--latency", "--threads", "1")
    latency = out["latency"]
    assert {"onnxruntime-cpu", "torch-cpu"} <= set(latency)
    for name, record in latency.items():
        assert record["runtime"] == name
    for name in ("onnxruntime-cpu", "torch-cpu"):
        record = latency[name]
        assert record["supported"] and record["precision"] == "fp32" and record["threads"] == 1
        assert set(record["by_batch"]) == {"1", "32"} and record["meets_spec"] is True
    assert latency["onnxruntime-cpu"]["model_format"] == "onnx-fp32"
    assert latency["onnxruntime-cpu"]["max_abs_diff_vs_torch"] < 1e-3

    # the text form: one line per runtime and batch, the runtime first
    assert main(["measure", "--model", "digits_cnn", "--latency", "--threads", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("latency")]
    timed = [(line.split()[1], line.split()[2]) for line in lines if "median" in line]
    assert {
        ("onnxruntime-cpu", "b=1"),
        ("onnxruntime-cpu", "b=32"),
        ("torch-cpu", "b=1"),
        ("torch-cpu", "b=32"),
    } <= set(timed)


def test_measure_latency_of_a_half_precision_file_is_fp16(capsys, tmp_path):
    import torch

    from workers.engine.artifacts import save_model
    from workers.engine.models import build_model

    path = tmp_path / "half.pt"
    save_model(
        build_model("digits_cnn").half(), path, model_name="digits_cnn", num_classes=10, input_shape=(1, 8, 8)
    )
    assert load_model(path)[0].conv1.weight.dtype == torch.float16
    assert main(["measure", "--model-file", str(path), "--latency", "--threads", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("latency")]
    assert any(line.split()[1] == "torch-cpu" and "(fp16, 1 threads" in line for line in lines), lines
    ort = [line for line in lines if line.split()[1] == "onnxruntime-cpu"]
    assert len(ort) == 1 and "fp16 not timed: ONNX Runtime's CPU provider casts" in ort[0]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["measure", "--model", "resnet56", "--input", "3x32"], "--input must look like 3x32x32"),
        (["measure", "--model", "nosuchnet"], "nosuchnet"),
        (["measure", "--input", "3x32x32"], "--model"),
        (
            [
                "prune",
                "--model",
                "digits_cnn",
                "--method",
                "uniform",
                "--flops-ratio",
                "1.5",
                "--out",
                "x.pt",
            ],
            "--flops-ratio must be in (0, 1], got 1.5",
        ),
        (["prune", "--model", "digits_cnn", "--method", "uniform", "--out", "x.pt"], "--flops-ratio"),
        (["prune", "--model", "digits_cnn", "--unstructured", "1.2", "--out", "x.pt"], "--unstructured"),
        (
            [
                "prune",
                "--model",
                "digits_cnn",
                "--method",
                "sideways",
                "--flops-ratio",
                "0.5",
                "--out",
                "x.pt",
            ],
            "--method",
        ),
        (
            ["scan", "--model-file", "missing.pt", "--dataset", "digits", "--kind", "structured"],
            "--model-file",
        ),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(capsys, argv, named):
    assert named in run_error(capsys, *argv)


def test_prune_structured_json_and_artefact(capsys, tmp_path):
    out_file = tmp_path / "u50.pt"
    out = run_json(
        capsys,
        "prune",
        "--model",
        "digits_cnn",
        "--method",
        "uniform",
        "--flops-ratio",
        "0.5",
        "--out",
        str(out_file),
    )
    for key in ("params", "flops", "flops_ratio", "layers", "base_params", "base_flops", "size_bytes"):
        assert key in out, key
    assert out["flops_ratio"] == pytest.approx(0.5, abs=0.05)
    assert out["flops"] == pytest.approx(0.5 * out["base_flops"], rel=0.1)
    assert out["params"] < out["base_params"]
    assert {row["name"] for row in out["layers"]} == {"conv2", "conv3"}
    assert all(0 < row["kept_channels"] < 64 for row in out["layers"])
    model, meta = load_model(out_file)
    assert meta["model_name"] == "digits_cnn"
    assert model.conv2.out_channels == next(r["kept_channels"] for r in out["layers"] if r["name"] == "conv2")


def test_prune_plan_and_unstructured(capsys, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"conv2": 0.5}))
    out = run_json(
        capsys, "prune", "--model", "digits_cnn", "--layer-ratios", str(plan), "--out", str(tmp_path / "p.pt")
    )
    kept = {row["name"]: row["kept_channels"] for row in out["layers"]}
    assert kept["conv2"] == 32 and kept["conv3"] == 64
    out = run_json(
        capsys, "prune", "--model", "digits_cnn", "--unstructured", "0.7", "--scope", "global",
        "--out", str(tmp_path / "s.pt"),
    )  # fmt: skip
    assert out["sparsity"] == pytest.approx(0.7, abs=0.01)
    assert out["params_nonzero"] < 0.4 * out["params"]
    assert out["sparse_size_bytes"] < out["size_bytes"]


@pytest.mark.slow
def test_train_quantise_scan_chain(capsys, tmp_path):
    model_file = tmp_path / "digits.pt"
    trained = run_json(
        capsys, "train", "--dataset", "digits", "--model", "digits_cnn", "--epochs", "3", "--lr", "0.05",
        "--batch-size", "64", "--out", str(model_file),
    )  # fmt: skip
    assert trained["status"] == "succeeded" and trained["top1"] > 80
    assert model_file.is_file() and trained["size_bytes"] == model_file.stat().st_size

    quantised = run_json(
        capsys, "quantise", "--model-file", str(model_file), "--dataset", "digits", "--mode", "int8",
        "--out", str(tmp_path / "digits8.onnx"), "--calib-batches", "4", "--threads", "1",
    )  # fmt: skip
    assert quantised["fp32_top1"] == pytest.approx(trained["top1"])
    assert abs(quantised["top1"] - quantised["fp32_top1"]) <= 2.0
    assert quantised["size_bytes"] < quantised["fp32_onnx_size_bytes"]
    # fp32 and int8 timed on the same runtimes, each record named; int8 has no torch figure
    for key in ("fp32_latency", "latency"):
        assert {"onnxruntime-cpu", "torch-cpu"} <= set(quantised[key])
        assert all(record["runtime"] == name for name, record in quantised[key].items())
    ort, ort_fp32 = quantised["latency"]["onnxruntime-cpu"], quantised["fp32_latency"]["onnxruntime-cpu"]
    assert (ort["precision"], ort["model_format"], ort_fp32["model_format"]) == (
        "int8",
        "onnx-qdq",
        "onnx-fp32",
    )
    assert set(ort["by_batch"]) == {"1", "32"}
    assert quantised["latency"]["torch-cpu"]["supported"] is False
    assert quantised["fp32_latency"]["torch-cpu"]["supported"] is True
    # the ratio is taken on ONNX Runtime CPU only: torch's fp32 figure is never set against int8
    assert set(quantised["latency_ratio"]) == {"onnxruntime-cpu"}
    assert quantised["latency_ratio"]["onnxruntime-cpu"]["1"] == pytest.approx(
        ort["by_batch"]["1"]["median_ms"] / ort_fp32["by_batch"]["1"]["median_ms"]
    )

    fp16 = run_json(
        capsys, "quantise", "--model-file", str(model_file), "--dataset", "digits", "--mode", "fp16",
        "--out", str(tmp_path / "digits16.pt"), "--no-latency",
    )  # fmt: skip
    assert abs(fp16["top1"] - fp16["fp32_top1"]) <= 1.0
    assert fp16["size_bytes"] < 0.6 * fp16["fp32_size_bytes"]

    scan = run_json(
        capsys, "scan", "--model-file", str(model_file), "--dataset", "digits", "--kind", "unstructured",
        "--fractions", "0,0.9",
    )  # fmt: skip
    assert [row["fraction"] for row in scan["rows"]] == [0, 0.9]
    assert scan["rows"][0]["top1"] == pytest.approx(trained["top1"])


def test_subprocess_json_stdout_is_clean():
    completed = subprocess.run(
        [sys.executable, "-m", "backend.cli.main", "measure", "--model", "digits_cnn", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    out = json.loads(completed.stdout)
    assert out["params"] == 56554
