"""The study page's numbers, read out of the API's JSON (analysis record, /compare, /variants).

Pure functions of the `study-data` store, so they are tested without a browser or a server.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from dash import html
from dash.dash_table.Format import Format, Scheme

from backend.run_states import ACTIVE
from frontend.api_client import ApiClient, ApiError
from frontend.figures import record as rec
from frontend.figures.common import finite
from frontend.pages.components import fmt, fmt_hyper, fmt_p, fmt_sig

LABELS = {
    "variant": "variant",
    "level": "ROI level (pp)",
    "n_points": "points",
    "centre_log_wd": "centre log10 wd",
    "centre_log_lr": "centre log10 lr",
    "length": "length (log10)",
    "width": "width (log10)",
    "angle_deg": "angle (deg)",
    "mean": "mean d (pp)",
    "std": "std d (pp)",
    "median": "median d (pp)",
    "q1": "Q1 d (pp)",
    "q3": "Q3 d (pp)",
    "relative_mean": "mean d/f* (%)",
    "relative_std": "std d/f* (%)",
    "n_missing": "no result",
    "missing": "no result",
    "n": "points",
}


async def load_extras(client: ApiClient, study_id: Any, study: dict, metric: str = "top1") -> dict:
    """/compare, /variants, the measure runs' states and every variant's grid points with their
    states (/landscape: the points without a result too); an endpoint that fails leaves its part
    empty."""

    async def safe(coroutine):
        try:
            return await coroutine
        except ApiError as exc:
            return {"error": str(exc.detail)}

    names = [str(name) for name in study.get("variants") or []]
    compare, variants, measure, *landscapes = await asyncio.gather(
        safe(client.compare(study_id)),
        safe(client.variants(study_id)),
        safe(client.list_runs(study_id, kind="measure", limit=1000)),
        *(safe(client.landscape(study_id, name, metric)) for name in names),
    )
    return {
        "compare": compare or {},
        "variants": (variants or {}).get("items", []),
        "measure_runs": [
            {"variant": run.get("variant"), "status": run.get("status")}
            for run in (measure or {}).get("items", [])
        ],
        "landscapes": {
            name: [
                {key: point[key] for key in ("x", "y", "lr", "wd", "status", "grid_i", "grid_j")}
                for point in (body or {}).get("points") or []
            ]
            for name, body in zip(names, landscapes, strict=True)
        },
    }


def grid_points(data: dict) -> dict[str, list[dict]]:
    """Variant -> its grid points from /landscape (x, y, lr, wd, status), {} before they are read."""
    return (data.get("extras") or {}).get("landscapes") or {}


# --- the study's summary and the notes of panels without data ------------------------------------


def best_per_variant(data: dict) -> list[dict]:
    """Each variant's best point as the analysis defines it (the best seed-mean top-1, its tie rule;
    /compare serves it), with where on the grid it is and the spread of its seeds."""
    compare = (data.get("extras") or {}).get("compare") or {}
    return [
        {
            "variant": row["name"],
            "top1": row["best_top1"],
            "std": row["best_top1_std"],
            "n": row["best_top1_n"],
            "lr": row["best_lr"],
            "wd": row["best_wd"],
        }
        for row in compare.get("variants") or []
    ]


def measure_runs_waiting(data: dict) -> int:
    runs = (data.get("extras") or {}).get("measure_runs") or []
    return sum(run["status"] in ACTIVE for run in runs)


def _runs(n: int, kind: str) -> str:
    return f"{n} {kind} run{'s' if n != 1 else ''}"


def measurements_note(data: dict, rows: list[dict]) -> tuple[str, bool]:
    """(one-line note, whether there is anything to draw) for the accuracy vs cost panels."""
    measured = any(
        finite(row[key]) for row in rows for key in ("latency_ms", "latency_ms_32", "size_mb", "params")
    )
    waiting = measure_runs_waiting(data)
    if (data.get("study") or {}).get("kind") == "imported":
        return "No measurements: an imported study holds results, not models to measure.", measured
    if waiting and measured:
        return f"Waiting for {_runs(waiting, 'more measure')}; the table and plots fill in as they end.", True
    if waiting:
        return (
            f"Waiting for {_runs(waiting, 'measure')}: latency, size, FLOPs and weight histograms appear "
            "when they finish.",
            False,
        )
    if not measured:
        runs = (data.get("extras") or {}).get("measure_runs") or []
        failed = sum(run.get("status") in ("failed", "cancelled") for run in runs)
        reason = f": {_runs(failed, 'measure')} failed or cancelled" if failed else ""
        return f"No measurements{reason}.", False
    return "", True


def risk_note(analysis: dict) -> str:
    """Why there are no risk boxes yet ('' when there are): the analysis' own reason when it could
    not be made (no finished run yet, a metric the results do not hold), else what the base lacks."""
    for row in risk_series(analysis):
        if any(finite(v) for v in row["values"]):
            return ""
    if "unavailable" in analysis:
        return f"No performance risk: {analysis['unavailable']}"
    base = rec.variant_names(analysis)[:1]
    reason = ((rec.result(analysis, base[0]).get("risk") or {}).get("reason") if base else None) or (
        "it needs the base model's 0.5-ROI (finished runs around its best point)"
    )
    return f"No performance risk yet: {str(reason).rstrip('.')}."


# What the risk section's symbols mean (docs/spec.md section 5), shown where they appear.
RISK_DEFINITIONS = (
    "d = f*(v) − f(v, θ): the accuracy a variant v loses at a point θ of the base model's 0.5-ROI "
    "(the grid points within 0.5 pp of the base's best), against v's own best f*(v) — what not "
    "retuning costs; d/f* is that loss relative to f* (in %); pp = percentage points of accuracy."
)


# --- colour scale ------------------------------------------------------------------------------
def observed_range(analysis: dict) -> tuple[float, float]:
    """Slider bounds for the colour floor: lowest to highest observed value of the study."""
    values = [
        p["value"]
        for variant in rec.variant_names(analysis)
        for p in rec.landscape_points(analysis, variant)
        if p["value"] is not None
    ]
    zmin, zmax = rec.colour_range(analysis)
    low = math.floor(min(values + [zmin])) if values else math.floor(zmin)
    high = math.ceil(max(values + [zmax])) if values else math.ceil(zmax)
    return float(low), float(max(high, low + 1))


# --- the two result tables -----------------------------------------------------------------------
def _columns(rows: list[dict]) -> list[dict]:
    keys: list[str] = []
    for row in rows:
        for key in row:
            if key not in keys:
                keys.append(key)
    columns = []
    for key in keys:
        values = [row.get(key) for row in rows if finite(row.get(key))]
        column = {"name": LABELS.get(key, key.replace("_", " ")), "id": key}
        if values and all(isinstance(v, int) for v in values):
            column.update(type="numeric", format=Format(group=","))
        elif key in ("level", "angle_deg"):
            column.update(type="numeric", format=Format(precision=1, scheme=Scheme.fixed))
        elif values:
            column.update(type="numeric", format=Format(precision=4, scheme=Scheme.decimal_or_exponent))
        columns.append(column)
    return columns


def _flat(row: dict) -> dict:
    """Table cells must be scalars: lists and dicts are written out."""
    out = {}
    for key, value in row.items():
        if isinstance(value, list | tuple) and all(finite(v) for v in value) and len(value) == 2:
            out[key] = f"[{fmt(value[0], 3)}, {fmt(value[1], 3)}]"
        elif isinstance(value, list | tuple | dict):
            continue
        else:
            out[key] = value
    return out


def summary_table(analysis: dict) -> tuple[list[dict], list[dict]]:
    """The analysis' own summary table (one row per variant), as the record formats it."""
    summary = analysis.get("summary") or {}
    rows = [_flat(row) for row in summary.get("rows") or [] if isinstance(row, dict)]
    columns = _columns(rows)
    order = summary.get("columns") or []
    columns.sort(key=lambda c: order.index(c["id"]) if c["id"] in order else len(order))
    return rows, columns


def ellipse_table(analysis: dict) -> tuple[list[dict], list[dict]]:
    """Per variant and ROI level: points, centre, length, width, angle (the study's first table)."""
    rows = []
    for variant in rec.variant_names(analysis):
        raw = rec.result(analysis, variant).get("ellipse") or {}
        reasons = rec.result(analysis, variant).get("ellipse_reason") or {}
        roi = rec.result(analysis, variant).get("roi") or {}
        for level in sorted(set(raw) | set(roi), key=float):
            e = raw.get(level)
            row = {
                "variant": variant,
                "level": float(level),
                "n_points": (roi.get(level) or {}).get("n_points"),
            }
            if e:
                row.update(
                    centre_log_wd=e["centre"][0],
                    centre_log_lr=e["centre"][1],
                    length=e["length"],
                    width=e["width"],
                    angle_deg=e["angle_deg"],
                    note="",
                )
            else:
                row.update(
                    centre_log_wd=None,
                    centre_log_lr=None,
                    length=None,
                    width=None,
                    angle_deg=None,
                    note=reasons.get(level) or "no ellipse",
                )
            rows.append(row)
    return rows, _columns(rows)


def risk_table(analysis: dict) -> tuple[list[dict], list[dict]]:
    """Per variant: d over the base's 0.5-ROI, mean / std / quartiles (the study's second table)."""
    rows = []
    for variant in rec.variant_names(analysis):
        risk = rec.result(analysis, variant).get("risk") or {}
        quartiles = risk.get("quartiles") or [None, None, None]
        rel = [risk.get("rel_mean"), risk.get("rel_std")]
        rows.append(
            {
                "variant": variant,
                "n": risk.get("n"),
                "missing": risk.get("missing"),
                "mean": risk.get("mean"),
                "std": risk.get("std"),
                "q1": quartiles[0],
                "median": quartiles[1],
                "q3": quartiles[2],
                "relative_mean": rel[0] * 100 if finite(rel[0]) else None,
                "relative_std": rel[1] * 100 if finite(rel[1]) else None,
                "note": risk.get("reason") or "",
            }
        )
    return rows, _columns(rows)


def risk_series(analysis: dict) -> list[dict]:
    """Box-plot input: the full list of d (pp) and d^R (fraction) per variant, base first."""
    series = []
    for variant in rec.variant_names(analysis):
        risk = rec.result(analysis, variant).get("risk") or {}
        series.append(
            {
                "variant": variant,
                "values": risk.get("values") or [],
                "relative_values": risk.get("rel_values") or [],
            }
        )
    return series


def shift_verdicts(analysis: dict) -> list[str]:
    """One sentence per compressed variant and ROI level: did its ellipse centre move from the base's?"""
    sentences = []
    for variant in rec.variant_names(analysis)[1:]:
        for level, test in sorted(
            (rec.result(analysis, variant).get("shift") or {}).items(), key=lambda kv: float(kv[0])
        ):
            if isinstance(test, dict):
                sentences.append(shift_sentence(variant, level, test))
    return sentences


def shift_sentence(variant: str, level: Any, test: dict) -> str:
    where = f"{variant}, {level}-ROI: "
    if not test.get("tested") or test.get("p_value") is None:
        return where + f"not tested ({test.get('reason') or 'too few points'})."
    p_value = test["p_value"]
    p = "p < 0.001" if p_value < 1e-3 else f"p = {fmt_p(p_value)}"
    delta = test.get("delta") or [None, None]
    move = f"centre moved {signed(delta[0])} in log10 wd and {signed(delta[1])} in log10 lr"
    if test.get("significant"):
        verdict = test.get("verdict") or "significant shift"
        return where + f"{verdict} ({move}; permutation {p}, below α = {test.get('alpha', 0.05)})."
    return where + f"no significant shift ({move}; permutation {p})."


def signed(value: Any) -> str:
    """A shift in log10 units with its direction: +0.3, -0.0043, <0.001 (too small to sign)."""
    text = fmt_sig(value, 2)
    return "+" + text if finite(value) and value > 0 and text[0].isdigit() else text


# --- measurements ------------------------------------------------------------------------------
def latency_view(data: dict) -> dict:
    """/compare's `latency` section (backend/analysis/latency.py: LatencyComparison), {} before any
    measurement."""
    compare = (data.get("extras") or {}).get("compare") or {}
    return compare.get("latency") or {}


def latency_on(data: dict, runtime: str | None = None) -> tuple[str | None, dict[tuple[str, str], dict]]:
    """(runtime, {(variant, batch): row}) on `runtime` (default: the comparison's default runtime),
    each row as the API computed it within that runtime (median_ms, latency_ratio, not_faster, ...)."""
    view = latency_view(data)
    chosen = runtime if runtime in (view.get("by_runtime") or {}) else view.get("default_runtime")
    if not chosen:
        return None, {}
    rows = view["by_runtime"][chosen]["rows"]
    return chosen, {(row["variant"], row["batch"]): row for row in rows}


def measurement_rows(data: dict, runtime: str | None = None) -> list[dict]:
    """One row per variant from /compare: best accuracies, params, FLOPs, size, and latency on one
    runtime (the comparison's default unless `runtime` names another it holds)."""
    compare = (data.get("extras") or {}).get("compare") or {}
    _, timed = latency_on(data, runtime)
    rows = []
    for item in compare.get("variants") or []:
        b1, b32 = timed.get((item["name"], "1")) or {}, timed.get((item["name"], "32")) or {}
        rows.append(
            {
                "variant": item["name"],
                "kind": item["kind"],
                "top1": item["best_top1"],
                "top5": item["best_top5"],
                "params": item["params"],
                "params_nonzero": item["params_nonzero"],
                "compression_rate": item["compression_rate"],
                "flops": item["flops"],
                "flops_kept": item["flops_kept"],
                "size_mb": item["size_mb"],
                "size_sparse_mb": item["size_sparse_bytes"] / 1e6
                if finite(item["size_sparse_bytes"])
                else None,
                "latency_ms": b1.get("median_ms"),
                "latency_ms_32": b32.get("median_ms"),
                "latency_ratio": b1.get("latency_ratio"),
                "latency_ratio_32": b32.get("latency_ratio"),
                "not_faster": b1.get("not_faster"),
                "not_faster_32": b32.get("not_faster"),
                # why a cell is empty on this runtime (not timed here, not supported, base untimed)
                "latency_reason": b1.get("reason") or b32.get("reason"),
                "finished_runs": item["finished_runs"],
            }
        )
    return rows


# --- per-variant stored details ----------------------------------------------------------------
def _variants(data: dict) -> list[dict]:
    return (data.get("extras") or {}).get("variants") or []


def kept_fractions(data: dict) -> dict[str, dict[str, float]]:
    return {
        v["name"]: v["kept_fractions"]
        for v in _variants(data)
        if v.get("kind") == "structured" and isinstance(v.get("kept_fractions"), dict)
    }


def kept_fractions_note(data: dict) -> str:
    """Why there is no kept-filters chart: no structured variant, or its prune run has not ended."""
    waiting = [
        v["name"]
        for v in _variants(data)
        if v.get("kind") == "structured" and not isinstance(v.get("kept_fractions"), dict)
    ]
    if not waiting:
        return "No structured variant in this study."
    return f"Kept filters per layer: waiting for the prune run of {', '.join(waiting)}."


def histograms_note(data: dict) -> str:
    """Why there is no weight histogram to pick."""
    if (data.get("study") or {}).get("kind") == "imported":
        return "No weight histograms: an imported study has no models."
    waiting = measure_runs_waiting(data)
    if waiting:
        return f"Weight histograms: waiting for {_runs(waiting, 'measure')}."
    return "No weight histograms stored."


def histograms(data: dict) -> dict[str, dict]:
    return {v["name"]: v.get("histograms") or {} for v in _variants(data)}


def histogram_layers(data: dict, variant: str) -> list[str]:
    return list((histograms(data).get(variant) or {}).get("layers") or {})


def histogram_series(data: dict, variant: str, layer: str) -> dict[str, dict]:
    """The layer's weights before and after: an int8 / mixed variant carries its own "before" (the
    fp32 weights with BatchNorm folded, as the exporter sees them); any other compressed variant
    is compared with its source (the base, for a pruned one)."""
    by_name = {v["name"]: v for v in _variants(data)}
    hists = histograms(data).get(variant) or {}
    series = {}
    before, label = hists.get("before"), f"{hists.get('before_label')} (before)"
    if before is None:
        source = (by_name.get(variant) or {}).get("source") or next(
            (v["name"] for v in _variants(data) if v["kind"] == "base"), None
        )
        if source and source != variant:
            before, label = (histograms(data).get(source) or {}).get("layers"), f"{source} (before)"
    if before and layer in before:
        series[label] = before[layer]
    after = (hists.get("layers") or {}).get(layer)
    if after:
        series[f"{variant} (after)"] = after
    return series


# --- grid extension ----------------------------------------------------------------------------
SIDE_WORDS = {
    ("lr", "low"): "a row of lower learning rates",
    ("lr", "high"): "a row of higher learning rates",
    ("wd", "low"): "a column of lower weight decays",
    ("wd", "high"): "a column of higher weight decays",
}


def extension_proposal(analysis: dict) -> dict:
    """The base variant's auto-extension proposal (the API extends by it with `proposal: true`)."""
    names = rec.variant_names(analysis)
    return (rec.result(analysis, names[0]).get("extension") or {}) if names else {}


def extension_text(analysis: dict) -> tuple[str, bool]:
    """(sentence, whether there is something to extend)."""
    proposal = extension_proposal(analysis)
    sides = proposal.get("sides") or []
    if not proposal.get("needed") or not sides:
        reason = proposal.get("reason")
        return (
            "No extension proposed: no point of the base model's 1.0-ROI lies on the grid's edge"
            + (f" ({reason})." if reason else "."),
            False,
        )
    parts = [
        f"{SIDE_WORDS.get((s.get('axis'), s.get('side')), s.get('axis'))} at {fmt_hyper(s.get('value'))}"
        for s in sides
    ]
    return (
        f"The base model's {proposal.get('level', 1.0)}-ROI touches the grid's edge. Proposed: add "
        + "; ".join(parts)
        + f" ({proposal.get('n_points', '?')} new grid points per variant).",
        True,
    )


def extension_panel(data: dict) -> tuple[list, bool]:
    """Panel text and whether the extend button is usable."""
    study = data.get("study") or {}
    if study.get("kind") == "imported":
        return [
            html.P("Imported studies cannot be extended (no training behind them).", className="muted")
        ], False
    text, possible = extension_text(data.get("analysis") or {})
    return [html.P(text)], possible


def extension_question(data: dict) -> str:
    """The confirm dialog's question before extending: which rows / columns at which values, and
    how many grid points each variant gains."""
    proposal = extension_proposal(data.get("analysis") or {})
    sides = proposal.get("sides") or []
    study = data.get("study") or {}
    parts = [
        f"{SIDE_WORDS.get((s.get('axis'), s.get('side')), s.get('axis'))} at {fmt_hyper(s.get('value'))}"
        for s in sides
    ]
    variants = len(study.get("variants") or [])
    return (
        f"Extend study '{study.get('name')}' (id {study.get('id')})? Add " + "; ".join(parts) + ": "
        f"{proposal.get('n_points', '?')} new grid points for each of its {variants} variants, trained "
        "and measured like the rest."
    )


def _added(values: list[float], new_range: list[int], old_range: list[int] | None) -> list[float]:
    """The values of an axis at the indices an extension added (outside the old range)."""
    low, _high = new_range
    if not old_range:
        return []
    return [v for k, v in enumerate(values) if not old_range[0] <= low + k <= old_range[1]]


def extension_added(answer: dict, old_grid: dict | None = None) -> str:
    """POST /extend's ExtendOut in a sentence: the runs added and the learning rates / weight
    decays of the new grid points (values, not grid indices)."""
    old_grid = old_grid or {}
    new_lr = _added(answer.get("lr_values") or [], answer.get("lr_range") or [0, 0], old_grid.get("lr_range"))
    new_wd = _added(answer.get("wd_values") or [], answer.get("wd_range") or [0, 0], old_grid.get("wd_range"))
    text = f"Extended: added {answer.get('added_runs', 0):,} runs at {answer.get('added_points', 0):,} new grid points"
    parts = []
    if new_lr:
        parts.append(
            "learning rates " + ", ".join(fmt_hyper(v) for v in new_lr) + " (with every weight decay)"
        )
    if new_wd:
        parts.append(
            "weight decays " + ", ".join(fmt_hyper(v) for v in new_wd) + " (with every learning rate)"
        )
    return text + (": " + "; ".join(parts) if parts else "") + "."
