"""The API's study and run JSON, read into the few fields the pages show.

One place for key names (docs/api.md), so a renamed field is a one-line change.
"""

from __future__ import annotations

from typing import Any

FINISHED_STATES = {"succeeded", "failed", "diverged", "cancelled"}
ACTIVE_RUN_STATES = ("blocked", "pending", "queued", "running")
DONE_STUDY_STATES = {"succeeded", "failed", "cancelled"}
OPEN_STUDY_STATES = {"pending", "running"}
RETRYABLE_RUN_STATES = {"failed", "cancelled"}  # POST /runs/{id}/retry answers 409 for the rest


def _get(d: dict, *keys: str, default: Any = None) -> Any:
    for key in keys:
        if isinstance(d, dict) and d.get(key) is not None:
            return d[key]
    return default


def study_summary(study: dict) -> dict:
    spec = study.get("spec") or {}
    model = _get(study, "model", default=None) or spec.get("model") or {}
    dataset = _get(study, "dataset", default=None) or spec.get("dataset") or {}
    variants = _get(study, "variants", default=None) or spec.get("variants") or []
    progress = study.get("progress") or {}
    counts = study.get("run_counts") or study.get("counts") or {}
    planned = _get(progress, "total", "planned", default=None)
    if planned is None:
        planned = _get(study, "runs_planned", "n_runs", default=None)
    if planned is None and counts:
        planned = sum(v for v in counts.values() if isinstance(v, int))
    done = _get(progress, "finished", "done", default=None)
    if done is None:
        done = _get(study, "runs_done", "n_done", default=None)
    if done is None and counts:
        done = sum(v for k, v in counts.items() if k in FINISHED_STATES and isinstance(v, int))
    best = _get(study, "best", "best_accuracy", "best_top1", default={}) or {}
    if isinstance(best, list):
        best = {row.get("variant"): row.get("top1", row.get("value")) for row in best}
    best = {k: (v.get("top1", v.get("value")) if isinstance(v, dict) else v) for k, v in best.items()}
    return {
        "id": study.get("id"),
        "name": study.get("name") or spec.get("name") or f"study {study.get('id')}",
        "model": model.get("name") if isinstance(model, dict) else model,
        "dataset": dataset.get("name") if isinstance(dataset, dict) else dataset,
        "variants": [v.get("name") if isinstance(v, dict) else v for v in variants],
        "variant_specs": [v for v in variants if isinstance(v, dict)],
        "status": study.get("status") or "unknown",
        "done": int(done or 0),
        "planned": int(planned or 0),
        "best": best,
        "created_by": _get(study, "created_by", "owner", default="—"),
        "created_at": _get(study, "created_at", "created", default=""),
        "kind": study.get("kind") or "native",
        "spec": spec,
    }


def active_runs(study: dict) -> int:
    progress = study.get("progress") or {}
    return sum(int(progress.get(state) or 0) for state in ACTIVE_RUN_STATES)


def study_is_done(study: dict) -> bool:
    """No run left to wait for: the page can stop polling. A cancelled study can still have running
    runs (asked to stop at their next epoch); it is done once they have ended too."""
    if active_runs(study):
        return False
    summary = study_summary(study)
    if summary["status"] in DONE_STUDY_STATES:
        return True
    return summary["planned"] > 0 and summary["done"] >= summary["planned"]


def study_is_open(study: dict) -> bool:
    """Still pending or running: there is something to cancel."""
    return study.get("status") in OPEN_STUDY_STATES
