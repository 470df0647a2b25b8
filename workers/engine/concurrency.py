"""Several trainings at once on one device, for a worker whose GPU one small model cannot fill.

A CIFAR ResNet-56 at batch 128 keeps an H100 busy only a fraction of each step (kernel launches
and small convs leave most SMs idle), so running K trainings side by side fills a landscape up to
K times faster. Each training runs in its own process: separate CUDA contexts keep their streams,
allocators and RNG states apart, so a run computes what it would compute alone.

- `auto_concurrency(model_name, input_shape, batch_size, device)` picks K from the device's free
  memory and the measured peak of one run (a few training steps plus one evaluation batch in a
  spawned probe process), capped at `MAX_CONCURRENCY`. On CPU it returns 1: memory is not what
  limits a CPU, and a study-sized model (ResNet-56) already spreads over every core through torch's
  intra-op threads, so K processes split the same cores. Tiny models are the exception: with
  digits_cnn bench/grid_throughput.py measured K = 2..4 processes of one thread each beating one
  two-thread run on a 2-core box, so a CPU worker for the demo may be started with a hand-set K.
  CPU results are bit-identical only at equal thread counts (reduction order), which is why a run
  in a pool of K gets `threads_per_run(K)` threads, fixed and known.
- `run_concurrently(jobs, k)` (or a `TrainingPool(k)` kept open) trains `TrainJob`s in K spawned
  processes, one training per process at a time, and returns their `JobResult`s in job order.
  Each process gets `threads_per_run(k)` CPU threads so K runs never oversubscribe the cores.
- The Celery worker starts with `--concurrency K` (prefork) and K from
  `python -m workers.engine.concurrency --model resnet56 --batch-size 128 --device cuda`.

Importing this module does not initialise CUDA, and neither does `auto_concurrency`: the probe
runs in a spawned child, so a prefork parent that calls it can still fork CUDA-free children.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

MAX_CONCURRENCY = 8  # beyond this the SMs, not memory, are the limit for the study's models
MEMORY_HEADROOM = 0.9  # share of the free memory the K runs may take (fragmentation, cudnn workspaces)
CUDA_CONTEXT_BYTES = 512 * 2**20  # per-process context + loaded kernels, invisible to the allocator
PROBE_STEPS = 3  # training steps of the probe; the peak is reached by the second


@dataclass(frozen=True)
class ConcurrencyPlan:
    """How K was chosen (all byte figures of one device)."""

    k: int
    device: str
    reason: str
    free_bytes: int = 0  # free memory for the runs, the probe's own context given back
    per_run_bytes: int = 0  # peak reserved by one run + its context + its data set
    peak_allocated_bytes: int = 0  # torch.cuda.max_memory_allocated of the probe
    peak_reserved_bytes: int = 0  # torch.cuda.max_memory_reserved of the probe


def plan_concurrency(
    model_name: str,
    input_shape: tuple[int, int, int],
    batch_size: int,
    device: str | torch.device | None,
    *,
    eval_batch_size: int = 1000,
    data_bytes: int = 0,
    cap: int = MAX_CONCURRENCY,
) -> ConcurrencyPlan:
    """`auto_concurrency` with its working shown. `data_bytes` is what one run keeps of its data set
    on the device (CIFAR-10 as uint8: 184 MB); device None means CUDA when there is one."""
    if device is not None and torch.device(device).type == "cpu":
        return ConcurrencyPlan(1, "cpu", "CPU: one run already uses every core; K runs would share them")
    ctx = multiprocessing.get_context("spawn")  # the caller's process never touches CUDA
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        probe = pool.submit(
            _probe, model_name, tuple(input_shape), batch_size, eval_batch_size, str(device or "")
        ).result()
    if probe["device"] == "cpu":
        return ConcurrencyPlan(1, "cpu", "no CUDA device: one run already uses every CPU core")
    free = probe["free"] + CUDA_CONTEXT_BYTES  # the probe's context is released when it exits
    per_run = probe["peak_reserved"] + CUDA_CONTEXT_BYTES + data_bytes
    fits = int(free * MEMORY_HEADROOM) // per_run
    k = max(1, min(cap, fits))
    reason = f"{fits} runs fit in {free / 2**30:.1f} GiB free at {per_run / 2**30:.2f} GiB each; cap {cap}"
    return ConcurrencyPlan(
        k, probe["device"], reason, free, per_run, probe["peak_allocated"], probe["peak_reserved"]
    )


def auto_concurrency(
    model_name: str,
    input_shape: tuple[int, int, int],
    batch_size: int,
    device: str | torch.device | None,
    **kwargs: Any,
) -> int:
    """How many trainings of `model_name` fit side by side on `device` (1 on CPU); see the module
    docstring and `plan_concurrency` for the keyword arguments."""
    return plan_concurrency(model_name, input_shape, batch_size, device, **kwargs).k


def _probe(
    model_name: str, input_shape: tuple[int, int, int], batch_size: int, eval_batch_size: int, device: str
) -> dict[str, Any]:
    """In a spawned child: free memory, then the peak of a few steps run the way `train` runs them."""
    from workers.engine.models import build_model, get_model_info
    from workers.engine.train_step import WARMUP_STEPS, TrainStep
    from workers.engine.training import Recipe, make_optimizer, pick_device

    target = pick_device(device or None)
    if target.type != "cuda":
        return {"device": "cpu"}
    if target.index is None:  # the memory queries below want an index (torch 2.11 refuses "cuda")
        target = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.set_device(target)
    torch.cuda.init()
    free, _total = torch.cuda.mem_get_info(target)  # after this process's own context exists
    torch.backends.cudnn.benchmark = True  # as in train(): its workspaces count too
    model = build_model(model_name, input_shape=tuple(input_shape))
    model.to(target, memory_format=torch.channels_last)
    optimizer, _ = make_optimizer(model, Recipe(batch_size=batch_size))
    num_classes = get_model_info(model_name).num_classes
    x = torch.randn(batch_size, *input_shape, device=target).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch_size,), device=target)
    torch.cuda.reset_peak_memory_stats(target)
    # as train() steps: warm-up, the captured graph's pool and replays, then the epoch's eager
    # partial batch beside that pool (a graphed run holds both)
    step = TrainStep(model, optimizer, target, cuda_graph=True)
    for _ in range(max(PROBE_STEPS, WARMUP_STEPS + 2)):
        step(x, y)
    if batch_size > 1:
        step(x[1:], y[1:])
    torch.cuda.synchronize(target)
    graphed = step.graphed
    model.eval()
    with torch.no_grad():
        model(torch.randn(eval_batch_size, *input_shape, device=target))
    torch.cuda.synchronize(target)
    return {
        "device": str(target),
        "free": int(free),
        "peak_allocated": int(torch.cuda.max_memory_allocated(target)),
        "peak_reserved": int(torch.cuda.max_memory_reserved(target)),
        "graphed": graphed,
    }


# --------------------------------------------------------------------------------- running K jobs


@dataclass(frozen=True)
class TrainJob:
    """One training, described by value so it can cross to a child process (a task takes ids and
    specs, never live objects)."""

    model: str
    dataset: dict[str, Any]  # DatasetSpec.to_dict()
    recipe: dict[str, Any]  # Recipe.to_dict()
    device: str | None = None
    checkpoint_path: str | None = None


@dataclass(frozen=True)
class JobResult:
    status: str
    epochs: int
    top1: float
    top5: float
    seconds: float  # the run's own training + evaluation time, as TrainResult.seconds
    device: str
    history: list[dict[str, Any]]
    weights_sha256: str  # of the final state_dict: equal digests = bit-identical weights
    fast_path: dict[str, Any]
    pid: int  # the process that trained it


_DATA_CACHE: dict[str, Any] = {}  # per process: a child that trains several jobs reads its set once


def _load(dataset: dict[str, Any]) -> Any:
    from workers.engine.data import DatasetSpec, load_dataset

    key = json.dumps(dataset, sort_keys=True)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(DatasetSpec.from_dict(dataset))
    return _DATA_CACHE[key]


def run_train_job(job: TrainJob) -> JobResult:
    """Train one job in this process (what each pool process does)."""
    from workers.engine.models import build_model
    from workers.engine.training import Recipe, train

    data = _load(job.dataset)
    model = build_model(job.model, num_classes=data.num_classes, input_shape=tuple(data.input_shape))
    result = train(
        model, data, Recipe.from_dict(job.recipe), device=job.device, checkpoint_path=job.checkpoint_path
    )
    return JobResult(
        result.status,
        result.epochs,
        result.top1,
        result.top5,
        result.seconds,
        result.device,
        [dataclasses.asdict(m) for m in result.history],
        weights_digest(model),
        result.fast_path,
        os.getpid(),
    )


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def threads_per_run(k: int) -> int:
    """CPU threads each of K runs gets: the cores split evenly, so K runs never oversubscribe them."""
    return max(1, (os.cpu_count() or 1) // k)


_START_BARRIER: Any = None  # set in each pool process by _init_child


def _init_child(threads: int, preload: Sequence[dict[str, Any]], barrier: Any) -> None:
    global _START_BARRIER
    torch.set_num_threads(threads)
    _START_BARRIER = barrier
    for spec in preload:  # read the data sets before the first job, as a long-lived worker has
        _load(spec)


def _started() -> int:
    _START_BARRIER.wait()  # holds this process until all K have started: one task per process
    return os.getpid()


class TrainingPool:
    """K spawned processes that train `TrainJob`s, one at a time each. Entering starts all K and
    waits until each has imported the engine and read the `preload` data sets, so timings taken
    inside measure training, not process start-up (a Celery worker pays that once)."""

    def __init__(self, k: int, *, threads: int | None = None, preload: Sequence[dict[str, Any]] = ()) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = k
        self.threads = threads_per_run(k) if threads is None else threads
        ctx = multiprocessing.get_context("spawn")  # fork would copy a parent's CUDA state: never that
        self._executor = ProcessPoolExecutor(
            max_workers=k,
            mp_context=ctx,
            initializer=_init_child,
            initargs=(self.threads, list(preload), ctx.Barrier(k)),
        )

    def __enter__(self) -> TrainingPool:
        # on a spawn context each submit with no idle process starts one, so K submits start K
        self.pids = sorted(f.result() for f in [self._executor.submit(_started) for _ in range(self.k)])
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def run(self, jobs: Sequence[TrainJob]) -> list[JobResult]:
        """Train `jobs`, K at a time; results in job order (the first failure is raised)."""
        return list(self._executor.map(run_train_job, jobs))


def run_concurrently(jobs: Sequence[TrainJob], k: int, *, threads: int | None = None) -> list[JobResult]:
    """Train `jobs` K at a time, each in a spawned process (CUDA initialised inside it), and return
    their results in job order. `threads` per process defaults to `threads_per_run(k)`."""
    with TrainingPool(k, threads=threads) as pool:
        return pool.run(jobs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print K for `celery worker --concurrency K`.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--input-shape", default="3,32,32", help="C,H,W (default 3,32,32)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-batch-size", type=int, default=1000)
    parser.add_argument("--data-mb", type=float, default=0.0, help="data set bytes per run on the device")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA if present)")
    parser.add_argument("--cap", type=int, default=MAX_CONCURRENCY)
    parser.add_argument("--verbose", action="store_true", help="print the plan, not only K")
    args = parser.parse_args(argv)
    shape = tuple(int(d) for d in args.input_shape.split(","))
    plan = plan_concurrency(
        args.model,
        shape,  # type: ignore[arg-type]
        args.batch_size,
        args.device,
        eval_batch_size=args.eval_batch_size,
        data_bytes=int(args.data_mb * 1e6),
        cap=args.cap,
    )
    print(json.dumps(dataclasses.asdict(plan)) if args.verbose else plan.k)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
