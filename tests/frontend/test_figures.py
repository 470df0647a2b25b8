"""The figure functions, from a hand-built analysis record (tests/frontend/records.py)."""

from __future__ import annotations

import csv
import io
import math

import pytest

from frontend.figures import (
    AXIS_LR,
    AXIS_WD,
    epoch_curves_figure,
    figure_to_csv,
    kept_fractions_figure,
    landscape_figure,
    landscape_figures,
    pareto_front,
    risk_box_figure,
    sensitivity_figure,
    tradeoff_figure,
    weight_histogram_figure,
)
from frontend.figures import record as rec
from frontend.figures.common import ellipse_outline
from frontend.pages import study_data as sd
from tests.frontend.records import make_record


def _by_name(fig, name):
    return next(t for t in fig.data if t.name == name)


@pytest.fixture
def record():
    return make_record()


def test_landscape_has_contour_runs_ellipses_and_best(record):
    fig = landscape_figure(record, "base")
    names = [t.name for t in fig.data]
    assert [t.type for t in fig.data].count("contour") == 1
    assert names.count("runs") == 1
    assert "0.5-ROI ellipse" in names and "1.0-ROI ellipse" in names
    assert "best" in names
    # base has no diverged or missing points
    assert "diverged" not in names and "no result yet" not in names
    assert fig.layout.xaxis.title.text == AXIS_WD == "log10 weight decay"
    assert fig.layout.yaxis.title.text == AXIS_LR == "log10 learning rate"
    contour = next(t for t in fig.data if t.type == "contour")
    assert contour.colorbar.title.text == "top-1 accuracy (%)"


def test_ellipses_use_two_different_dash_styles(record):
    fig = landscape_figure(record, "u50")
    half, one = _by_name(fig, "0.5-ROI ellipse"), _by_name(fig, "1.0-ROI ellipse")
    assert half.line.dash != one.line.dash
    assert {half.line.dash, one.line.dash} == {"solid", "dash"}
    # the outline is closed and has the record's full axes
    xs, ys = list(one.x), list(one.y)
    assert math.isclose(xs[0], xs[-1], abs_tol=1e-9) and math.isclose(ys[0], ys[-1], abs_tol=1e-9)
    centre = record["results"]["u50"]["ellipse"]["1.0"]["centre"]
    radii = [math.hypot(x - centre[0], y - centre[1]) for x, y in zip(xs, ys, strict=True)]
    assert math.isclose(max(radii), 0.9 / 2, rel_tol=1e-3)
    assert math.isclose(min(radii), 0.5 / 2, rel_tol=2e-3)


def test_an_ellipse_keeps_its_level_style_when_the_other_level_has_none(record):
    # the demo's u50: too few points for a 0.5-ROI ellipse, so the 1.0-ROI one is drawn alone; it
    # must not take the 0.5 style (solid red), or the page's legend text would be wrong
    del record["results"]["u50"]["ellipse"]["0.5"]
    fig = landscape_figure(record, "u50")
    names = [t.name for t in fig.data if t.name and t.name.endswith("ROI ellipse")]
    assert names == ["1.0-ROI ellipse"]
    one = _by_name(fig, "1.0-ROI ellipse")
    assert (one.line.dash, one.line.color) == ("dash", "#111111")
    half = _by_name(landscape_figure(make_record(), "u50"), "0.5-ROI ellipse")
    assert (half.line.dash, half.line.color) == ("solid", "#d32f2f")


def test_a_colour_scale_without_width_still_has_a_readable_colour_bar(record):
    # a small easy study: the 85th percentile equals the best accuracy, so min == max
    record["colour_scale"]["min"] = record["colour_scale"]["max"]
    top = record["colour_scale"]["max"]
    contour = next(t for t in landscape_figure(record, "base").data if t.type == "contour")
    assert (contour.zmin, contour.zmax) == (top - 1.0, top)
    assert contour.colorbar.tickformat == ".2f"


def test_every_variant_shares_one_colour_range(record):
    figs = landscape_figures(record)
    assert list(figs) == ["base", "u50"]
    scale = record["colour_scale"]
    for fig in figs.values():
        contour = next(t for t in fig.data if t.type == "contour")
        runs = _by_name(fig, "runs")
        assert (contour.zmin, contour.zmax) == (scale["min"], scale["max"])
        assert (runs.marker.cmin, runs.marker.cmax) == (scale["min"], scale["max"])
    # a floor moves every variant's lower end together
    floored = landscape_figures(record, floor=91.0)
    assert {next(t for t in f.data if t.type == "contour").zmin for f in floored.values()} == {91.0}


def test_points_carry_run_ids_and_diverged_missing_are_marked(record):
    fig = landscape_figure(record, "u50")
    runs = _by_name(fig, "runs")
    run_ids = {row[0] for row in runs.customdata}
    assert 2000 in run_ids and 2011 in run_ids  # first seed's run id of (0,0) and (1,1)
    diverged = _by_name(fig, "diverged")
    assert [row[0] for row in diverged.customdata] == [2022]
    assert diverged.marker.symbol != runs.marker.symbol
    missing = _by_name(fig, "no result yet")
    assert list(missing.x) == [-3.6] and list(missing.y) == [-1.4]
    best = _by_name(fig, "best")
    assert best.customdata[0][0] == record["results"]["u50"]["best"]["run_ids"][0]
    # tooltip names lr, wd, the metric, the run and the point's mean ± std (seeds)
    for word in ("run", "lr", "wd", "top-1", "%{customdata[5]}"):
        assert word in runs.hovertemplate
    assert runs.customdata[0][5] == "88.00 (2 seeds)"  # the hand record's points have no std


def test_hover_reads_mean_spread_and_seeds():
    assert rec.seed_summary({"value": 91.789, "std": 0.2134, "seeds": 3}) == "91.79 ± 0.21 (3 seeds)"
    assert rec.seed_summary({"value": 91.8, "std": None, "seeds": 1}) == "91.80 (1 seed)"
    assert rec.seed_summary({"value": None, "std": None, "seeds": 0}) == "no result"


def test_scatter_colours_are_clipped_at_the_floor(record):
    fig = landscape_figure(record, "u50", floor=90.0)
    runs = _by_name(fig, "runs")
    assert min(runs.marker.color) == 90.0


def test_landscape_without_results_says_so(record):
    # a variant without a finished run is not in the analysis record at all (backend/analysis)
    record["variants"].remove("u50")
    del record["results"]["u50"]
    fig = landscape_figure(record, "u50")
    assert not fig.data
    assert "waiting for the first results" in fig.layout.annotations[0].text
    # with the grid's points from GET /landscape: the grid drawn, every point waiting, and the words
    grid_points = [
        {"x": x, "y": y, "lr": 10**y, "wd": 10**x, "status": "running"} for x in (-4.4, -4.0) for y in (-1.0,)
    ]
    fig = landscape_figure(record, "u50", grid_points=grid_points)
    waiting = _by_name(fig, "no result yet")
    assert list(waiting.x) == [-4.4, -4.0] and waiting.marker.symbol == "square-open"
    assert "waiting for the first results" in fig.layout.annotations[0].text


def test_grid_points_without_a_result_are_drawn_as_the_legend_says(record):
    """Failed and cancelled grid points (GET /landscape) are drawn, crossed out; waiting ones as
    grey squares; a point the record scored is never drawn twice."""
    grid_points = [
        {"x": -4.4, "y": -1.4, "lr": 0.0398, "wd": 3.98e-5, "status": "finished"},
        {"x": -4.0, "y": -0.2, "lr": 0.631, "wd": 1e-4, "status": "failed"},
        {"x": -3.6, "y": -0.2, "lr": 0.631, "wd": 2.51e-4, "status": "cancelled"},
        {"x": -4.4, "y": -0.2, "lr": 0.631, "wd": 3.98e-5, "status": "running"},
    ]
    fig = landscape_figure(record, "base", grid_points=grid_points)
    ended = _by_name(fig, "failed or cancelled")
    assert list(zip(ended.x, ended.y, strict=True)) == [(-4.0, -0.2), (-3.6, -0.2)]
    assert [row[3] for row in ended.customdata] == ["failed", "cancelled"]
    assert ended.marker.symbol == "square-x-open" != _by_name(fig, "no result yet").marker.symbol
    assert list(_by_name(fig, "no result yet").x) == [-4.4]
    assert "lr 0.631" not in ended.hovertemplate and ended.customdata[0][1] == "0.631"
    # hovers carry lr / wd as text, the one format of every page
    runs = _by_name(fig, "runs")
    assert {row[2] for row in runs.customdata} == {"3.98e-05", "0.0001", "0.000251"}


def test_every_landscape_of_a_study_shares_one_pair_of_axes(record):
    # u50's 1.0-ROI ellipse is long: alone it would stretch its own panel; shared, both line up
    record["results"]["u50"]["ellipse"]["1.0"].update(length=3.0, width=0.4)
    figs = landscape_figures(record)
    ranges = {(tuple(f.layout.xaxis.range), tuple(f.layout.yaxis.range)) for f in figs.values()}
    assert len(ranges) == 1
    ((x_range, y_range),) = ranges
    # the grid is inside, and an ellipse stretches the view by at most one grid width (0.8) a side
    assert x_range[0] < -4.4 and x_range[1] > -3.6 and y_range[0] < -1.4 and y_range[1] > -0.6
    widest = 0.8 + 0.8 + 0.8  # the grid and one grid width each side, then padded by 6 %
    assert x_range[0] >= -4.4 - 0.8 - 0.06 * widest - 1e-9 and x_range[1] <= -3.6 + 0.8 + 0.06 * widest + 1e-9


def test_a_degenerate_ellipse_is_a_marked_segment_inside_the_grid(record):
    from frontend.figures import record as rec

    record["results"]["u50"]["ellipse"]["1.0"].update(length=40.0, width=0.0, angle_deg=30.0)
    fig = landscape_figure(record, "u50", axis_ranges=rec.study_axis_ranges(record))
    segment = _by_name(fig, "1.0-ROI ellipse (width 0: a segment)")
    assert segment.mode == "lines+markers" and len(segment.x) == 2
    assert all(-4.4 - 1e-9 <= x <= -3.6 + 1e-9 for x in segment.x)
    assert all(-1.4 - 1e-9 <= y <= -0.6 + 1e-9 for y in segment.y)
    assert rec.degenerate_notes(record, "u50") == [
        "The 1.0-ROI ellipse has width 0 (its 7 points lie on a line): drawn as a marked segment along that "
        "line, clipped to the grid."
    ]
    assert rec.degenerate_notes(record, "base") == []
    # the 40-unit line does not widen the shared view
    x_range, _ = rec.study_axis_ranges(record)
    assert x_range[1] - x_range[0] < 1.0


def test_a_per_variant_colour_scale_spans_the_variants_own_values(record):
    from frontend.figures import record as rec

    low, high = rec.variant_colour_range(record, "u50")
    values = [p["value"] for p in rec.landscape_points(record, "u50") if p["value"] is not None]
    assert (low, high) == (min(values), max(values))
    contour = next(t for t in landscape_figure(record, "u50", zrange=(low, high)).data if t.type == "contour")
    assert (contour.zmin, contour.zmax) == (low, high)


def test_ellipse_outline_rotates():
    xs, ys = ellipse_outline([0.0, 0.0], 2.0, 1.0, 90.0, n=5)
    assert math.isclose(xs[0], 0.0, abs_tol=1e-12) and math.isclose(ys[0], 1.0)


def test_risk_boxes_base_first_absolute_and_relative(record):
    series = sd.risk_series(record)
    absolute = risk_box_figure(series)
    relative = risk_box_figure(series, relative=True)
    assert [t.name for t in absolute.data] == ["base", "u50"]
    assert list(absolute.data[0].y) == record["results"]["base"]["risk"]["values"]
    assert math.isclose(relative.data[1].y[2], 0.44)  # fraction shown in percent
    assert "pp" in absolute.layout.yaxis.title.text and "%" in relative.layout.yaxis.title.text


def test_pareto_front_and_tradeoff_figure():
    rows = [
        {"variant": "base", "top1": 92.0, "latency_ms": 4.0},
        {"variant": "u50", "top1": 91.0, "latency_ms": 2.0},
        {"variant": "bad", "top1": 90.0, "latency_ms": 3.0},  # slower and worse than u50
        {"variant": "q8", "top1": 91.5, "latency_ms": None},
    ]
    front = pareto_front((r["latency_ms"], r["top1"], r["variant"]) for r in rows)
    assert [p[2] for p in front] == ["u50", "base"]
    # the front drawn is the one given (the API's, per runtime), whatever the page's rows suggest
    fig = tradeoff_figure(rows, cost_key="latency_ms", cost_label="latency (ms)", front=["base", "u50"])
    assert [t.name for t in fig.data] == ["Pareto front", "variants"]
    assert list(fig.data[0].x) == [2.0, 4.0] and list(fig.data[0].y) == [91.0, 92.0]
    assert list(fig.data[1].text) == ["base", "u50", "bad"]
    assert list(fig.data[1].marker.symbol) == ["diamond", "diamond", "circle"]
    assert fig.layout.xaxis.title.text == "latency (ms)"
    given = tradeoff_figure(rows, cost_key="latency_ms", cost_label="latency (ms)", front=["bad", "base"])
    assert list(given.data[0].x) == [3.0, 4.0]
    unmarked = tradeoff_figure(rows, cost_key="latency_ms", cost_label="latency (ms)")
    assert [t.name for t in unmarked.data] == ["variants"]  # no front of its own


def test_other_figures_draw_their_inputs():
    kept = kept_fractions_figure("n50", {"layer1.0.conv1": 0.5, "layer2.0.conv1": 0.75})
    assert list(kept.data[0].y) == [0.5, 0.75]
    hist = weight_histogram_figure(
        "conv1",
        {"before": {"edges": [0, 1, 2], "counts": [3, 4]}, "after": {"edges": [0, 1, 2], "counts": [0, 4]}},
    )
    assert [t.name for t in hist.data] == ["before", "after"] and list(hist.data[0].x) == [0.5, 1.5]
    curves = epoch_curves_figure(
        [
            {"epoch": 1, "train_loss": 2.0, "val_loss": 1.5, "top1": 50.0, "top5": 80.0, "lr": 0.1},
            {"epoch": 2, "train_loss": 1.0, "val_loss": 1.2, "top1": 60.0, "top5": 85.0, "lr": 0.01},
        ]
    )
    names = [t.name for t in curves.data]
    assert {"train loss", "val loss", "val top-1", "val top-5", "learning rate"} <= set(names)
    assert list(next(t for t in curves.data if t.name == "val top-1").y) == [50.0, 60.0]
    scan = sensitivity_figure([{"label": "base · structured", "fractions": [0, 0.5], "accuracy": [92, 80]}])
    assert list(scan.data[0].y) == [92, 80]


def test_figure_csv_holds_every_point(record):
    fig = landscape_figure(record, "base")
    rows = list(csv.DictReader(io.StringIO(figure_to_csv(fig.to_plotly_json()))))
    runs = [r for r in rows if r["trace"] == "runs"]
    assert len(runs) == 9
    assert {r["customdata_0"] for r in runs} >= {"1000", "1011"}
    contour = [r for r in rows if r["trace"].endswith("(contour)")]
    assert len(contour) == 9 and float(max(contour, key=lambda r: float(r["value"]))["value"]) == 92.0


def test_tables_and_verdicts_from_the_record(record):
    rows, columns = sd.ellipse_table(record)
    assert [(r["variant"], r["level"]) for r in rows] == [
        ("base", 0.5),
        ("base", 1.0),
        ("u50", 0.5),
        ("u50", 1.0),
    ]
    assert rows[1]["length"] == 0.9 and rows[1]["width"] == 0.5
    assert {c["id"] for c in columns} >= {"length", "width", "angle_deg", "n_points"}
    risk_rows, _ = sd.risk_table(record)
    assert risk_rows[0]["mean"] == 0.4 and math.isclose(risk_rows[0]["relative_mean"], 0.44)
    verdicts = sd.shift_verdicts(record)
    assert verdicts[0].startswith("u50, 0.5-ROI: no significant shift")
    assert "shift towards larger lr" in verdicts[1] and "0.004" in verdicts[1]


def test_figures_from_a_real_analysis_record():
    """The same drawing from what backend.analysis.analyse makes of the synthetic 5 x 5 study."""
    from backend.analysis import analyse
    from tests.frontend.synthetic import rows

    table = [dict(r, run_id=n + 1) for n, r in enumerate(rows(seeds=2))]
    record = analyse(table).to_dict()
    figs = landscape_figures(record)
    assert list(figs) == ["base", "u50"]
    scale = record["colour_scale"]
    for variant, fig in figs.items():
        contour = next(t for t in fig.data if t.type == "contour")
        assert (contour.zmin, contour.zmax) == (scale["min"], scale["max"])
        dashes = {t.line.dash for t in fig.data if t.name and t.name.endswith("ROI ellipse")}
        assert dashes == {"solid", "dash"}, variant
        best = _by_name(fig, "best")
        assert best.customdata[0][0] == record["results"][variant]["best"]["run_ids"][0]
    diverged = _by_name(figs["u50"], "diverged")
    assert len(diverged.x) == 1 and diverged.customdata[0][0] in {99, 100}
    ellipse_rows, _ = sd.ellipse_table(record)
    base_half = next(r for r in ellipse_rows if r["variant"] == "base" and r["level"] == 0.5)
    assert base_half["length"] == record["results"]["base"]["ellipse"]["0.5"]["length"]


# --- user text in figures ---------------------------------------------------------------------------
# Plotly draws a subset of HTML in trace names, legends, tick labels, hover labels and annotations:
# an imported variant named like this rendered a live link. It must come out as inert text.
MARKUP = '<a href="https://evil">x</a>'


def _strings(value):
    """Every string inside a figure's JSON."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _assert_inert(fig) -> None:
    shown = list(_strings(fig.to_plotly_json()))
    assert not [s for s in shown if "<a" in s or "</a" in s], shown
    assert any("&lt;a href=" in s for s in shown)  # the name is there, as text


def test_plotly_text_escapes_markup_and_template_fields():
    from frontend.figures.common import plain_text, plotly_text

    assert plotly_text(MARKUP) == '&lt;a href="https://evil"&gt;x&lt;/a&gt;'
    assert plotly_text("a & b %{x}") == "a &amp; b %&#123;x}"
    assert plain_text(plotly_text(MARKUP + " %{y} & c")) == MARKUP + " %{y} & c"
    assert plotly_text(3) == "3"


def test_variant_names_with_markup_are_inert_in_every_figure(record):
    rows = [
        {"variant": MARKUP, "top1": 90.0, "latency_ms": 2.0},
        {"variant": "base", "top1": 91.0, "latency_ms": 3.0},
    ]
    figures = {
        "tradeoff": tradeoff_figure(rows, cost_key="latency_ms", cost_label="latency (ms)"),
        "risk": risk_box_figure([{"variant": MARKUP, "values": [0.1, 0.2], "relative_values": [0.01]}]),
        "kept": kept_fractions_figure(MARKUP, {MARKUP: 0.5}),
        "kept, none": kept_fractions_figure(MARKUP, {}),
        "histogram": weight_histogram_figure(MARKUP, {MARKUP: {"edges": [0, 1], "counts": [3]}}),
        "histogram, none": weight_histogram_figure(MARKUP, {}),
        "sensitivity": sensitivity_figure([{"label": MARKUP, "fractions": [0, 0.5], "accuracy": [92, 80]}]),
        "landscape, no runs": landscape_figure({"variants": [MARKUP], "results": {}}, MARKUP),
    }
    for label, fig in figures.items():
        try:
            _assert_inert(fig)
        except AssertionError as failure:
            raise AssertionError(label) from failure
    # the CSV of a figure holds the name as the user wrote it
    rows = list(csv.DictReader(io.StringIO(figure_to_csv(figures["tradeoff"].to_plotly_json()))))
    assert MARKUP in {r.get("text") for r in rows}
