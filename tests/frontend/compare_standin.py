"""A stand-in for `GET /api/v1/compare?studies=...` for the browser tests while main has no such
route (it is built on branch h16b): the `StudiesCompare` shape docs/api.md documents there, made
from each study's analysis on main. `serve_app` adds it only when the app has no route of its own
at that path, so once h16b is merged the tests drive the real endpoint; then delete this file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request

PATH = "/api/v1/compare"


def add_if_missing(app: FastAPI) -> bool:
    """Mount the stand-in unless the app serves PATH itself; True when mounted."""
    if any(getattr(route, "path", None) == PATH for route in app.routes):
        return False

    @app.get(PATH, include_in_schema=False)
    def compare(request: Request, studies: str, metric: str = "top1") -> dict[str, Any]:
        return _compare(request.app, studies, metric)

    return True


def _ids(text: str) -> list[int]:
    ids: list[int] = []
    for part in text.split(","):
        if not part.strip().isdigit() or not 1 <= int(part) <= 2**31 - 1:
            raise HTTPException(422, [{"loc": ["query", "studies"], "msg": f"not a study id: {part[:20]!r}"}])
        if int(part) not in ids:
            ids.append(int(part))
    if not 2 <= len(ids) <= 8:
        raise HTTPException(422, [{"loc": ["query", "studies"], "msg": "2..8 distinct study ids"}])
    return ids


def _compare(app: FastAPI, studies: str, metric: str) -> dict[str, Any]:
    from backend.analysis.colour import colour_scale
    from backend.db.models import Study
    from backend.services.analysis_views import analysis_report, result_rows

    entries, rows, observations = [], [], []
    with app.state.sessionmaker() as session:
        for study_id in _ids(studies):
            study = session.get(Study, study_id)
            if study is None:
                raise HTTPException(404, f"study {study_id} not found")
            report = analysis_report(session, study_id, metric=metric)
            record = report.to_dict() if report is not None else None
            observations += [r[metric] for r in result_rows(session, study_id) if r[metric] is not None]
            variants = record["variants"] if record else [v.name for v in study.variants]
            entries.append(
                {
                    "study_id": study_id,
                    "name": study.name,
                    "kind": study.kind,
                    "status": study.status,
                    "model": (study.spec or {}).get("model", {}).get("name"),
                    "dataset": (study.spec or {}).get("dataset", {}).get("name"),
                    "base": variants[0] if variants else "base",
                    "variants": variants,
                    "analysed": record is not None,
                    "reason": None if record else "no finished run yet",
                    "grid": record["grid"] if record else None,
                    "colour_scale": record["colour_scale"] if record else None,
                    "analysis_url": f"/api/v1/studies/{study_id}/analysis?metric={metric}",
                    "landscape_urls": {},
                }
            )
            kinds = {v.name: v.kind for v in study.variants}
            for variant in variants:
                result = (record or {}).get("results", {}).get(variant) or {}
                row = _row(study_id, study.name, variant, variant == variants[0], result)
                rows.append({**row, "kind": kinds.get(variant)})
    shared = colour_scale(np.asarray(observations, dtype=float))
    return {
        "metric": metric,
        "roi_levels": [0.5, 1.0],
        "studies": entries,
        "rows": rows,
        "shared_colour_scale": shared.to_dict() if shared is not None else None,
    }


def _row(study_id: int, name: str, variant: str, is_base: bool, result: dict) -> dict[str, Any]:
    best = result.get("best")
    risk = result.get("risk")
    noise = result.get("noise")
    keep_best = ("value", "lr", "wd", "x", "y", "std", "n", "ci_low", "ci_high", "ci_level")
    keep_shift = (
        "tested",
        "verdict",
        "reason",
        "delta",
        "distance",
        "ci_low",
        "ci_high",
        "p_value",
        "significant",
    )
    keep_risk = ("level", "mean", "std", "rel_mean", "rel_std", "n", "missing", "reason")
    return {
        "study_id": study_id,
        "study_name": name,
        "variant": variant,
        "kind": None,
        "is_base": is_base,
        "n_runs": result.get("n_runs", 0),
        "best": {k: best.get(k) for k in keep_best} if best else None,
        "roi": {level: (roi or {}).get("n_points") for level, roi in (result.get("roi") or {}).items()},
        "ellipse": {
            level: {k: e[k] for k in ("length", "width", "angle_deg", "centre", "n_points")} if e else None
            for level, e in (result.get("ellipse") or {}).items()
        },
        "ellipse_reason": dict(result.get("ellipse_reason") or {}),
        "shift": {
            level: {k: test.get(k) for k in keep_shift} if test else None
            for level, test in (result.get("shift") or {}).items()
        },
        "risk": {k: risk.get(k) for k in keep_risk} if risk else None,
        "noise": {"std": noise["std"], "source": noise["source"], "estimate": noise["estimate"]}
        if noise
        else None,
    }
