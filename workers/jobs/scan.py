"""The scan job: sensitivity scans (docs/spec.md section 4) of a variant's model trained at the prior.

One scan run per scanned variant runs every scan of the study that variant gets
(`StudySpec.scans_for`: all of them for the base, those with `on: "all"` for a pruned variant), on
the model of the train run it waited on, without retraining, and writes the variant's whole
`scan` column at once (a retry rewrites it; no two runs write one variant's scans). The record
(`scan_record`) is `backend/api/schemas.py: VariantScan`; docs/api.md shows it.
"""

from __future__ import annotations

from typing import Any

from backend.json_values import json_safe
from workers.jobs.common import get_data
from workers.jobs.inputs import JobHooks, JobResult, RunInput

ROW_FIELDS = ("fraction", "layer", "top1", "top5", "sparsity", "flops_ratio")  # schemas.ScanRow


def scan_record(
    index: int, scan: Any, source_run_id: int | None, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """One stored scan: where it sits in the spec, what it is, the run scanned, its rows (every
    field present, null where it does not apply)."""
    return {
        "index": index,
        "kind": scan.kind,
        "scope": scan.scope,
        "fractions": list(scan.fractions),
        "source_run_id": source_run_id,
        "rows": [{field: row.get(field) for field in ROW_FIELDS} for row in rows],
    }


def run_scan(inp: RunInput, hooks: JobHooks | None = None, *, device: Any = None) -> JobResult:
    """Scan the variant's model trained at the prior by every scan it gets; cancel is honoured
    between evaluations (the run ends `cancelled` and the variant keeps its previous scans)."""
    from backend.spec import parse_spec
    from workers.engine.artifacts import load_model
    from workers.engine.errors import ModelError
    from workers.engine.scan import sensitivity_scan
    from workers.engine.training import pick_device

    hooks = hooks or JobHooks()
    if not inp.source_model:
        raise ModelError(
            f"scan run {inp.run_id}: the train run of {inp.variant_name!r} at the prior has no trained model"
        )
    spec = parse_spec(inp.spec)
    scans = spec.scans_for(inp.variant_kind)
    if not scans:
        raise ModelError(f"scan run {inp.run_id}: the study asks for no scan of {inp.variant_name!r}")
    model, meta = load_model(inp.artifact_root / inp.source_model)
    model.eval()
    data = get_data(inp)
    dev = pick_device(device)
    batch_size = spec.recipe.eval_batch_size
    stop = _Latch(hooks.should_stop)
    records = []
    for index, scan in scans:
        rows = sensitivity_scan(
            model,
            data,
            kind=scan.kind,
            scope=scan.scope,
            fractions=scan.fractions,
            input_shape=tuple(meta["input_shape"]),
            device=dev,
            batch_size=batch_size,
            should_stop=stop,
        )
        if stop.stopped:
            return JobResult(status="cancelled", result={"scans_done": len(records)})
        records.append(scan_record(index, scan, inp.source_run_id, rows))
    stored = json_safe(records)
    return JobResult(
        status="succeeded",
        result={
            "source_model": inp.source_model,
            "source_run_id": inp.source_run_id,
            "scans": len(records),
            "evaluations": sum(len(r["rows"]) for r in records),
            "device": str(dev),
        },
        variant_updates={"scan": stored},
    )


class _Latch:
    """`should_stop` that remembers a yes (the engine returns early; the job must know why)."""

    def __init__(self, should_stop: Any) -> None:
        self._should_stop = should_stop
        self.stopped = False

    def __call__(self) -> bool:
        if not self.stopped and self._should_stop is not None:
            self.stopped = bool(self._should_stop())
        return self.stopped
