"""Issue 19 in the browser: the dashboard as a daily tool, one test per numbered item, against a
real served study (uvicorn + create_app on a temp SQLite database, Debian's chromium through
Playwright). Worker results are written into the database as a worker would (worker_standin).
Item 3 (/docs served with no request leaving the server) is test_security_pages.py's
test_docs_are_served_whole_by_this_server_under_the_csp. Saves docs/screenshots/
{studies-page2,runs-table,not-found}.png (docs-offline.png is taken there)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.frontend.live import REPO, live_server
from tests.frontend.synthetic import csv_text
from tests.frontend.worker_standin import claim_run, end_run, finish_study

SCREENSHOTS = REPO / "docs" / "screenshots"
API = "/api/v1"
BASE_ONLY = [{"name": "base", "kind": "base"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("prunescape-daily")
    with live_server(data_dir) as base:
        yield {"url": base, "db": data_dir / "prunescape.db", "artefacts": data_dir / "artifacts"}


@pytest.fixture(scope="module")
def imported(server) -> dict:
    """The synthetic 5 x 5 study (base + u50, two seeds, top-5 too), as a CSV import."""
    answer = httpx.post(
        f"{server['url']}{API}/studies/import",
        files={"file": ("synthetic.csv", csv_text(), "text/csv")},
        data={"name": "synthetic import"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def _degenerate_csv() -> str:
    """base: a bowl; u50: only the learning rate matters, so its ROIs are one row of the grid (points
    on a line: a width-0 ellipse). No top-5 column at all."""
    lines = ["variant,lr,wd,seed,top1"]
    for variant in ("base", "u50"):
        for i in range(-2, 3):
            for j in range(-2, 3):
                lr, wd = 0.1 * 10 ** (0.2 * i), 1e-4 * 10 ** (0.2 * j)
                top1 = (
                    92 - 5 * ((0.2 * i) ** 2 + (0.2 * j) ** 2)
                    if variant == "base"
                    else 91 - 3 * abs(i) + 0.01 * j
                )
                lines.append(f"{variant},{lr:.12g},{wd:.12g},0,{top1:.4f}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def degenerate(server) -> dict:
    answer = httpx.post(
        f"{server['url']}{API}/studies/import",
        files={"file": ("line.csv", _degenerate_csv(), "text/csv")},
        data={"name": "degenerate u50, no top-5"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def _create(url: str, name: str, variants: list[dict] | None = None, size: int = 3) -> dict:
    spec = {
        "name": name,
        "dataset": {"name": "digits"},
        "model": {"name": "digits_cnn"},
        "recipe": {"epochs": 1, "batch_size": 64},
        "grid": {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.4, "size": size},
        "variants": variants or BASE_ONLY,
    }
    created = httpx.post(f"{url}{API}/studies", json=spec, timeout=60)
    assert created.status_code == 201, created.text
    return created.json()


def _sql(db: Path, statement: str, *params) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(statement, params).fetchall()


def _train_runs(db: Path, study_id: int) -> list[tuple[int, int, int]]:
    return _sql(
        db,
        "select runs.id, grid_i, grid_j from runs join variants on variants.id = runs.variant_id "
        "where runs.study_id = ? and runs.kind = 'train' and variants.kind = 'base' order by runs.id",
        study_id,
    )


def _choose(page, dropdown: str, label: str) -> None:
    """Pick `label` in a Dash dropdown as a user does: open it, click the option."""
    page.click(dropdown)
    page.locator(".dash-dropdown-option", has=page.get_by_text(label, exact=True)).click()
    page.keyboard.press("Escape")


def _pattern_id(**parts) -> str:
    """The DOM id Dash gives a pattern-matching id."""
    return "[id='" + json.dumps(parts, sort_keys=True, separators=(",", ":")) + "']"


def _traces(page, graph_name: str) -> list[dict]:
    return page.evaluate(
        """(name) => {
            const graphs = [...document.querySelectorAll('.js-plotly-plot')];
            const el = graphs.find(g => (g.closest('[id]') || {}).id.includes('"name":"' + name + '"'));
            return el ? el.data.map(t => ({type: t.type || 'scatter', name: t.name, x: t.x, y: t.y,
                                           zmin: t.zmin, zmax: t.zmax, custom: t.customdata})) : null;
        }""",
        graph_name,
    )


def _axes(page, graph_name: str) -> dict:
    return page.evaluate(
        """(name) => {
            const graphs = [...document.querySelectorAll('.js-plotly-plot')];
            const el = graphs.find(g => (g.closest('[id]') || {}).id.includes('"name":"' + name + '"'));
            return {x: el._fullLayout.xaxis.range, y: el._fullLayout.yaxis.range};
        }""",
        graph_name,
    )


def _enabled_visible_buttons(page) -> int:
    return page.evaluate(
        "() => [...document.querySelectorAll('#page button')].filter(b => b.offsetParent !== null && !b.disabled).length"
    )


def _wait_landscapes(page, n: int) -> None:
    page.wait_for_function(
        f"() => document.querySelectorAll('#study-landscapes .js-plotly-plot').length === {n}", timeout=60_000
    )


# --- 1. every study reachable: paged, sorted and filtered by the server ---------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_1_the_studies_list_pages_sorts_and_filters_over_every_study(server, page):
    url = server["url"]
    for n in range(52):
        _create(url, f"paged {n:02d}", size=1)
    _create(url, "not in the filter", size=1)
    page.goto(url + "/")
    count = page.locator("#studies-count")
    count.get_by_text("of 53").wait_for()
    page.fill("#studies-filter", "paged")
    count.get_by_text("studies 1–25 of 52 · page 1 of 3").wait_for()  # the filter has applied
    names = page.locator("#studies-list .study-link")
    assert names.first.inner_text() == "paged 51"  # newest first
    page.click("#studies-next")
    count.get_by_text("studies 26–50 of 52 · page 2 of 3").wait_for()
    page.locator("#studies-list .study-link", has_text="paged 26").wait_for()
    assert names.first.inner_text() == "paged 26" and names.count() == 25
    page.wait_for_timeout(300)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "studies-page2.png"), full_page=True)
    page.click("#studies-next")
    count.get_by_text("studies 51–52 of 52 · page 3 of 3").wait_for()
    assert names.all_inner_texts() == ["paged 01", "paged 00"]  # the two oldest are reachable
    assert page.locator("#studies-next").is_disabled()
    # "oldest" sorts all 52 on the server (back to the first page), not the 25 shown
    _choose(page, "#studies-sort", "oldest")
    count.get_by_text("studies 1–25 of 52 · page 1 of 3").wait_for()
    page.locator("#studies-list .study-link", has_text="paged 00").wait_for()
    assert names.first.inner_text() == "paged 00"
    # the text filter too: one study of all, counted
    page.fill("#studies-filter", "paged 37")
    count.get_by_text("studies 1–1 of 1 · page 1 of 1").wait_for()
    assert names.all_inner_texts() == ["paged 37"]
    page.fill("#studies-filter", "% no study has this")
    page.get_by_text("No study matches.").wait_for()
    assert not page.errors


# --- 2. a runs table, and every grid point drawn as the legend says -------------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_2_runs_table_and_failed_cancelled_waiting_points_on_the_landscape(server, page):
    url, db = server["url"], server["db"]
    study = _create(url, "runs table")
    runs = _train_runs(db, study["id"])
    by_point = {(i, j): run_id for run_id, i, j in runs}
    for k, (i, j) in enumerate([(0, 0), (-1, -1), (-1, 0), (0, -1), (1, 0)]):
        _sql(db, "update runs set status='succeeded', top1=?, attempts=1, epochs_done=1 where id=?",
             85.0 + k, by_point[(i, j)])  # fmt: skip
    failed_id, cancelled_id = by_point[(1, 1)], by_point[(-1, 1)]
    _sql(db, "update runs set status='failed', attempts=1, error=? where id=?",
         "Traceback (most recent call last):\nRuntimeError: CUDA error: out of memory", failed_id)  # fmt: skip
    _sql(db, "update runs set status='cancelled' where id=?", cancelled_id)

    page.goto(f"{url}/studies/{study['id']}")
    _wait_landscapes(page, 1)
    page.locator(
        "#study-progress", has_text="7 / 10 runs ended: 5 succeeded, 1 failed, 1 cancelled; 3 to go"
    ).wait_for()
    traces = {t["name"]: t for t in _traces(page, "landscape-base")}
    ended = traces["failed or cancelled"]
    assert sorted(row[3] for row in ended["custom"]) == ["cancelled", "failed"]
    assert len(traces["no result yet"]["x"]) == 2  # the two waiting grid points
    assert len(traces["runs"]["x"]) == 5
    legend = page.locator("#study-scale-note").inner_text()
    assert "crossed grey square: failed or cancelled" in legend and "grey square: no result yet" in legend

    table = page.locator("#runs-list")
    page.locator("#runs-count", has_text="runs 1–10 of 10").wait_for()
    _choose(page, "#runs-status", "failed")
    page.locator("#runs-count", has_text="runs 1–1 of 1").wait_for()
    row = table.locator("tr.run-row")
    assert row.count() == 1 and "RuntimeError: CUDA error: out of memory" in row.inner_text()
    page.click("#runs-status .dash-dropdown-clear")  # any state again
    page.locator("#runs-count", has_text="runs 1–10 of 10").wait_for()
    _choose(page, "#runs-sort", "best top-1 first")
    page.wait_for_function(
        "() => document.querySelector('#runs-list tr.run-row td:nth-child(9)').innerText === '89.00'"
    )
    tops = [t for t in table.locator("tr.run-row td:nth-child(9)").all_inner_texts()]
    assert tops[:5] == ["89.00", "88.00", "87.00", "86.00", "85.00"] and tops[5:] == ["—"] * 5
    page.wait_for_timeout(300)
    page.locator("#study-runs").screenshot(path=str(SCREENSHOTS / "runs-table.png"))
    # every run is reachable, and a failed one is retried from its page
    _choose(page, "#runs-sort", "run id")
    table.locator("a.run-link", has_text=f"run {failed_id}").click()
    page.wait_for_url(re.compile(rf".*/runs/{failed_id}$"))
    page.locator("#run-retry").wait_for()
    assert page.locator("#run-retry").is_enabled()
    assert not page.errors


# --- 4. downloads hold the numbers a user means, named for what they are ---------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_4_downloads_are_named_and_hold_named_numbers(server, imported, page):
    url, db = server["url"], server["db"]
    sid = imported["id"]
    page.goto(f"{url}/studies/{sid}")
    _wait_landscapes(page, 2)
    button = page.locator(_pattern_id(name="landscape-base", type="study-csv-btn"))
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.suggested_filename == f"study-{sid}-landscape-base-top1.csv"
    text = Path(download.path()).read_text()
    header = text.splitlines()[0]
    assert header.startswith("variant,lr,wd,log10_lr,log10_wd,grid_i,grid_j,status,top1_mean,top1_std,seeds")
    assert "customdata" not in text and "trace" not in header
    analysis = httpx.get(f"{url}{API}/studies/{sid}/analysis", timeout=60).json()
    best = analysis["results"]["base"]["best"]["value"]
    assert f",{best:.10g}," in text  # the accuracy itself, not a colour clipped at the floor

    with page.expect_download() as info:
        page.locator(_pattern_id(name="ellipses", type="table-csv-btn")).click()
    assert info.value.suggested_filename == f"study-{sid}-ellipses-top1.csv"
    assert Path(info.value.path()).read_text().splitlines()[0].startswith("variant,ROI level (pp),points,")

    with page.expect_download() as info:
        page.click("#study-export-csv")
    assert info.value.suggested_filename == f"study-{sid}-runs.csv"
    assert Path(info.value.path()).read_text().startswith("variant,kind,lr,wd,grid_i,grid_j,seed,status,top1")
    with page.expect_download() as info:
        page.click("#study-export-json")
    assert info.value.suggested_filename == f"study-{sid}-runs.json"
    assert json.loads(Path(info.value.path()).read_text())["study"]["id"] == sid

    # a run's file: study, run, variant and kind in its name
    native = _create(url, "named artefact")
    run_id = _train_runs(db, native["id"])[0][0]
    folder = server["artefacts"] / "named"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pt").write_bytes(b"weights")
    _sql(db, "insert into artefacts (run_id, kind, path, bytes, created_at) values (?, 'model', 'named/model.pt', 7, "
         "CURRENT_TIMESTAMP)", run_id)  # fmt: skip
    page.goto(f"{url}/runs/{run_id}")
    link = page.locator("a.artefact-link")
    link.wait_for()
    expected = f"study-{native['id']}-run-{run_id}-base-model.pt"
    assert link.inner_text() == expected
    with page.expect_download() as info:
        link.click()
    assert info.value.suggested_filename == expected
    assert not page.errors


# --- 5. states say what happened -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_5_progress_status_cancel_question_filter_words_and_auth_mode(server, page):
    url, db = server["url"], server["db"]
    study = _create(url, "states")
    sid = study["id"]
    total = study["progress"]["total"]
    running = claim_run(db, sid)
    page.goto(f"{url}/studies/{sid}")
    page.locator("#study-header .status", has_text="running").wait_for()
    assert page.locator("#token-status").inner_text() == "auth off: no token needed"
    # three runs end after the page was drawn: the question counts what is unfinished now
    leaves = [run_id for run_id, i, j in _train_runs(db, sid) if run_id != running and (i, j) != (0, 0)]
    for run_id in leaves[:3]:
        _sql(db, "update runs set status='succeeded', top1=90.0, attempts=1 where id=?", run_id)
    questions: list[str] = []

    def accept(dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("#study-cancel")
    page.locator("#study-action-result .ok", has_text="waiting runs cancelled").wait_for()
    assert f"Its {total - 3} unfinished runs are cancelled" in questions[0], questions
    end_run(db, running, "cancelled")
    progress = page.locator("#study-progress")
    progress.get_by_text(f"{total} / {total} runs ended: 3 succeeded, {total - 3} cancelled").wait_for(
        timeout=20_000
    )
    page.locator("#study-header .status", has_text="cancelled").wait_for()

    # one retried run succeeds: the study is still not "succeeded" while the others stay cancelled
    retried = leaves[3]
    assert httpx.post(f"{url}{API}/runs/{retried}/retry", timeout=30).status_code == 200
    _sql(db, "update runs set status='succeeded', top1=91.0, attempts=1 where id=?", retried)
    page.reload()
    progress.get_by_text(f"{total} / {total} runs ended: 4 succeeded, {total - 4} cancelled").wait_for()
    assert page.locator("#study-header .status").inner_text() == "cancelled"

    # the list's status filter speaks the badges' words
    page.goto(url + "/")
    page.click("#studies-status")
    options = page.locator(".dash-dropdown-option").all_inner_texts()
    page.keyboard.press("Escape")
    assert [o.strip() for o in options] == [
        "pending",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "deleting",
    ]
    _choose(page, "#studies-status", "cancelled")
    page.locator("#studies-list .study-link", has_text="states").wait_for()
    row = page.locator("tr.study-row", has=page.locator("a", has_text="states"))
    assert "cancelled" in row.locator(".status").inner_text()
    assert not page.errors


# --- 6. missing ids and bad requests ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_6_not_found_pages_and_a_study_without_top5(server, degenerate, page):
    url = server["url"]
    page.goto(f"{url}/studies/9999")
    page.locator("#not-found", has_text="Study 9999 not found").wait_for()
    page.wait_for_timeout(1_000)  # every callback of the page has answered
    assert _enabled_visible_buttons(page) == 0
    assert not page.locator("#study-extend").is_visible() and not page.locator("#study-runs").is_visible()
    page.screenshot(path=str(SCREENSHOTS / "not-found.png"))
    page.goto(f"{url}/runs/9999")
    page.locator("#not-found", has_text="Run 9999 not found").wait_for()
    page.wait_for_timeout(1_000)
    assert _enabled_visible_buttons(page) == 0 and not page.locator("#run-retry").is_visible()

    # an import without top-5: top-5 cannot be picked, and asking for it by URL says so in words
    sid = degenerate["id"]
    page.goto(f"{url}/studies/{sid}")
    _wait_landscapes(page, 2)
    top5 = page.locator("#study-metric input[value='top5']")
    assert top5.is_disabled() and page.locator("#study-metric input[value='top1']").is_enabled()
    page.goto(f"{url}/studies/{sid}?metric=top5")
    note = page.locator("#study-metric-note")
    note.get_by_text("This study's results hold no top-5: showing top-1.").wait_for()
    _wait_landscapes(page, 2)
    body = page.locator("#page").inner_text()
    for raw in ("Value error", "'loc'", "[{", "query.metric", "msg"):
        assert raw not in body, raw
    assert page.locator("#study-metric input[value='top1']").is_checked()
    assert "finished runs of the base" not in page.locator("#study-risk-note").inner_text()
    assert "No performance risk" not in page.locator("#study-risk-note").inner_text()  # it has risk values
    assert not page.errors


# --- 7. comparable panels ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_7_shared_axes_a_degenerate_ellipse_as_a_segment_and_a_per_variant_scale(server, degenerate, page):
    url = server["url"]
    page.goto(f"{url}/studies/{degenerate['id']}")
    _wait_landscapes(page, 2)
    base_axes, u50_axes = _axes(page, "landscape-base"), _axes(page, "landscape-u50")
    assert base_axes == u50_axes
    u50 = {t["name"]: t for t in _traces(page, "landscape-u50")}
    segment = u50["0.5-ROI ellipse (width 0: a segment)"]
    grid_x, grid_y = (-4.4, -3.6), (-1.4, -0.6)  # log10 wd and log10 lr of the 5 x 5 grid
    assert all(grid_x[0] - 1e-9 <= x <= grid_x[1] + 1e-9 for x in segment["x"]), segment["x"]
    assert all(grid_y[0] - 1e-9 <= y <= grid_y[1] + 1e-9 for y in segment["y"])
    card = page.locator(_pattern_id(name="landscape-u50", type="card"))
    assert "has width 0 (its 5 points lie on a line): drawn as a marked segment" in card.inner_text()
    # the width-0 line (1.26 log10 units long across a 0.8-wide grid) does not stretch the view
    assert base_axes["x"][1] - base_axes["x"][0] < 1.26

    shared = {t["name"]: t["zmin"] for t in _traces(page, "landscape-base") if t["type"] == "contour"}
    page.get_by_label("each variant its own scale").check()
    page.locator("#study-scale-note", has_text="Colour scale in use: each variant its own").wait_for()
    page.wait_for_function(
        """() => { const g = [...document.querySelectorAll('.js-plotly-plot')]
                    .find(e => e.closest('[id]').id.includes('landscape-u50'));
                   return g && g.data.some(t => t.type === 'contour' && t.zmin < 86); }"""
    )
    own_base = [t["zmin"] for t in _traces(page, "landscape-base") if t["type"] == "contour"][0]
    own_u50 = [t["zmin"] for t in _traces(page, "landscape-u50") if t["type"] == "contour"][0]
    # each from its own lowest value (u50: 91 - 3 x 2 rows off; base: 92 - 1.6), both below the
    # shared floor (the 85th percentile of all values) that painted u50 almost one colour
    assert own_u50 == pytest.approx(84.98) and own_base == pytest.approx(90.4)
    assert list(shared.values())[0] > own_base
    assert page.locator("#study-floor-box").is_disabled()
    assert "colour scale of this variant" in card.inner_text()
    assert not page.errors


# --- 8. the new-study form ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_8_the_form_shows_what_applies_and_says_what_is_wrong_in_words(server, page):
    url = server["url"]
    catalog = httpx.get(f"{url}{API}/catalog", timeout=30).json()
    page.goto(url + "/new")
    page.locator("#new-plan-total").wait_for()
    # an empty name is flagged in the live preview, next to the field
    page.locator("#new-plan-name", has_text="Name missing").wait_for()
    assert "a study needs a name" in page.locator(_pattern_id(field="name", type="err")).inner_text()
    # the one model list: the API's catalog
    page.click("#new-model")
    shown = page.locator(".dash-dropdown-option").all_inner_texts()
    page.keyboard.press("Escape")
    assert [s.strip() for s in shown] == [m["name"] for m in catalog["models"]]

    page.fill("#new-name", "form of issue 19")
    page.locator("#new-plan-name").wait_for(state="detached")
    # a new int8 row: no FLOPs ratio, a source picked from the study's variants
    page.click("#new-add-variant")
    kind = _pattern_id(index=2, type="v-kind")
    page.locator(kind).wait_for()
    assert page.locator(_pattern_id(index=2, type="v-ratio")).is_visible()
    _choose(page, kind, "int8")
    page.locator(_pattern_id(index=2, type="v-ratio")).wait_for(state="hidden")
    assert not page.locator(_pattern_id(index=2, type="v-method")).is_visible()
    source = page.locator(_pattern_id(index=2, type="v-source"))
    assert source.is_visible()
    page.click(_pattern_id(index=2, type="v-source"))
    assert [o.strip() for o in page.locator(".dash-dropdown-option").all_inner_texts()] == ["base", "u50"]
    page.keyboard.press("Escape")
    # u50 prunes in three rounds, and a scan is planned: the preview counts them
    page.fill(_pattern_id(index=1, type="v-iterations"), "3")
    page.click("#new-add-scan")
    page.locator("#new-plan-total", has_text="sensitivity scan").wait_for()
    u50_row = page.locator("#new-plan-table tbody tr", has_text="u50").inner_text().split()
    assert u50_row[-2] == "3"  # iterations
    # a message for people, next to its field
    page.fill("#new-size", "4")
    size_error = page.locator(_pattern_id(field="grid.size", type="err"))
    size_error.get_by_text("size must be odd").wait_for()
    assert "Value error" not in page.locator("#page").inner_text()
    page.fill("#new-size", "3")
    size_error.get_by_text("size must be odd").wait_for(state="detached")
    # the path box, where a data set needs one, drawn whole
    _choose(page, "#new-dataset", "cifar10")
    path_box = page.locator("#new-dataset-path")
    path_box.wait_for()
    assert path_box.bounding_box()["width"] >= 500
    assert "data_batch" in page.locator("#new-dataset-note").inner_text()
    _choose(page, "#new-dataset", "digits")
    path_box.wait_for(state="hidden")

    # the grid extends itself, within a budget the preview states
    assert page.locator("#new-auto-points").is_disabled()
    page.get_by_label("extend the grid automatically").check()
    # the preview of the default budget first: a second edit while its request is in flight may
    # have its answer overtaken by the first one's on a loaded machine
    page.locator("#new-plan-auto", has_text="up to 20 more grid points per variant").wait_for()
    page.locator("#new-auto-points").fill("10")
    page.locator("#new-plan-auto", has_text="up to 10 more grid points per variant").wait_for()

    page.locator("#new-plan-total", has_text="This will plan").wait_for()
    page.click("#new-submit")
    page.wait_for_url(re.compile(r".*/studies/\d+$"))
    created = httpx.get(f"{url}{API}/studies/{page.url.rsplit('/', 1)[1]}", timeout=30).json()
    variants = {v["name"]: v for v in created["spec"]["variants"]}
    assert variants["u50"]["iterations"] == 3
    assert variants["v2"] == {"name": "v2", "kind": "int8", "source": "base", "calibration_batches": 10}
    assert created["spec"]["scans"][0]["fractions"][:3] == [0.0, 0.1, 0.2]
    assert created["spec"]["grid"]["auto_extend"] == {"max_points": 10, "level": 1.0}
    assert not page.errors


# --- 9. the small things -----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.browser
def test_9_floor_on_enter_view_in_the_url_formats_copy_and_definitions(server, imported, page):
    url = server["url"]
    sid = imported["id"]
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(f"{url}/studies/{sid}")
    _wait_landscapes(page, 2)
    box = page.locator("#study-floor-box")
    box.fill("91.7")
    page.wait_for_timeout(1_000)
    assert "floor=91.7" not in page.url  # typing alone applies nothing
    box.press("Enter")
    page.wait_for_url(re.compile(r".*floor=91\.7"))
    page.wait_for_function(
        """() => [...document.querySelectorAll('.js-plotly-plot')].every(
               g => g.data.filter(t => t.type === 'contour').every(t => Math.abs(t.zmin - 91.7) < 1e-9))"""
    )
    page.get_by_label("top-5").check()
    page.wait_for_url(re.compile(r".*metric=top5"))
    # another metric, another scale: the floor went back to top-5's default; set one of its own
    page.wait_for_function("() => !window.location.search.includes('floor=')")
    floor_now = f"{float(box.input_value()) + 0.1:.1f}"
    box.fill(floor_now)
    box.press("Enter")
    page.wait_for_url(re.compile(rf".*floor={re.escape(floor_now)}"))
    page.reload()
    _wait_landscapes(page, 2)
    assert page.locator("#study-metric input[value='top5']").is_checked()
    page.wait_for_function(f"() => document.querySelector('#study-floor-box').value === '{floor_now}'")
    assert f"floor={floor_now}" in page.url and "metric=top5" in page.url

    # one format for lr / wd: the header, the runs table and the hovers write 0.1, 0.0398, 3.98e-05
    assert "at lr 0.1, wd 0.0001" in page.locator("#study-best").inner_text()
    runs_text = page.locator("#runs-list").inner_text()
    assert "0.0398" in runs_text and "3.98e-05" in runs_text and "0.0398107" not in runs_text
    hover_lr = {row[1] for t in _traces(page, "landscape-base") if t["name"] == "runs" for row in t["custom"]}
    assert "0.0398" in hover_lr and "0.1" in hover_lr
    # imported grid indices are centred like a native grid's: lr 0.1, wd 1e-4 is (0, 0)
    centre = page.locator("#runs-list tr.run-row", has_text="0.1 0.0001")
    assert "0, 0" in (
        centre.first.inner_text() if centre.count() else page.locator("#runs-list").inner_text()
    )

    # "copy" is a word that says "copied", and what it copies has no float noise
    copy = page.locator(_pattern_id(name="ellipses", type="copy"))
    assert copy.inner_text() == "copy"
    copy.click()
    copy.get_by_text("copied").wait_for()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied.splitlines()[0].startswith("variant\tROI level (pp)\tpoints")
    assert not re.search(r"\d\.\d{7,}", copied), copied

    # d, d/f* and pp are defined where they appear; the spec is one click away and served
    definitions = page.locator("#study-risk-definitions").inner_text()
    assert (
        "d = f*(v) − f(v, θ)" in definitions
        and "d/f*" in definitions
        and "pp = percentage points" in definitions
    )
    assert page.locator("#study-spec-link").get_attribute("href") == "/docs/spec.md"
    assert "What prunescape computes" in httpx.get(f"{url}/docs/spec.md", timeout=30).text
    assert page.locator("#page").inner_text().count("FLOPs = 2 x") <= 1
    assert not page.errors


@pytest.mark.slow
@pytest.mark.browser
def test_9_empty_plots_wait_and_each_kind_of_run_says_what_it_did(server, page):
    url, db = server["url"], server["db"]
    study = _create(
        url,
        "kinds of runs",
        [
            {"name": "base", "kind": "base"},
            {"name": "u50", "kind": "structured", "flops_ratio": 0.5},
            {"name": "q8", "kind": "int8", "source": "base"},
        ],  # fmt: skip
    )
    sid = study["id"]
    page.goto(f"{url}/studies/{sid}")
    page.locator("#study-landscapes", has_text="waiting for the first results").first.wait_for()

    runs = httpx.get(f"{url}{API}/studies/{sid}/runs?limit=1000", timeout=30).json()["items"]
    measure = next(r for r in runs if r["kind"] == "measure" and r["variant"] == "u50")
    prune = next(r for r in runs if r["kind"] == "prune")
    quantise = next(r for r in runs if r["kind"] == "quantise")
    u50_id = measure["variant_id"]
    result = json.dumps({"params": 1200, "params_nonzero": 600, "flops": 50000, "size_bytes": 9000})
    _sql(db, "update runs set status='succeeded', attempts=1, result=? where id=?", result, measure["id"])
    latency = {"onnxruntime-cpu": {"runtime": "onnxruntime-cpu", "supported": True, "precision": "fp32",
                                   "by_batch": {"1": {"median_ms": 0.512}}}}  # fmt: skip
    _sql(db, "update variants set latency=? where id=?", json.dumps(latency), u50_id)
    folder = server["artefacts"] / "pruned"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pt").write_bytes(b"pruned")
    _sql(db, "insert into artefacts (variant_id, kind, path, bytes, created_at) values (?, 'model', "
         "'pruned/model.pt', 6, CURRENT_TIMESTAMP)", u50_id)  # fmt: skip
    _sql(db, "update runs set status='succeeded', attempts=1, result=? where id=?",
         json.dumps({"flops_ratio": 0.49, "params": 600}), prune["id"])  # fmt: skip
    _sql(db, "update runs set status='succeeded', attempts=1, top1=90.0, result=?, "
         "started_at='2026-01-01 10:00:00', finished_at='2026-01-01 10:00:12.500000' where id=?",
         json.dumps({"kind": "int8", "runtime": "onnxruntime"}), quantise["id"])  # fmt: skip

    page.goto(f"{url}/runs/{measure['id']}")
    panel = page.locator("#run-kind-panel")
    panel.get_by_text("What it measured").wait_for()
    assert "non-zero params" in panel.inner_text() and "600" in panel.inner_text()
    assert "onnxruntime-cpu (fp32): batch 1: 0.512 ms" in panel.inner_text()
    page.goto(f"{url}/runs/{prune['id']}")
    link = page.locator("#run-pruned-model")
    link.wait_for()
    assert link.inner_text() == f"study-{sid}-u50-model.pt"
    with page.expect_download() as info:
        link.click()
    assert info.value.suggested_filename == f"study-{sid}-u50-model.pt"
    assert Path(info.value.path()).read_bytes() == b"pruned"
    page.goto(f"{url}/runs/{quantise['id']}")
    page.locator("#run-kind-panel", has_text="What it quantised").wait_for()
    assert re.search(r"seconds\s+12\.5", page.locator("#run-kind-panel").inner_text())
    assert "12.5" in page.locator("#run-details").inner_text()
    finish_study(db, sid)  # leave nothing waiting for the other tests' lists
    assert not page.errors
