"""Inference latency: fp32 torch vs int8 ONNX Runtime vs structurally pruned fp32 torch.

For each model (random weights: latency does not depend on the values, except that L1 ranking
picks which filters go), measures with `measure.latency` at batch 1 and 32:
  fp32   the model in torch, eval mode; and the same model exported to ONNX, run by ONNX Runtime
  int8   static PTQ (QDQ, per-channel) run by ONNX Runtime's CPU provider
  p0.6 / p0.4   uniform L1 filter pruning to 60 % / 40 % of the FLOPs, torch fp32
and prints each variant's latency ratio to fp32 next to its FLOPs ratio, plus the CPU flags that
decide how fast int8 can be (VNNI / AMX). Usage:

    .venv/bin/python bench/inference.py [--models resnet18,resnet56,mobilenetv2_cifar]
        [--batch-sizes 1,32] [--warmup 10] [--runs 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from workers.engine.flops import FLOPS_CONVENTION, count_flops
from workers.engine.measure import environment_info, latency
from workers.engine.models import build_model, get_model_info
from workers.engine.pruning import prune_structured
from workers.engine.quantise import export_onnx, quantise_int8

DEFAULT_MODELS = "resnet18,resnet56,mobilenetv2_cifar"


def bench_model(name: str, args: argparse.Namespace, workdir: Path) -> list[dict]:
    info = get_model_info(name)
    shape = info.input_shape
    torch.manual_seed(0)
    model = build_model(name).eval()
    base_flops = count_flops(model, shape)
    variants: list[tuple[str, object, float]] = [("fp32 torch", model, 1.0)]
    started = time.perf_counter()
    calib = [torch.randn(8, *shape) for _ in range(2)]
    # fp32 through ORT too: separates what the runtime gains from what int8 gains.
    variants.append(("fp32 ORT", export_onnx(model, shape, workdir / f"{name}_fp32.onnx"), 1.0))
    variants.append(("int8 ORT", quantise_int8(model, calib, workdir / f"{name}_int8.onnx"), 1.0))
    for ratio in (0.6, 0.4):
        pruned = prune_structured(model, shape, method="uniform", flops_ratio=ratio)
        variants.append((f"pruned {ratio} torch", pruned.model.eval(), pruned.flops / base_flops))
    print(f"# {name}: prepared variants in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    rows = []
    for label, runnable, flops_ratio in variants:
        result = latency(
            runnable,
            shape,
            batch_sizes=args.batch_sizes,
            warmup=args.warmup,
            runs=args.runs,
            threads=args.threads,
        )
        for batch, timing in result["by_batch"].items():
            rows.append(
                {
                    "model": name,
                    "input": "x".join(map(str, shape)),
                    "variant": label,
                    "flops_ratio": flops_ratio,
                    "batch": int(batch),
                    **timing,
                }
            )
        print(f"# {name} {label}: done", file=sys.stderr)
    return rows


def print_table(rows: list[dict]) -> None:
    fp32 = {(r["model"], r["batch"]): r["median_ms"] for r in rows if r["variant"] == "fp32 torch"}
    header = (
        f"{'model':<18} {'input':<9} {'variant':<18} {'batch':>5} {'median ms':>10} {'p90 ms':>10} "
        f"{'latency/fp32':>12} {'FLOPs/fp32':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = r["median_ms"] / fp32[(r["model"], r["batch"])]
        print(
            f"{r['model']:<18} {r['input']:<9} {r['variant']:<18} {r['batch']:>5} {r['median_ms']:>10.2f} "
            f"{r['p90_ms']:>10.2f} {ratio:>12.2f} {r['flops_ratio']:>10.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    args.batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))

    env = environment_info()
    print(f"torch {env['torch']}, torchvision {env['torchvision']}, onnxruntime {env['onnxruntime']}")
    print(f"CPU: {env['cpu_model']} ({env['cpu_count']} logical CPUs), threads used: {args.threads}")
    print(
        "CPU flags: "
        + ", ".join(f"{flag}={'yes' if has else 'no'}" for flag, has in env["cpu_flags"].items())
    )
    spec = args.warmup >= 10 and args.runs >= 50
    print(
        f"protocol: {args.warmup} warm-up + {args.runs} timed runs per point{'' if spec else ' (below SPEC)'}"
    )
    print(f"FLOPs: {FLOPS_CONVENTION}")
    print()
    rows = []
    with tempfile.TemporaryDirectory(prefix="prunescape-bench-") as tmp:
        for name in args.models.split(","):
            rows += bench_model(name.strip(), args, Path(tmp))
    print_table(rows)


if __name__ == "__main__":
    main()
