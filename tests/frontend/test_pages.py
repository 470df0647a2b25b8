"""The dashboard against a real running server (uvicorn + create_app on a temp SQLite database),
driven by Debian's chromium through Playwright. Saves docs/screenshots/{studies,study,run}.png."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.frontend.live import REPO, live_server
from tests.frontend.synthetic import csv_text

SCREENSHOTS = REPO / "docs" / "screenshots"
DATA_DIRS: dict[str, Path] = {}  # server base URL -> its data dir


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("prunescape-data")
    with live_server(data_dir) as base:
        DATA_DIRS[base] = data_dir
        yield base


@pytest.fixture(scope="module")
def imported_study(server) -> dict:
    answer = httpx.post(
        server + "/api/v1/studies/import",
        files={"file": ("synthetic.csv", csv_text(), "text/csv")},
        data={"name": "synthetic 5x5 import"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    study = answer.json()
    analysis = httpx.get(f"{server}/api/v1/studies/{study['id']}/analysis", timeout=60)
    assert analysis.status_code == 200, analysis.text[:2000]
    return {"study": study, "analysis": analysis.json()}


def test_api_and_docs_are_not_shadowed_by_the_dashboard(server):
    studies = httpx.get(server + "/api/v1/studies", timeout=30)
    assert studies.status_code == 200 and studies.headers["content-type"].startswith("application/json")
    missing = httpx.get(server + "/api/v1/no-such-endpoint", timeout=30)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/json")
    docs = httpx.get(server + "/docs", timeout=30)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert httpx.get(server + "/openapi.json", timeout=30).json()["info"]["title"] == "prunescape"
    for path in ("/", "/studies/1", "/runs/1", "/new"):
        page = httpx.get(server + path, timeout=30)
        assert page.status_code == 200 and "_dash-config" in page.text, path


def _plot_traces(page, graph_name: str) -> list[dict]:
    """Type, name and line dash of every trace of the dcc.Graph {'type': 'fig', 'name': graph_name}."""
    return page.evaluate(
        """(name) => {
            const graphs = [...document.querySelectorAll('.js-plotly-plot')];
            const el = graphs.find(g => (g.closest('[id]') || {}).id.includes('"name":"' + name + '"'));
            return el ? el.data.map(t => ({type: t.type || 'scatter', name: t.name,
                                           dash: t.line && t.line.dash, zmin: t.zmin, zmax: t.zmax})) : null;
        }""",
        graph_name,
    )


@pytest.mark.slow
@pytest.mark.browser
def test_study_page_landscapes_tables_and_click_to_run(server, imported_study, page):
    study_id = imported_study["study"]["id"]
    analysis = imported_study["analysis"]
    page.goto(f"{server}/studies/{study_id}")
    page.wait_for_function(
        "() => document.querySelectorAll('#study-landscapes .js-plotly-plot .contourlayer .contour').length >= 1"
    )
    page.wait_for_function(
        "() => document.querySelectorAll('#study-landscapes .js-plotly-plot').length === 2"
    )
    scale = analysis["colour_scale"]
    for variant in ("base", "u50"):
        traces = _plot_traces(page, f"landscape-{variant}")
        assert traces, variant
        contours = [t for t in traces if t["type"] == "contour"]
        assert len(contours) == 1
        assert contours[0]["zmin"] == pytest.approx(scale["min"], abs=0.051)  # slider rounds to 0.1
        assert contours[0]["zmax"] == pytest.approx(scale["max"])
        ellipses = {t["name"]: t["dash"] for t in traces if t["name"] and t["name"].endswith("ROI ellipse")}
        assert ellipses == {"0.5-ROI ellipse": "solid", "1.0-ROI ellipse": "dash"}
    axis_titles = page.locator("#study-landscapes .xtitle").all_text_contents()
    assert set(axis_titles) == {"log10 weight decay"}
    assert "log10 learning rate" in page.locator("#study-landscapes .ytitle").first.text_content()
    assert "diverged" in page.locator("#study-landscapes").inner_text()

    # the two tables hold the analysis' numbers
    ellipse_text = page.locator("#study-ellipse-table").inner_text()
    length = analysis["results"]["u50"]["ellipse"]["1.0"]["length"]
    assert f"{length:.4g}"[:5] in ellipse_text
    risk_text = page.locator("#study-risk-table").inner_text()
    assert f"{analysis['results']['u50']['risk']['mean']:.4g}"[:5] in risk_text
    verdict = analysis["results"]["u50"]["shift"]["1.0"]["verdict"]
    assert verdict in page.locator("#study-shift").inner_text()
    # the summary names each variant's best top-1; panels with nothing to draw are one line
    compare = httpx.get(f"{server}/api/v1/studies/{study_id}/compare", timeout=30).json()
    best_text = page.locator("#study-best").inner_text()
    for row in compare["variants"]:
        assert f"{row['name']} {row['best_top1']:.2f} %" in best_text
    assert "imported study holds results" in page.locator("#study-cost-note").inner_text()
    assert not page.locator("#study-cost").is_visible()
    assert not page.locator("#study-hist-panel").is_visible()
    page.wait_for_timeout(500)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "study.png"), full_page=True)

    # clicking the best point of the base landscape opens its run
    best_run = analysis["results"]["base"]["best"]["run_ids"][0]
    star = page.locator("#study-landscapes .js-plotly-plot").first.locator(
        ".scatterlayer .trace:last-child .point"
    )
    box = star.first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(re.compile(rf".*/runs/{best_run}$"))
    page.wait_for_selector(f"text=Run {best_run}")
    page.wait_for_selector("#run-details table")
    assert "learning rate" in page.locator("#run-details").inner_text()
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "run.png"), full_page=True)
    # the run page is addressable: a reload shows the same run
    page.reload()
    page.wait_for_selector(f"text=Run {best_run}")
    assert not page.errors


@pytest.mark.slow
@pytest.mark.browser
def test_studies_page_lists_the_study(server, imported_study, page):
    page.goto(server + "/")
    link = page.locator("#studies-list a", has_text="synthetic 5x5 import")
    link.wait_for()
    row = page.locator("tr.study-row", has=page.locator("a", has_text="synthetic 5x5 import"))
    text = row.inner_text()
    assert "base, u50" in text and "100 / 100 runs" in text
    best = imported_study["analysis"]["results"]["base"]["best"]["value"]
    page.wait_for_function("() => document.querySelector('#studies-list').innerText.includes('base ')")
    assert f"{best:.2f}" in row.inner_text()
    page.fill("#studies-filter", "no study has this name")
    page.wait_for_selector("text=No study matches.")
    page.fill("#studies-filter", "")
    link.wait_for()
    page.screenshot(path=str(SCREENSHOTS / "studies.png"), full_page=True)
    link.click()
    page.wait_for_url(re.compile(rf".*/studies/{imported_study['study']['id']}$"))


@pytest.mark.slow
@pytest.mark.browser
def test_new_study_form_shows_field_errors_then_creates(server, page):
    page.goto(server + "/new")
    page.fill("#new-name", "form test")
    page.wait_for_selector("text=This will plan 21 runs")
    # the preview is the API's planner: per variant, and the grid's values
    rows = page.locator("#new-plan-table tbody tr").all_inner_texts()
    assert [r.split() for r in rows] == [
        ["base", "base", "9", "0", "0", "1", "0", "10", "—", "—"],
        ["u50", "structured", "9", "1", "0", "1", "0", "11", "1", "0"],
    ]
    assert page.locator("#new-plan-lr").inner_text() == "0.0398, 0.1, 0.251"
    assert page.locator("#new-plan-wd").inner_text() == "3.98e-05, 0.0001, 0.000251"
    page.fill("#new-size", "5")
    page.wait_for_selector("text=This will plan 53 runs")
    assert page.locator("#new-plan-lr").inner_text().count(",") == 4
    page.fill("#new-size", "3")
    page.wait_for_selector("text=This will plan 21 runs")
    page.fill("#new-step", "0")
    page.click("#new-submit")
    step_error = page.locator('[id*="grid.step"]')
    page.wait_for_function(
        """() => { const e = [...document.querySelectorAll('.error')].find(d => d.id.includes('grid.step'));
                  return e && e.innerText.length > 0; }"""
    )
    assert "greater than 0" in step_error.inner_text()
    assert page.url.endswith("/new")
    page.fill("#new-step", "0.4")
    page.click("#new-submit")
    page.wait_for_url(re.compile(r".*/studies/\d+$"))
    study_id = page.url.rsplit("/", 1)[1]
    created = httpx.get(f"{server}/api/v1/studies/{study_id}", timeout=30).json()
    assert created["name"] == "form test" and created["spec"]["grid"]["step"] == 0.4
    assert created["run_counts"]["total"] == 21  # what the form said it would plan


def _finish_runs(db_path: Path, study_id: int, count: int) -> int:
    """Stand in for a worker: mark `count` pending base train runs succeeded, as a worker would."""
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "select runs.id from runs join variants on variants.id = runs.variant_id "
                "where runs.study_id = ? and runs.kind = 'train' and variants.kind = 'base' "
                "and runs.status in ('pending', 'queued') order by runs.id limit ?",
                (study_id, count),
            )
        ]
        for n, run_id in enumerate(ids):
            conn.execute(
                "update runs set status = 'succeeded', top1 = ?, top5 = ?, epochs_done = 1, attempts = 1, "
                "finished_at = CURRENT_TIMESTAMP where id = ?",
                (80.0 + n, 95.0, run_id),
            )
    return len(ids)


@pytest.mark.slow
@pytest.mark.browser
def test_running_study_progress_advances_without_reload(server, page):
    spec = {
        "name": "live progress",
        "dataset": {"name": "digits"},
        "model": {"name": "digits_cnn"},
        "recipe": {"epochs": 1, "batch_size": 64},
        "grid": {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.4, "size": 3},
        "variants": [{"name": "base", "kind": "base"}],
    }
    created = httpx.post(server + "/api/v1/studies", json=spec, timeout=60)
    assert created.status_code == 201, created.text
    study = created.json()
    total = study["progress"]["total"]
    page.goto(f"{server}/studies/{study['id']}")
    progress = page.locator("#study-progress")
    progress.get_by_text(f"0 / {total} runs").wait_for()
    # nothing measured yet: one line instead of empty plots
    page.locator("#study-cost-note", has_text="Waiting for 1 measure run").wait_for()
    assert not page.locator("#study-cost").is_visible()
    assert "waiting for 1 measure run" in page.locator("#study-hist-note").inner_text()
    page.evaluate("window.__marker = 'no reload'")
    assert _finish_runs(DATA_DIRS[server] / "prunescape.db", study["id"], 3) == 3
    progress.get_by_text(f"3 / {total} runs").wait_for(timeout=20_000)
    assert _finish_runs(DATA_DIRS[server] / "prunescape.db", study["id"], 3) == 3
    progress.get_by_text(f"6 / {total} runs").wait_for(timeout=20_000)
    # the landscape appeared as results came in, and the page never reloaded
    page.wait_for_function(
        "() => document.querySelectorAll('#study-landscapes .js-plotly-plot').length === 1"
    )
    assert page.evaluate("window.__marker") == "no reload"


def _count_callbacks(page) -> list[str]:
    """Every Dash callback request the page makes from now on (their outputs), and any WebSocket."""
    made: list[str] = []
    page.on(
        "request",
        lambda request: (
            made.append((request.post_data_json or {}).get("output", "?"))
            if "/_dash-update-component" in request.url
            else None
        ),
    )
    page.on("websocket", lambda ws: made.append(f"websocket {ws.url}"))
    return made


def _settle(page, made: list[str], quiet_ms: int = 1_500) -> int:
    """Wait for network idle, then until the page's first chain of callbacks has been quiet for
    `quiet_ms` (a slow CPU leaves gaps longer than network idle's 500 ms inside that chain)."""
    page.wait_for_load_state("networkidle")
    while True:
        seen = len(made)
        page.wait_for_timeout(quiet_ms)
        if len(made) == seen:
            return seen


def _prop(page, component_id: str, prop: str):
    """A prop of a component as the Dash renderer holds it."""
    return page.evaluate(
        "([id, prop]) => window.dash_component_api.getLayout(id).props[prop]", [component_id, prop]
    )


@pytest.mark.slow
@pytest.mark.browser
def test_finished_study_and_run_pages_stop_polling(server, imported_study, page):
    """A finished study's page, and an ended run's, read the API once and then go quiet: no poll,
    no WebSocket, so the browser reaches network idle."""
    study_id = imported_study["study"]["id"]
    made = _count_callbacks(page)
    page.goto(f"{server}/studies/{study_id}")
    page.wait_for_function(
        "() => document.querySelectorAll('#study-landscapes .js-plotly-plot').length === 2"
    )
    page.locator("#study-best").wait_for()
    settled = _settle(page, made)
    assert made.count("..study-data.data...study-poll.disabled..") == 1  # read once
    assert _prop(page, "study-poll", "disabled") is True
    assert not page.locator("#study-cancel").is_visible()  # nothing left to cancel
    assert page.locator("#study-delete").is_visible()
    page.wait_for_timeout(8_000)  # more than two POLL_MS
    assert made[settled:] == []
    assert not any(output.startswith("websocket") for output in made)

    run_id = imported_study["analysis"]["results"]["base"]["best"]["run_ids"][0]
    page.goto(f"{server}/runs/{run_id}")
    page.locator("#run-header", has_text="succeeded").wait_for()
    settled = _settle(page, made)
    assert _prop(page, "run-poll", "disabled") is True
    assert not page.locator("#run-retry").is_visible()
    page.wait_for_timeout(7_000)
    assert made[settled:] == []
    assert not page.errors
