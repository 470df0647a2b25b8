"""Studies side by side (issue 16 item 3): `GET /api/v1/compare?studies=1,2,...`.

One row per (study, variant) with the numbers of the study's two tables (best, ROI sizes, ellipse
length / width / angle per level, the shift test, the performance risk), all read out of each
study's cached analysis (`analysis_views.analysis_report`: one definition per number), and per
study what the page needs to draw its landscapes next to the others: its variants, the analysis'
grid and its own colour scale. `shared_colour_scale` is the same rule (backend.analysis.colour)
over the observations of all the chosen studies, for "one scale for all" by choice.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import numpy as np
from sqlalchemy.orm import Session

from backend.analysis.colour import colour_scale
from backend.analysis.records import AnalysisReport, VariantResult, level_key
from backend.db.models import Study
from backend.services.analysis_views import analysis_report, result_rows
from backend.services.errors import FieldError
from backend.services.queries import base_variant_name, get_study

MIN_STUDIES, MAX_STUDIES = 2, 8
ID_MAX = 2**31 - 1  # primary keys are 32-bit on Postgres
ID_DIGITS = len(str(ID_MAX))
FIELD = ["query", "studies"]
API = "/api/v1"


def parse_study_ids(text: str) -> list[int]:
    """`"1,2,3"` -> [1, 2, 3]: 2..8 distinct ids, each an integer 1..2**31-1 (422 naming `studies`)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > MAX_STUDIES:
        raise FieldError(FIELD, f"compare at most {MAX_STUDIES} studies (got {len(parts)})")
    ids: list[int] = []
    for part in parts:
        if not part:
            raise FieldError(FIELD, "give study ids separated by commas, e.g. studies=1,2")
        if not part.isascii() or not part.isdigit() or len(part) > ID_DIGITS or not 1 <= int(part) <= ID_MAX:
            shown = part if len(part) <= 20 else part[:20] + "..."
            raise FieldError(FIELD, f"{shown!r} is not a study id (an integer from 1 to {ID_MAX})")
        study_id = int(part)
        if study_id in ids:
            raise FieldError(FIELD, f"study {study_id} is listed twice")
        ids.append(study_id)
    if len(ids) < MIN_STUDIES:
        raise FieldError(FIELD, f"compare at least {MIN_STUDIES} studies (got {len(ids)})")
    return ids


def compare_studies(session: Session, study_ids: list[int], *, metric: str = "top1") -> dict[str, Any]:
    """The comparison of `study_ids` (checked by parse_study_ids); 404 naming the first unknown id."""
    studies = [get_study(session, sid) for sid in study_ids]  # every id exists before any work
    entries, rows, observations = [], [], []
    levels: list[float] = []
    for study in studies:
        report, reason = _report(session, study.id, metric)
        if report is not None:
            levels = levels or list(report.roi_levels)
            observations.extend(
                r[metric] for r in result_rows(session, study.id) if r.get(metric) is not None
            )
        entries.append(_study_entry(study, report, reason, metric))
        rows.extend(_rows(study, report))
    shared = colour_scale(np.asarray(observations, dtype=float)) if observations else None
    return {
        "metric": metric,
        "roi_levels": levels or [0.5, 1.0],
        "studies": entries,
        "rows": rows,
        "shared_colour_scale": None if shared is None else shared.to_dict(),
    }


def _report(session: Session, study_id: int, metric: str) -> tuple[AnalysisReport | None, str | None]:
    try:
        report = analysis_report(session, study_id, metric=metric)
    except FieldError as exc:  # e.g. top-5 of an import without top-5 values
        return None, exc.message
    if report is None:
        return None, "no finished runs yet"
    return report, None


def _study_entry(
    study: Study, report: AnalysisReport | None, reason: str | None, metric: str
) -> dict[str, Any]:
    names = report.variants if report is not None else []
    names = names + [v.name for v in study.variants if v.name not in names]
    return {
        "study_id": study.id,
        "name": study.name,
        "kind": study.kind,
        "status": study.status,
        "model": (study.spec.get("model") or {}).get("name"),
        "dataset": (study.spec.get("dataset") or {}).get("name"),
        "base": base_variant_name(study),
        "variants": names,
        "analysed": report is not None,
        "reason": reason,
        "grid": None if report is None else report.grid.to_dict(),
        "colour_scale": None
        if report is None or report.colour_scale is None
        else report.colour_scale.to_dict(),
        "analysis_url": f"{API}/studies/{study.id}/analysis?metric={metric}",
        "landscape_urls": {
            name: f"{API}/studies/{study.id}/landscape?variant={quote(name, safe='')}&metric={metric}"
            for name in names
        },
    }


def _rows(study: Study, report: AnalysisReport | None) -> list[dict[str, Any]]:
    base = base_variant_name(study)
    kinds = {v.name: v.kind for v in study.variants}
    names = (report.variants if report is not None else []) + [
        n for n in kinds if report is None or n not in report.results
    ]
    levels = list(report.roi_levels) if report is not None else [0.5, 1.0]
    rows = []
    for name in names:
        result = None if report is None else report.results.get(name)
        rows.append(
            {
                "study_id": study.id,
                "study_name": study.name,
                "variant": name,
                "kind": kinds.get(name),
                "is_base": name == base,
                **_numbers(result, levels),
            }
        )
    return rows


def _numbers(result: VariantResult | None, levels: list[float]) -> dict[str, Any]:
    """The table numbers of one variant (all null before it has a result)."""
    keys = [level_key(x) for x in levels]
    if result is None:
        return {
            "n_runs": 0,
            "best": None,
            "roi": dict.fromkeys(keys),
            "ellipse": dict.fromkeys(keys),
            "ellipse_reason": dict.fromkeys(keys, "no results yet"),
            "shift": dict.fromkeys(keys),
            "risk": None,
            "noise": None,
        }
    best = result.best
    risk = result.risk
    return {
        "n_runs": result.n_runs,
        "best": None
        if best is None
        else {
            "value": best.value,
            "lr": best.lr,
            "wd": best.wd,
            "x": best.x,
            "y": best.y,
            "std": best.std,
            "n": best.n,
            "ci_low": best.ci_low,
            "ci_high": best.ci_high,
            "ci_level": best.ci_level,
        },
        "roi": {k: (result.roi[k].n_points if k in result.roi else None) for k in keys},
        "ellipse": {k: _ellipse(result.ellipse.get(k)) for k in keys},
        "ellipse_reason": {k: result.ellipse_reason.get(k) for k in keys},
        "shift": {k: _shift(result.shift.get(k)) for k in keys},
        "risk": {
            "level": risk.level,
            "mean": risk.mean,
            "std": risk.std,
            "rel_mean": risk.rel_mean,
            "rel_std": risk.rel_std,
            "n": risk.n,
            "missing": risk.missing,
            "reason": risk.reason,
        },
        "noise": {"std": result.noise.std, "source": result.noise.source, "estimate": result.noise.estimate},
    }


def _ellipse(ellipse: Any) -> dict[str, Any] | None:
    if ellipse is None:
        return None
    return {
        "length": ellipse.length,
        "width": ellipse.width,
        "angle_deg": ellipse.angle_deg,
        "centre": list(ellipse.centre),
        "n_points": ellipse.n_points,
    }


def _shift(shift: Any) -> dict[str, Any] | None:
    if shift is None:
        return None
    return {
        "tested": shift.tested,
        "verdict": shift.verdict,
        "reason": shift.reason,
        "delta": shift.delta,
        "distance": shift.distance,
        "ci_low": shift.ci_low,
        "ci_high": shift.ci_high,
        "p_value": shift.p_value,
        "significant": shift.significant,
    }
