"""What a job gets and gives back. The caller (workers/tasks.py) reads the run, its variant and the
study spec from the database into a `RunInput`, passes callbacks (`JobHooks`) and stores the
`JobResult`. Paths in both are relative to the artefact directory (backend/artefact_layout.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunInput:
    """What a job needs of its run, read from the database by the caller."""

    run_id: int
    study_id: int
    kind: str  # train | prune | quantise | measure | scan
    variant_id: int
    variant_name: str
    variant_kind: str  # base | structured | unstructured | int8 | mixed | fp16
    variant_spec: dict[str, Any]
    spec: dict[str, Any]  # the study spec (backend/spec.py StudySpec, as stored)
    artifact_root: Path
    data_roots: tuple[Path, ...] = ()  # where a data set may be read (settings.dataset_roots)
    max_dataset_bytes: int = 0  # the most decoded data a run may load (settings.max_dataset_bytes)
    lr: float | None = None
    wd: float | None = None
    seed: int = 0
    grid_i: int | None = None
    grid_j: int | None = None
    # Resolved inputs (relative paths):
    source_model: str | None = None  # prune: trained base prior; quantise: trained source run;
    #                                  measure: the model of the variant it measures;
    #                                  scan: the variant's model trained at the prior
    source_status: str | None = None  # status of the run `source_model` came from
    source_run_id: int | None = None  # the run `source_model` came from (prune, quantise, scan)
    variant_model: str | None = None  # the pruned variant's model (train of a pruned variant)
    rewind_weights: str | None = None  # base weights at the rewind epoch (rewind retraining, and
    #                                    the prune run of an iterative rewind variant)
    quantised_model: str | None = None  # measure of int8 / mixed: the prior quantise run's ONNX
    # Latency protocol of a measure run (settings.latency_warmup / latency_runs; SPEC: >= 10 / >= 50).
    latency_warmup: int = 10
    latency_runs: int = 50


@dataclass
class JobHooks:
    on_epoch: Callable[[Any], None] | None = None  # engine EpochMetrics
    should_stop: Callable[[], bool] | None = None


@dataclass
class Artefact:
    kind: str  # model | checkpoint | onnx | snapshot
    path: str  # relative to the artefact directory
    bytes: int
    variant_level: bool = False  # belongs to the variant (pruned model, measured model)


@dataclass
class JobResult:
    status: str  # succeeded | diverged | cancelled
    top1: float | None = None
    top5: float | None = None
    loss: float | None = None
    epochs_done: int | None = None
    result: dict[str, Any] = field(default_factory=dict)
    model_path: str | None = None
    checkpoint_path: str | None = None
    artefacts: list[Artefact] = field(default_factory=list)
    variant_updates: dict[str, Any] = field(default_factory=dict)  # columns of the variant row
    epochs: list[Any] = field(default_factory=list)  # every EpochMetrics of a train run
