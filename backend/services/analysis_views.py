"""The study's numbers as the API serves them, all computed by `backend.analysis` (one definition
per number): the analysis record, one variant's landscape, the per-variant comparison.

The analysis of a study is computed once per data version and metric (`read_cache`) and every
view is read out of that one record, so /analysis, /landscape, /compare, the exports and every
panel of the dashboard show the same best point (the best seed-mean, ties to the smallest lr,
then the smallest wd: backend/analysis/roi.py).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.analysis import AnalysisReport, analyse
from backend.analysis.extension import EXTENSION_LEVEL
from backend.analysis.grid import axis_key
from backend.analysis.latency import latency_comparison, latency_records
from backend.db.models import Artefact, Run, Study
from backend.extension_records import auto_extend_of
from backend.json_values import json_safe
from backend.run_states import ACTIVE, ENDED, RESULT_KINDS, SCORED
from backend.services.errors import Conflict, FieldError
from backend.services.queries import base_variant_name, get_study, get_variant, variant_names
from backend.services.read_cache import JsonBody, read_cache, study_version, to_json_body
from backend.spec import parse_spec
from workers.engine.catalog import FLOPS_CONVENTION

METRICS = ("top1", "top5")


def result_rows(session: Session, study_id: int) -> list[dict[str, Any]]:
    """The study's scored train/quantise runs as the analysis' rows."""
    names = variant_names(session, study_id)
    runs = session.execute(
        sa.select(Run.id, Run.variant_id, Run.lr, Run.wd, Run.seed, Run.top1, Run.top5, Run.status).where(
            Run.study_id == study_id,
            Run.kind.in_(RESULT_KINDS),
            Run.status.in_(SCORED),
            Run.top1.is_not(None),
        )
    )
    return [
        {
            "run_id": r.id,
            "variant": names[r.variant_id],
            "lr": r.lr,
            "wd": r.wd,
            "seed": r.seed,
            "top1": r.top1,
            "top5": r.top5,
            "status": r.status,
        }
        for r in runs
    ]


def analysis_grid(study: Study) -> dict[str, Any] | None:
    """A native study's grid in the analysis' terms (index lists instead of inclusive ranges);
    None for an imported study, whose axes the analysis infers from the results."""
    if study.kind != "native":
        return None
    grid = study.spec["grid"]
    out = {k: grid[k] for k in ("lr_centre", "wd_centre", "step", "size")}
    for axis in ("lr", "wd"):
        lo, hi = grid[f"{axis}_range"]
        out[f"{axis}_indices"] = list(range(lo, hi + 1))
    return out


def extension_level(study: Study) -> float:
    """The ROI level the study's extension proposal looks at: its auto_extend level, else 1.0."""
    auto = auto_extend_of(study.spec) if study.kind == "native" else None
    return float(auto.get("level", EXTENSION_LEVEL)) if auto else EXTENSION_LEVEL


def analysis_report(session: Session, study_id: int, *, metric: str) -> AnalysisReport | None:
    """The study's analysis for `metric`, once per data version; None before any run scored.
    A metric the results do not hold (top-5 of an import without it) is a 422 on `metric`."""
    return _report_box(session, study_id, metric).report


def _report_box(session: Session, study_id: int, metric: str) -> _ReportBox:
    version = study_version(session, study_id)
    return read_cache.get_or_build(
        ("analysis_report", study_id, version, metric),
        lambda: _ReportBox(_compute(session, study_id, metric)),
        size=lambda box: box.nbytes,
    )


class _ReportBox:
    """A report (or None) with its JSON body, sized for the cache by that body."""

    def __init__(self, report: AnalysisReport | None) -> None:
        self.report = report
        self.body = None if report is None else to_json_body(report.to_dict())
        self.nbytes = 64 if self.body is None else 2 * self.body.nbytes


def _compute(session: Session, study_id: int, metric: str) -> AnalysisReport | None:
    study = get_study(session, study_id)
    rows = result_rows(session, study_id)
    if not rows:
        return None
    try:
        return analyse(
            rows,
            metric=metric,
            base=base_variant_name(study),
            grid=analysis_grid(study),
            extension_level=extension_level(study),
        )
    except ValueError as exc:  # e.g. ResultsFileError: no top5 values for metric=top5
        raise FieldError(["query", "metric"], str(exc)) from None


def analysis_json(session: Session, study_id: int, *, metric: str) -> JsonBody:
    """GET /analysis as JSON bytes; 409 while no run has a result."""
    box = _report_box(session, study_id, metric)
    if box.body is None:
        raise Conflict(f"study {study_id} has no finished runs yet; nothing to analyse")
    return box.body


# --- one variant's landscape ---------------------------------------------------------------------
def landscape_json(session: Session, study_id: int, variant_name: str, *, metric: str) -> JsonBody:
    """GET /landscape as JSON bytes, once per data version of the study (read_cache)."""
    version = study_version(session, study_id)
    return read_cache.get_or_build(
        ("landscape", study_id, version, variant_name, metric),
        lambda: to_json_body(landscape(session, study_id, variant_name, metric=metric)),
        size=lambda cached: cached.nbytes,
    )


def landscape(session: Session, study_id: int, variant_name: str, *, metric: str) -> dict[str, Any]:
    """Every grid point of one variant with its state; the values, spreads and the best point are
    the analysis' (a native study lists its whole grid, an imported one the points it holds)."""
    study = get_study(session, study_id)
    variant = get_variant(session, study_id, variant_name)
    report = analysis_report(session, study_id, metric=metric)
    result = None if report is None else report.results.get(variant_name)
    scored: dict[tuple[float, float], dict[str, Any]] = {}
    if result is not None:
        p = result.landscape.points
        for k in range(len(p.x)):
            scored[(axis_key(p.x[k]), axis_key(p.y[k]))] = {
                "value": p.mean[k],
                "std": p.std[k],
                "n": p.n[k],
                "n_diverged": p.n_diverged[k],
            }
    states: dict[tuple[int, int], set[str]] = defaultdict(set)
    for grid_i, grid_j, status in session.execute(
        sa.select(Run.grid_i, Run.grid_j, Run.status).where(
            Run.study_id == study_id, Run.variant_id == variant.id, Run.kind.in_(RESULT_KINDS)
        )
    ):
        states[(grid_i, grid_j)].add(status)
    lr_by_i, wd_by_j = _grid_values(study)
    points = []
    for i, lr in lr_by_i.items():
        for j, wd in wd_by_j.items():
            if study.kind == "imported" and (i, j) not in states:
                continue
            x, y = math.log10(wd), math.log10(lr)
            cell = scored.get((axis_key(x), axis_key(y)))
            if cell is not None:
                status = "diverged" if cell["n_diverged"] >= cell["n"] else "finished"
            else:
                status = unscored_point_status(states.get((i, j), set()))
            points.append(
                {
                    "grid_i": i,
                    "grid_j": j,
                    "lr": lr,
                    "wd": wd,
                    "x": x,
                    "y": y,
                    "value": None if cell is None else cell["value"],
                    "std": None if cell is None else cell["std"],
                    "n": 0 if cell is None else cell["n"],
                    "status": status,
                }
            )
    best = None
    if result is not None and result.best is not None:
        key = (axis_key(result.best.x), axis_key(result.best.y))
        best = next((p for p in points if (axis_key(p["x"]), axis_key(p["y"])) == key), None)
    return {
        "study_id": study_id,
        "variant": variant_name,
        "metric": metric,
        "lr_values": list(lr_by_i.values()),
        "wd_values": list(wd_by_j.values()),
        "points": points,
        "best": best,
    }


def unscored_point_status(run_states: set[str]) -> str:
    """The state of a grid point without a result, from its runs' states: `running` while any run
    is to happen (waiting or running), else `failed` if one failed, `cancelled` if one was
    cancelled, `missing` when it has no run at all."""
    if run_states & set(ACTIVE):
        return "running"
    if "failed" in run_states:
        return "failed"
    if "cancelled" in run_states:
        return "cancelled"
    return "missing"


def _grid_values(study: Study) -> tuple[dict[int, float], dict[int, float]]:
    """Grid index -> lr and -> wd of a study (native: its spec; imported: the stored axes)."""
    if study.kind == "native":
        grid = parse_spec(study.spec, check_paths=False).grid
        return {i: grid.lr_at(i) for i in grid.lr_indices}, {j: grid.wd_at(j) for j in grid.wd_indices}
    grid = study.spec["grid"]
    # Imports store centred index ranges (as a native grid has); older imports counted from 0.
    lr_first = (grid.get("lr_range") or [0])[0]
    wd_first = (grid.get("wd_range") or [0])[0]
    return (
        {lr_first + k: v for k, v in enumerate(grid["lr_values"])},
        {wd_first + k: v for k, v in enumerate(grid["wd_values"])},
    )


# --- variants and their comparison -----------------------------------------------------------------
VARIANT_FIELDS = (
    "id",
    "name",
    "kind",
    "spec",
    "flops_ratio_achieved",
    "kept_fractions",
    "params",
    "params_nonzero",
    "flops",
    "size_bytes",
    "size_sparse_bytes",
    "latency",
    "histograms",
    "scan",
    "measured",
)


def variants_view(session: Session, study_id: int) -> dict[str, Any]:
    """Every variant's columns, its source's name, its model artefact, and `iterations`: the
    per-round records of an iteratively pruned variant, as its prune run stored them (kept there,
    the one place they are written; a retried prune run replaces them)."""
    study = get_study(session, study_id)
    names = {v.id: v.name for v in study.variants}
    iterations: dict[int, Any] = {}
    for variant_id, result in session.execute(
        sa.select(Run.variant_id, Run.result).where(
            Run.study_id == study_id, Run.kind == "prune", Run.status.in_(ENDED)
        )
    ):
        if isinstance(result, dict) and result.get("iterations"):
            iterations[variant_id] = result["iterations"]
    model_artefacts: dict[int, int] = {}
    for variant_id, artefact_id in session.execute(
        sa.select(Artefact.variant_id, sa.func.min(Artefact.id))
        .where(Artefact.variant_id.in_(list(names)), Artefact.kind == "model")
        .group_by(Artefact.variant_id)
    ):
        model_artefacts[variant_id] = artefact_id
    items = [
        {
            **{f: getattr(v, f) for f in VARIANT_FIELDS},
            "source": names.get(v.source_variant_id) if v.source_variant_id else None,
            "model_artefact_id": model_artefacts.get(v.id),
            "iterations": iterations.get(v.id),
        }
        for v in study.variants
    ]
    return {"study_id": study_id, "items": items}


def _best_by_variant(session: Session, study_id: int, metric: str) -> dict[str, Any]:
    """Variant -> the analysis' BestRecord for `metric` ({} before any result, or for a metric the
    results do not hold)."""
    try:
        report = analysis_report(session, study_id, metric=metric)
    except FieldError:
        return {}
    if report is None:
        return {}
    return {name: result.best for name, result in report.results.items() if result.best is not None}


def compare(session: Session, study_id: int) -> dict[str, Any]:
    """One row per variant: size, FLOPs and latency measurements next to the best point of the
    analysis (top-1 and top-5, each its own seed-mean best); and the latency comparison of
    `backend.analysis.latency`, per runtime (a latency ratio is only taken within one runtime),
    with each variant's best top-1 as its accuracy and its measured FLOPs ratio beside it."""
    study = get_study(session, study_id)
    base = next((v for v in study.variants if v.kind == "base"), None)
    finished: dict[int, int] = defaultdict(int)
    for variant_id, n in session.execute(
        sa.select(Run.variant_id, sa.func.count())
        .where(Run.study_id == study_id, Run.kind.in_(RESULT_KINDS), Run.status.in_(SCORED))
        .group_by(Run.variant_id)
    ):
        finished[variant_id] = n
    best1 = _best_by_variant(session, study_id, "top1")
    best5 = _best_by_variant(session, study_id, "top5")
    rows = []
    for v in study.variants:
        b1, b5 = best1.get(v.name), best5.get(v.name)
        rows.append(
            {
                "name": v.name,
                "kind": v.kind,
                "params": v.params,
                "params_nonzero": v.params_nonzero,
                "compression_rate": (base.params / v.params_nonzero)
                if base and base.params and v.params_nonzero
                else None,
                "flops": v.flops,
                "flops_kept": (v.flops / base.flops) if base and base.flops and v.flops is not None else None,
                "flops_ratio_target": (v.spec or {}).get("flops_ratio"),
                "flops_ratio_achieved": v.flops_ratio_achieved,
                "size_bytes": v.size_bytes,
                "size_sparse_bytes": v.size_sparse_bytes,
                "size_mb": v.size_bytes / 1e6 if v.size_bytes is not None else None,
                "latency": json_safe(latency_records(v.latency)) if v.latency is not None else None,
                "best_top1": None if b1 is None else b1.value,
                "best_top1_std": None if b1 is None else b1.std,
                "best_top1_n": None if b1 is None else b1.n,
                "best_top5": None if b5 is None else b5.value,
                "best_lr": None if b1 is None else b1.lr,
                "best_wd": None if b1 is None else b1.wd,
                "finished_runs": finished[v.id],
            }
        )
    base_name = base.name if base else "base"
    latency = latency_comparison(
        [
            {
                "name": row["name"],
                "kind": row["kind"],
                "latency": row["latency"],
                "accuracy": row["best_top1"],
                "flops_ratio": row["flops_kept"],
            }
            for row in rows
        ],
        base_name,
    )
    return {
        "study_id": study_id,
        "base": base_name,
        "flops_convention": FLOPS_CONVENTION,
        "variants": rows,
        "latency": json_safe(latency.to_dict()),
    }
