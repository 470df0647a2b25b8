"""Inference latency of fp32, pruned, unstructured and int8 variants, on every runtime, ratios within each.

For each model (random weights: latency does not depend on the values, except that L1 ranking
picks which filters go), times at batch 1 and 32, on each runtime (`workers.engine.runtimes`):
  onnxruntime-cpu   ONNX Runtime CPU: each fp32 variant's own fp32 export; int8's QDQ file
  torch-cpu         eager torch on the CPU (int8 has no eager form: shown as not supported)
  torch-cuda / onnxruntime-cuda   with --devices cpu,cuda on a GPU machine
the variants
  fp32              the model, eval mode
  pruned 0.6 / 0.4  uniform L1 filter pruning to 60 % / 40 % of the FLOPs
  unstructured 0.5  half the weights zeroed (L1, per layer), stored dense: dense kernels do not
                    skip zeros, so it shows what unstructured sparsity buys on these runtimes
  int8              static PTQ (QDQ, per-channel)
and prints, per model, batch and runtime, each variant's median latency and its ratio to fp32 on
that runtime (`backend.analysis.latency`, the rule the API uses: never across runtimes), next to
its FLOPs ratio. The CPU flags that decide how fast int8 can be (VNNI / AMX) head the output.

A shared machine's load drifts over the minutes one model takes, so the `--runs` timed runs of
every point are split into `--rounds` rounds and, within each round and runtime, the variants
take turns (rotating who goes first). The first round of each point warms up with `--warmup`
runs, later rounds with `--rewarm`. Reported per point: the median of the rounds' medians,
their min..max, the median of the rounds' p90s, and the ratio to fp32 as the median of the
per-round ratios (each round's variants ran seconds apart) with its min..max. Usage:

    .venv/bin/python bench/inference.py [--models resnet18,resnet56,mobilenetv2_cifar]
        [--batch-sizes 1,32] [--warmup 10] [--runs 50] [--rounds 5] [--threads 2] [--devices cpu]
        [--json rows.json]
    quick check: bench/inference.py --models resnet20 --runs 5 --rounds 1 --warmup 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from backend.analysis.latency import latency_comparison
from workers.engine.flops import FLOPS_CONVENTION, count_flops
from workers.engine.measure import environment_info
from workers.engine.models import build_model, get_model_info
from workers.engine.pruning import prune_structured, prune_unstructured
from workers.engine.quantise import export_onnx, quantise_int8
from workers.engine.runtimes import latency_on, runtimes_for

DEFAULT_MODELS = "resnet18,resnet56,mobilenetv2_cifar"
BASE = "fp32"


@dataclass
class Variant:
    label: str
    kind: str  # as in a study: base, structured, unstructured, int8
    module: torch.nn.Module | None
    onnx_path: Path
    precision: str
    flops_ratio: float


def prepare_variants(name: str, shape: tuple[int, ...], workdir: Path) -> list[Variant]:
    torch.manual_seed(0)
    model = build_model(name).eval()
    base_flops = count_flops(model, shape)
    variants = [
        Variant(BASE, "base", model, export_onnx(model, shape, workdir / f"{name}_fp32.onnx"), "fp32", 1.0)
    ]
    for ratio in (0.6, 0.4):
        pruned = prune_structured(model, shape, method="uniform", flops_ratio=ratio).model.eval()
        path = export_onnx(pruned, shape, workdir / f"{name}_p{ratio}.onnx")
        flops_ratio = count_flops(pruned, shape) / base_flops
        variants.append(Variant(f"pruned {ratio}", "structured", pruned, path, "fp32", flops_ratio))
    sparse = prune_unstructured(model, amount=0.5, scope="layer", permanent=True).model.eval()
    # The FLOP counter counts every multiply-accumulate of a dense layer, zeros included: 1.0.
    path = export_onnx(sparse, shape, workdir / f"{name}_u0.5.onnx")
    flops_ratio = count_flops(sparse, shape) / base_flops
    variants.append(Variant("unstructured 0.5", "unstructured", sparse, path, "fp32", flops_ratio))
    calib = [torch.randn(8, *shape) for _ in range(2)]
    int8_path = quantise_int8(model, calib, workdir / f"{name}_int8.onnx")
    variants.append(Variant("int8", "int8", None, int8_path, "int8", 1.0))
    return variants


def bench_model(name: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    shape = tuple(get_model_info(name).input_shape)
    started = time.perf_counter()
    variants = prepare_variants(name, shape, workdir)
    print(f"# {name}: prepared variants in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    per_round = max(1, args.runs // args.rounds)
    # samples[(runtime, label, batch)] = [(median_ms, p90_ms, latency ratio to fp32 | None), ...]
    samples: dict[tuple[str, str, str], list[tuple[float, float, float | None]]] = {}
    unsupported: dict[tuple[str, str], str] = {}
    comparison: dict[str, Any] = {}
    loads = []
    # One untimed pass per runtime first: the process's first call on a runtime pays its one-off
    # start-up (thread pools, kernel selection), which would otherwise land on round 1's first variant.
    for runtime in args.runtimes:
        latency_on(runtime, variants[0].module, variants[0].onnx_path, shape, batch_sizes=args.batch_sizes,
                   warmup=args.warmup, runs=1, threads=args.threads)  # fmt: skip
    for r in range(args.rounds):
        records: dict[str, dict[str, dict]] = {v.label: {} for v in variants}
        for runtime in args.runtimes:
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for v in order:
                if (runtime, v.label) in unsupported:
                    continue
                record = latency_on(
                    runtime,
                    v.module,
                    v.onnx_path,
                    shape,
                    precision=v.precision,
                    batch_sizes=args.batch_sizes,
                    warmup=args.warmup if r == 0 else args.rewarm,
                    runs=per_round,
                    threads=args.threads,
                )
                records[v.label][runtime] = record
                if not record["supported"]:
                    unsupported[(runtime, v.label)] = record["reason"]
                else:
                    loads.append(record["load_average_1m"])
        # The ratios of this round, by the rule the API uses (within one runtime only).
        comparison = latency_comparison(
            [
                {"name": v.label, "kind": v.kind, "latency": records[v.label], "flops_ratio": v.flops_ratio}
                for v in variants
            ],
            BASE,
        ).to_dict()
        for runtime, block in comparison["by_runtime"].items():
            for row in block["rows"]:
                if row["timed"]:
                    key = (runtime, row["variant"], row["batch"])
                    samples.setdefault(key, []).append(
                        (row["median_ms"], row["p90_ms"], row["latency_ratio"])
                    )
        print(
            f"# {name} round {r + 1}/{args.rounds} done, load {loads[-1] if loads else None}", file=sys.stderr
        )
    known_loads = [x for x in loads if x is not None]
    rows = []
    for runtime in args.runtimes:
        for batch in map(str, args.batch_sizes):
            for v in variants:
                row: dict[str, Any] = {
                    "model": name, "input": "x".join(map(str, shape)), "runtime": runtime, "batch": int(batch),
                    "variant": v.label, "flops_ratio": v.flops_ratio,
                    "load": [min(known_loads), max(known_loads)] if known_loads else None,
                }  # fmt: skip
                points = samples.get((runtime, v.label, batch))
                if not points:
                    row["reason"] = unsupported.get((runtime, v.label), "no figure")
                    rows.append(row)
                    continue
                medians = [m for m, _, _ in points]
                ratios = [q for _, _, q in points if q is not None] if v.label != BASE else [1.0]
                row.update(
                    median_ms=statistics.median(medians),
                    round_min_ms=min(medians),
                    round_max_ms=max(medians),
                    p90_ms=statistics.median([p for _, p, _ in points]),
                    ratio=statistics.median(ratios) if ratios else None,
                    ratio_min=min(ratios) if ratios else None,
                    ratio_max=max(ratios) if ratios else None,
                    meets_spec=args.spec,
                )
                rows.append(row)
    return rows


def print_tables(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    per_round = max(1, args.runs // args.rounds)
    print(
        f"latency per point: median of {args.rounds} round medians ({per_round} timed runs each), "
        "[min..max] of the round medians; latency/fp32: median of the per-round ratios to fp32 on the same "
        "runtime [min..max]; FLOPs/fp32: the variant's FLOPs over the base's"
    )
    header = (
        f"{'runtime':<17} {'variant':<17} {'median ms':>10} {'rounds min..max':>17} {'p90 ms':>9} "
        f"{'latency/fp32':>12} {'ratio min..max':>15} {'FLOPs/fp32':>10}"
    )
    seen = []
    for r in rows:
        key = (r["model"], r["input"], r["batch"])
        if key not in seen:
            seen.append(key)
    for model, shape, batch in seen:
        print()
        print(f"{model} ({shape}), batch {batch}")
        print(header)
        print("-" * len(header))
        group = [r for r in rows if (r["model"], r["input"], r["batch"]) == (model, shape, batch)]
        # A runtime absent from this machine (no GPU, no CUDA provider) says so once, not per variant.
        absent = {
            runtime
            for runtime in {r["runtime"] for r in group}
            if len({r.get("reason") or "timed" for r in group if r["runtime"] == runtime} - {"timed"}) == 1
            and all("median_ms" not in r for r in group if r["runtime"] == runtime)
        }
        for r in group:
            if r["runtime"] in absent:
                if r["variant"] == BASE:
                    print(f"{r['runtime']:<17} {'(every variant)':<17} not timed: {r['reason']}")
                continue
            if "median_ms" not in r:
                print(f"{r['runtime']:<17} {r['variant']:<17} not timed: {r['reason']}")
                continue
            spread = f"{r['round_min_ms']:.2f}..{r['round_max_ms']:.2f}"
            ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
            ratio_spread = f"{r['ratio_min']:.2f}..{r['ratio_max']:.2f}" if r["ratio"] is not None else "-"
            slower = (
                "  not faster than fp32"
                if r["variant"] != BASE and r["ratio"] is not None and r["ratio"] >= 1
                else ""
            )
            print(
                f"{r['runtime']:<17} {r['variant']:<17} {r['median_ms']:>10.2f} {spread:>17} {r['p90_ms']:>9.2f} "
                f"{ratio:>12} {ratio_spread:>15} {r['flops_ratio']:>10.2f}{slower}"
            )
        int8 = next((r for r in group if r["variant"] == "int8" and r.get("ratio")), None)
        if int8 is not None:
            print(
                f"int8 vs fp32 on {int8['runtime']}: {1 / int8['ratio']:.2f}x faster (latency x{int8['ratio']:.2f})"
            )
    print()
    print(
        "unstructured 0.5 is stored and run dense: dense kernels do not skip zeros, so no speedup is "
        "expected without a sparse runtime (its gain is the sparse size on disk)"
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
    parser.add_argument(
        "--devices",
        default="cpu,cuda" if torch.cuda.is_available() else "cpu",
        help="cpu and/or cuda runtimes",
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    args.batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    args.runtimes = runtimes_for([d.strip() for d in args.devices.split(",")])

    env = environment_info()
    print(f"torch {env['torch']}, torchvision {env['torchvision']}, onnxruntime {env['onnxruntime']}")
    print(f"CPU: {env['cpu_model']} ({env['cpu_count']} logical CPUs), threads used: {args.threads}")
    if env["device"] == "cuda":
        print(f"GPU: {env['device_name']} (CUDA {env['cuda_version']})")
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f}")
    print(
        "CPU flags: "
        + ", ".join(f"{flag}={'yes' if has else 'no'}" for flag, has in env["cpu_flags"].items())
    )
    args.rounds = max(1, min(args.rounds, args.runs))
    timed = max(1, args.runs // args.rounds) * args.rounds
    args.spec = args.warmup >= 10 and timed >= 50
    print(
        f"protocol: {args.warmup} warm-up + {timed} timed runs per point in {args.rounds} interleaved "
        f"rounds (+{args.rewarm} warm-up runs per later round){'' if args.spec else ' (below SPEC)'}"
    )
    print(f"runtimes: {', '.join(args.runtimes)}")
    print(f"FLOPs: {FLOPS_CONVENTION}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="prunescape-bench-") as tmp:
        for name in args.models.split(","):
            rows += bench_model(name.strip(), args, Path(tmp))
    print_tables(rows, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
