"""The engine's whole path on CPU, as a user runs it: train digits_cnn, prune it to half its FLOPs,
retrain the pruned net from scratch, quantise it to int8 with ONNX Runtime, and measure each step."""

from __future__ import annotations

import pytest
import torch

from workers.engine.artifacts import load_model, save_model
from workers.engine.data import DatasetSpec, load_dataset
from workers.engine.flops import count_flops
from workers.engine.measure import compression_rate, count_params, environment_info, file_size_bytes, latency
from workers.engine.models import build_model
from workers.engine.pruning import prune_structured
from workers.engine.quantise import OnnxClassifier, export_onnx, quantise_int8
from workers.engine.training import Recipe, evaluate, train

CHANCE = 10.0  # digits: 10 balanced classes


@pytest.mark.slow
def test_train_prune_retrain_quantise_measure(tmp_path):
    data = load_dataset(DatasetSpec("digits"))
    shape = tuple(data.input_shape)
    recipe = Recipe(epochs=4, batch_size=64, lr=0.05, weight_decay=5e-4, seed=0)

    # 1. Base model, trained.
    base = build_model("digits_cnn", num_classes=data.num_classes, input_shape=shape)
    base_run = train(base, data, recipe)
    assert base_run.status == "succeeded"
    assert base_run.top1 > CHANCE + 60
    base_file = tmp_path / "base.pt"
    base_bytes = save_model(base, base_file, model_name="digits_cnn", num_classes=10, input_shape=shape)

    # 2. Structured L1 pruning, uniform, to 50 % of the FLOPs: a smaller dense model.
    pruned = prune_structured(base, shape, method="uniform", flops_ratio=0.5)
    base_params, _ = count_params(base)
    base_flops = count_flops(base, shape)
    assert (pruned.base_params, pruned.base_flops) == (base_params, base_flops)
    assert pruned.flops_ratio == pytest.approx(0.5, abs=0.05)
    assert count_flops(pruned.model, shape) == pruned.flops
    assert count_params(pruned.model)[0] == pruned.params < base_params
    assert compression_rate(base_params, pruned.params) > 1.5
    assert pruned.model.conv2.out_channels < base.conv2.out_channels
    assert pruned.model.conv1.out_channels == base.conv1.out_channels  # the stem is never pruned

    # 3. Retrain the pruned architecture from scratch (He re-init, full recipe).
    pruned_run = train(pruned.model, data, recipe, reinit=True)
    assert pruned_run.top1 > CHANCE + 60
    pruned_file = tmp_path / "pruned.pt"
    pruned_bytes = save_model(
        pruned.model, pruned_file, model_name="digits_cnn", num_classes=10, input_shape=shape
    )
    assert pruned_bytes < 0.8 * base_bytes
    reloaded, _ = load_model(pruned_file)
    assert evaluate(reloaded, data)[1] == pytest.approx(pruned_run.top1)

    # 4. int8 static PTQ, evaluated by ONNX Runtime, the runtime that executes it.
    fp32_onnx = export_onnx(pruned.model, shape, tmp_path / "pruned_fp32.onnx")
    int8_onnx = quantise_int8(pruned.model, data.calibration_batches(8, 64), tmp_path / "pruned_int8.onnx")
    int8_top1, int8_top5 = OnnxClassifier(int8_onnx, threads=1).evaluate(data)
    _, fp32_top1, fp32_top5 = evaluate(pruned.model, data)
    assert abs(int8_top1 - fp32_top1) <= 2.0
    assert int8_top5 >= int8_top1 and abs(int8_top5 - fp32_top5) <= 2.0
    assert file_size_bytes(int8_onnx) < 0.5 * file_size_bytes(fp32_onnx)

    # 5. Latency by docs/spec.md protocol, both runtimes, with the environment that produced it.
    torch_latency = latency(pruned.model, shape, threads=1)
    int8_latency = latency(int8_onnx, shape, threads=1)
    for result in (torch_latency, int8_latency):
        assert result["meets_spec"] and result["threads"] == 1
        assert set(result["by_batch"]) == {"1", "32"}
        for timing in result["by_batch"].values():
            assert 0 < timing["median_ms"] <= timing["p90_ms"]
        # Sanity: a batch of 32 images takes longer than one image.
        assert result["by_batch"]["32"]["median_ms"] > result["by_batch"]["1"]["median_ms"]
    env = environment_info()
    assert env["torch"] == torch.__version__ and env["onnxruntime"]
