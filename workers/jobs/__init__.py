"""The bridge from a run to the engine: one module per run kind (train, prune, quantise, measure, scan),
no Celery, no database. `JOBS[kind](RunInput, JobHooks) -> JobResult`; see `inputs`."""

from __future__ import annotations

from collections.abc import Callable

from workers.jobs.inputs import Artefact, JobHooks, JobResult, RunInput
from workers.jobs.measure import run_measure
from workers.jobs.prune import run_prune
from workers.jobs.quantise import run_quantise
from workers.jobs.scan import run_scan
from workers.jobs.train import run_train

JOBS: dict[str, Callable[..., JobResult]] = {
    "train": run_train,
    "prune": run_prune,
    "quantise": run_quantise,
    "measure": run_measure,
    "scan": run_scan,
}

__all__ = ["JOBS", "Artefact", "JobHooks", "JobResult", "RunInput"]
