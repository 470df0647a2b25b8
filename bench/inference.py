"""Inference latency: fp32 torch vs int8 ONNX Runtime vs structurally pruned fp32 torch.

For each model (random weights: latency does not depend on the values, except that L1 ranking
picks which filters go), measures with `measure.latency` at batch 1 and 32:
  fp32   the model in torch, eval mode; and the same model exported to ONNX, run by ONNX Runtime
  int8   static PTQ (QDQ, per-channel) run by ONNX Runtime's CPU provider
  p0.6 / p0.4   uniform L1 filter pruning to 60 % / 40 % of the FLOPs, torch fp32
and prints each variant's latency ratio to fp32 next to its FLOPs ratio, plus the CPU flags that
decide how fast int8 can be (VNNI / AMX).

A shared machine's load drifts over the minutes one model takes, so the `--runs` timed runs of
every point are split into `--rounds` rounds and the variants of a model take turns within each
round (rotating who goes first). The first round of each variant warms up with `--warmup` runs,
later rounds with `--rewarm` (caches after the other variants ran). Reported per point: the median
of the rounds' medians, their min..max, the median of the rounds' p90s, and the latency ratio to
fp32 as the median of the per-round ratios (each round's variants ran minutes apart at most) with
its min..max. Usage:

    .venv/bin/python bench/inference.py [--models resnet18,resnet56,mobilenetv2_cifar]
        [--batch-sizes 1,32] [--warmup 10] [--runs 50] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    per_round = max(1, args.runs // args.rounds)
    # rounds[label][batch] = list of (median_ms, p90_ms), one per round
    rounds: dict[str, dict[int, list[tuple[float, float]]]] = {label: {} for label, _, _ in variants}
    loads = []
    for r in range(args.rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for label, runnable, _ in order:
            result = latency(
                runnable,
                shape,
                batch_sizes=args.batch_sizes,
                warmup=args.warmup if r == 0 else args.rewarm,
                runs=per_round,
                threads=args.threads,
            )
            loads.append(result["load_average_1m"])
            for batch, timing in result["by_batch"].items():
                rounds[label].setdefault(int(batch), []).append((timing["median_ms"], timing["p90_ms"]))
        print(f"# {name} round {r + 1}/{args.rounds} done, load {loads[-1]}", file=sys.stderr)
    known_loads = [x for x in loads if x is not None]
    load_range = (min(known_loads), max(known_loads)) if known_loads else None
    rows = []
    for label, _, flops_ratio in variants:
        for batch, samples in rounds[label].items():
            medians = [m for m, _ in samples]
            fp32 = [m for m, _ in rounds["fp32 torch"][batch]]
            paired = [m / f for m, f in zip(medians, fp32, strict=True)]
            rows.append(
                {
                    "model": name,
                    "input": "x".join(map(str, shape)),
                    "variant": label,
                    "flops_ratio": flops_ratio,
                    "batch": batch,
                    "median_ms": statistics.median(medians),
                    "round_min_ms": min(medians),
                    "round_max_ms": max(medians),
                    "p90_ms": statistics.median([p for _, p in samples]),
                    "ratio": statistics.median(paired),
                    "ratio_min": min(paired),
                    "ratio_max": max(paired),
                    "load": load_range,
                }
            )
    return rows


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    per_round = max(1, args.runs // args.rounds)
    print(
        f"latency per point: median of {args.rounds} round medians ({per_round} timed runs each), "
        f"[min..max] of the round medians; latency/fp32: median of the per-round ratios [min..max]"
    )
    header = (
        f"{'model':<18} {'input':<9} {'variant':<18} {'batch':>5} {'median ms':>10} {'rounds min..max':>17} "
        f"{'p90 ms':>9} {'latency/fp32':>12} {'ratio min..max':>15} {'FLOPs/fp32':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in sorted(rows, key=lambda r: (r["model"], r["batch"])):
        spread = f"{r['round_min_ms']:.2f}..{r['round_max_ms']:.2f}"
        ratio_spread = f"{r['ratio_min']:.2f}..{r['ratio_max']:.2f}"
        print(
            f"{r['model']:<18} {r['input']:<9} {r['variant']:<18} {r['batch']:>5} {r['median_ms']:>10.2f} "
            f"{spread:>17} {r['p90_ms']:>9.2f} {r['ratio']:>12.2f} {ratio_spread:>15} {r['flops_ratio']:>10.2f}"
        )
    loads = [x for r in rows if r["load"] for x in r["load"]]
    if loads:
        print(f"load average (1 min) while measuring: {min(loads):.2f} .. {max(loads):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per point, over all rounds")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the runs are split into")
    parser.add_argument("--rewarm", type=int, default=3, help="warm-up runs of every round but the first")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    args.batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))

    env = environment_info()
    print(f"torch {env['torch']}, torchvision {env['torchvision']}, onnxruntime {env['onnxruntime']}")
    print(f"CPU: {env['cpu_model']} ({env['cpu_count']} logical CPUs), threads used: {args.threads}")
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f}")
    print(
        "CPU flags: "
        + ", ".join(f"{flag}={'yes' if has else 'no'}" for flag, has in env["cpu_flags"].items())
    )
    args.rounds = max(1, min(args.rounds, args.runs))
    timed = max(1, args.runs // args.rounds) * args.rounds
    spec = args.warmup >= 10 and timed >= 50
    print(
        f"protocol: {args.warmup} warm-up + {timed} timed runs per point in {args.rounds} interleaved "
        f"rounds (+{args.rewarm} warm-up runs per later round){'' if spec else ' (below SPEC)'}"
    )
    print(f"FLOPs: {FLOPS_CONVENTION}")
    print()
    rows = []
    with tempfile.TemporaryDirectory(prefix="prunescape-bench-") as tmp:
        for name in args.models.split(","):
            rows += bench_model(name.strip(), args, Path(tmp))
    print_table(rows, args)


if __name__ == "__main__":
    main()
