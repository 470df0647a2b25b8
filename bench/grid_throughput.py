"""Runs per hour of a 3x3 learning-rate x weight-decay grid with K = 1, 2, 4, 8 trainings at once.

Each K gets its own `concurrency.TrainingPool` of K spawned processes (CPU threads split evenly:
`threads_per_run(K)`). Pool start-up (imports, reading the data set) is timed apart, because a
Celery worker pays it once; the grid's wall time is measured from the first job to the last
result. It also prints how far each K's accuracies are from K = 1's: on CPU a run's bits depend
on its thread count (K = 1 runs get all cores, K >= 2 fewer), so small differences are expected
there; at equal threads concurrent and sequential runs are bit-identical (tests/engine/test_concurrency.py).

    .venv/bin/python bench/grid_throughput.py              # CPU: digits_cnn on digits, 1 epoch
    .venv/bin/python bench/grid_throughput.py --device cuda  # default there: resnet20, synthetic CIFAR
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.engine.concurrency import TrainingPool, TrainJob, threads_per_run  # noqa: E402
from workers.engine.training import Recipe  # noqa: E402


def grid_jobs(model: str, dataset: dict, recipe: Recipe, device: str) -> list[TrainJob]:
    """3x3 grid around (lr, wd) in steps of 0.4 log10 units, as the study spec lays it out."""
    jobs = []
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            point = Recipe.from_dict(
                {**recipe.to_dict(), "lr": recipe.lr * 10 ** (0.4 * i), "weight_decay": recipe.weight_decay * 10 ** (0.4 * j)}
            )  # fmt: skip
            jobs.append(TrainJob(model, dataset, point.to_dict(), device))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA if present)")
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--model", default=None, help="default digits_cnn on CPU, resnet20 on CUDA")
    parser.add_argument("--epochs", type=int, default=None, help="default 1 on CPU, 2 on CUDA")
    parser.add_argument("--synthetic-size", type=int, default=10_000, help="CUDA default data set size")
    args = parser.parse_args()

    # is_available() creates no CUDA context here; only the spawned pool processes use the GPU
    cuda = args.device != "cpu" and (args.device is not None or torch.cuda.is_available())
    device = args.device or ("cuda" if cuda else "cpu")
    if cuda:
        model, epochs = args.model or "resnet20", args.epochs or 2
        dataset = {"name": "synthetic", "synthetic_size": args.synthetic_size, "synthetic_shape": [3, 32, 32]}
    else:
        model, epochs = args.model or "digits_cnn", args.epochs or 1
        dataset = {"name": "digits"}
    recipe = Recipe(epochs=epochs, batch_size=128, lr=0.05, weight_decay=5e-4)
    jobs = grid_jobs(model, dataset, recipe, device)
    print(f"device: {device}; {os.cpu_count()} CPU cores; torch {torch.__version__}")
    print(f"grid: 3x3 lr x wd, {model} on {dataset['name']}, {epochs} epoch(s), batch {recipe.batch_size}")

    baseline_rate = None
    baseline_top1 = None
    for k in (int(v) for v in args.ks.split(",")):
        started = time.perf_counter()
        with TrainingPool(k, preload=[dataset]) as pool:
            startup = time.perf_counter() - started
            started = time.perf_counter()
            results = pool.run(jobs)
            wall = time.perf_counter() - started
        rate = len(jobs) * 3600 / wall
        baseline_rate = baseline_rate or rate
        top1 = [r.top1 for r in results]
        baseline_top1 = baseline_top1 or top1
        drift = max(abs(a - b) for a, b in zip(top1, baseline_top1, strict=True))
        print(
            f"K={k}: {threads_per_run(k)} thread(s)/run, pool start {startup:6.1f} s, grid {wall:7.1f} s, "
            f"{rate:8.0f} runs/h, x{rate / baseline_rate:.2f} vs K=1, "
            f"max |top1 - top1(K=1)| = {drift:.3f} pp, device of runs: {results[0].device}"
        )


if __name__ == "__main__":
    main()
