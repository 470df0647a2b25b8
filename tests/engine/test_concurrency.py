"""K trainings at once: K chosen per device, and concurrent runs compute what they compute alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workers.engine.concurrency import (
    MAX_CONCURRENCY,
    TrainingPool,
    TrainJob,
    auto_concurrency,
    plan_concurrency,
    run_concurrently,
    run_train_job,
    threads_per_run,
)
from workers.engine.training import Recipe

ROOT = Path(__file__).resolve().parents[2]  # so the child interpreters import this checkout


def test_auto_concurrency_is_1_on_cpu_and_says_why():
    assert auto_concurrency("resnet56", (3, 32, 32), 128, "cpu") == 1
    plan = plan_concurrency("resnet56", (3, 32, 32), 128, torch.device("cpu"))
    assert plan.k == 1 and "core" in plan.reason


def test_importing_and_asking_on_cpu_leaves_cuda_uninitialised():
    # a prefork Celery parent calls this before forking its children: CUDA must stay untouched
    code = (
        "import torch; from workers.engine.concurrency import auto_concurrency; "
        "auto_concurrency('resnet20', (3, 32, 32), 128, 'cpu'); "
        "print(torch.cuda.is_initialized())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_threads_split_the_cores_and_k_is_checked():
    assert threads_per_run(1) >= 1 and threads_per_run(10_000) == 1
    assert threads_per_run(2) <= max(1, threads_per_run(1) // 2)
    with pytest.raises(ValueError, match="k must be"):
        TrainingPool(0)


def test_two_concurrent_runs_equal_the_same_runs_one_after_another():
    jobs = [
        TrainJob(
            "digits_cnn",
            {"name": "digits"},
            Recipe(epochs=1, batch_size=64, lr=0.05, weight_decay=5e-4, seed=seed).to_dict(),
            device="cpu",
        )
        for seed in (0, 1)
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the thread count each of the 2 pool processes gets on a 2-core box
    try:
        one_after_another = [run_train_job(job) for job in jobs]
    finally:
        torch.set_num_threads(threads)
    concurrent = run_concurrently(jobs, 2, threads=1)

    assert len({r.pid for r in concurrent}) == 2  # really two processes
    for alone, together in zip(one_after_another, concurrent, strict=True):
        assert together.weights_sha256 == alone.weights_sha256
        assert (together.top1, together.top5, together.status) == (alone.top1, alone.top5, "succeeded")
        drop_time = [{k: v for k, v in m.items() if k != "seconds"} for m in together.history]
        assert drop_time == [{k: v for k, v in m.items() if k != "seconds"} for m in alone.history]
    assert one_after_another[0].weights_sha256 != one_after_another[1].weights_sha256  # seeds matter


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_concurrency_on_cuda_probes_in_a_child():
    # in a fresh interpreter: other tests of this session may already have initialised CUDA here
    code = (
        "import json, torch; from workers.engine.concurrency import plan_concurrency; "
        "p = plan_concurrency('resnet20', (3, 32, 32), 128, 'cuda'); "
        "print(json.dumps([p.k, p.peak_allocated_bytes, p.peak_reserved_bytes, p.per_run_bytes, "
        "torch.cuda.is_initialized()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    k, allocated, reserved, per_run, initialised = json.loads(out.stdout.strip().splitlines()[-1])
    assert 1 <= k <= MAX_CONCURRENCY
    assert 0 < allocated <= reserved < per_run
    assert initialised is False  # the probe ran in a spawned child
