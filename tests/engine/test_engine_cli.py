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
    assert set(quantised["latency"]["by_batch"]) == {"1", "32"}
    assert (
        quantised["latency"]["runtime"] == "onnxruntime" and quantised["fp32_latency"]["runtime"] == "torch"
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
