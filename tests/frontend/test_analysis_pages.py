"""Issue 16's views in Chromium against a real server: the landscape's mean ± std (n) hover and its
spread / seeds / ROI-membership toggle, the "within noise" warning and the one-seed estimate next
to the ROI table, and two studies side by side from the studies list's "compare selected".
Saves docs/screenshots/{study-noise,study-membership,study-one-seed,compare}.png."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.frontend.live import REPO, live_server
from tests.frontend.synthetic import csv_text

SCREENSHOTS = REPO / "docs" / "screenshots"
NOISY, ONE_SEED = "noisy, three seeds", "one seed per point"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("prunescape-analysis")) as base:
        yield base


def _import(server: str, name: str, text: str) -> dict:
    answer = httpx.post(
        server + "/api/v1/studies/import",
        files={"file": ("synthetic.csv", text, "text/csv")},
        data={"name": name},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    study = answer.json()
    analysis = httpx.get(f"{server}/api/v1/studies/{study['id']}/analysis", timeout=60)
    assert analysis.status_code == 200, analysis.text[:2000]
    return {"study": study, "analysis": analysis.json()}


@pytest.fixture(scope="module")
def studies(server) -> dict:
    # seeds 0.36 pp apart: the 0.5-ROI is within noise, the 1.0-ROI is not
    return {
        NOISY: _import(server, NOISY, csv_text(seeds=3, wobble=0.8)),
        ONE_SEED: _import(server, ONE_SEED, csv_text(seeds=1)),
    }


def _traces(page, container: str) -> list[list[dict]]:
    """Every plot in `container`: its traces' type, name, z, zmin, zmax and customdata."""
    return page.evaluate(
        """(sel) => [...document.querySelectorAll(sel + ' .js-plotly-plot')].map(el => el.data.map(t => ({
              type: t.type || 'scatter', name: t.name, z: t.z, zmin: t.zmin, zmax: t.zmax,
              customdata: t.customdata})))""",
        container,
    )


def _pick(page, radio_id: str, label: str) -> None:
    page.locator(f"#{radio_id} label", has_text=label).click()


@pytest.mark.slow
@pytest.mark.browser
def test_seed_noise_hover_toggle_membership_and_warning(server, studies, page):
    study, analysis = studies[NOISY]["study"], studies[NOISY]["analysis"]
    page.goto(f"{server}/studies/{study['id']}")
    page.wait_for_function(
        "() => document.querySelectorAll('#study-landscapes .js-plotly-plot').length === 2"
    )
    # the mean view's points carry mean ± std (n seeds) for the hover
    base = analysis["results"]["base"]
    (runs,) = [t for t in _traces(page, "#study-landscapes")[0] if t["name"] == "runs"]
    assert all(re.fullmatch(r"\d+\.\d\d ± [0-9.]+ \(3 seeds\)", row[5]) for row in runs["customdata"])
    star = page.locator("#study-landscapes .js-plotly-plot").first.locator(
        ".scatterlayer .trace:last-child .point"
    )
    box = star.first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    hover = page.locator("#study-landscapes .hoverlayer .hovertext").first
    hover.wait_for()
    best = base["best"]
    assert f"{best['value']:.2f} ± {best['std']:.2g} (3 seeds)" in hover.text_content()

    # next to the ROI table: the noise, the best point's interval, and the warning for the 0.5-ROI
    noise_panel = page.locator("#study-noise")
    noise_panel.locator(".within-noise-warning").first.wait_for()
    warnings = noise_panel.locator(".within-noise-warning").all_inner_texts()
    assert len(warnings) == 2 and all("0.5-ROI is within noise" in w for w in warnings)
    assert f"2 × {base['noise']['std']:.3f}" in warnings[0]
    text = noise_panel.inner_text()
    assert f"{base['noise']['std']:.3f}" in text and "seeds" in text
    page.locator("#study-ellipse-table").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.locator("#study-noise").screenshot(path=str(SCREENSHOTS / "study-noise.png"))

    # the toggle: spread, then seeds per point, then ROI membership at the 1.0 level
    _pick(page, "landscape-view", "spread over seeds")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#study-landscapes .js-plotly-plot')].filter("
        "el => el.data[0].type === 'heatmap').length === 2"
    )
    spread = _traces(page, "#study-landscapes")[0][0]
    stds = [v for v in base["landscape"]["points"]["std"] if v is not None]
    assert sorted(v for row in spread["z"] for v in row if v is not None) == pytest.approx(sorted(stds))
    _pick(page, "landscape-view", "seeds per point")
    page.wait_for_function(
        "() => document.querySelector('#study-landscapes .js-plotly-plot').data[0].colorbar.title.text === 'seeds'"
    )
    counts = _traces(page, "#study-landscapes")[0][0]["z"]
    assert {v for row in counts for v in row} == {3}
    _pick(page, "landscape-view", "ROI membership")
    _pick(page, "landscape-level", "1.0")
    page.wait_for_function(
        "() => document.querySelector('#study-landscapes .js-plotly-plot').data[0].colorbar.title.text"
        " === 'in the 1.0-ROI'"
    )
    plots = _traces(page, "#study-landscapes")
    for variant, traces in zip(analysis["variants"], plots, strict=True):
        membership = analysis["results"][variant]["roi_membership"]["1.0"]
        shown = sorted(v for row in traces[0]["z"] for v in row if v is not None)
        assert shown == pytest.approx(sorted(membership))
        assert (traces[0]["zmin"], traces[0]["zmax"]) == (0, 1)
    assert "seed resamples" in page.locator("#study-scale-note").inner_text()
    assert (
        f"95% CI {best['ci_low']:.2f} – {best['ci_high']:.2f}"
        in page.locator("#study-landscapes").inner_text()
    )
    page.wait_for_timeout(500)
    page.locator("#study-landscapes").screenshot(path=str(SCREENSHOTS / "study-membership.png"))
    # and back: the mean landscape with its contour
    _pick(page, "landscape-view", "mean over seeds")
    page.wait_for_function(
        "() => document.querySelectorAll('#study-landscapes .js-plotly-plot .contourlayer .contour').length >= 1"
    )
    assert not page.errors


@pytest.mark.slow
@pytest.mark.browser
def test_one_seed_says_its_noise_is_an_estimate(server, studies, page):
    study, analysis = studies[ONE_SEED]["study"], studies[ONE_SEED]["analysis"]
    page.goto(f"{server}/studies/{study['id']}")
    panel = page.locator("#study-noise")
    panel.locator(".noise-estimate").first.wait_for()
    notes = panel.locator(".noise-estimate").all_inner_texts()
    assert len(notes) == 2 and all("estimate from the residuals of a local quadratic fit" in n for n in notes)
    assert f"{analysis['results']['base']['noise']['std']:.3f}" in notes[0]
    assert "fit (estimate)" in panel.inner_text()
    assert not panel.locator(".within-noise-warning").count()  # 0.5 pp is above twice this noise
    # nothing to resample with one seed: spread and membership cannot be picked
    page.wait_for_function(
        "() => document.querySelector('#landscape-view input[value=\"membership\"]').disabled === true"
    )
    assert page.locator('#landscape-view input[value="spread"]').is_disabled()
    assert not page.locator('#landscape-view input[value="count"]').is_disabled()
    page.wait_for_timeout(300)
    panel.screenshot(path=str(SCREENSHOTS / "study-one-seed.png"))
    assert not page.errors


@pytest.mark.slow
@pytest.mark.browser
def test_compare_selected_puts_two_studies_side_by_side(server, studies, page):
    ids = [studies[NOISY]["study"]["id"], studies[ONE_SEED]["study"]["id"]]
    page.goto(server + "/")
    for name in (NOISY, ONE_SEED):
        row = page.locator("tr.study-row", has=page.locator("a", has_text=name))
        row.locator("input[type=checkbox]").check()
    link = page.locator("#compare-selected", has_text="Compare selected (2 studies)")
    link.wait_for()
    link.click()
    page.wait_for_url(re.compile(r".*/compare\?studies=\d+,\d+$"))
    chosen = [int(i) for i in page.url.rsplit("=", 1)[1].split(",")]
    assert sorted(chosen) == sorted(ids)  # in the list's order (newest first)
    page.wait_for_function(
        "() => document.querySelectorAll('#compare-landscapes .js-plotly-plot').length === 4"
    )
    compare = httpx.get(
        f"{server}/api/v1/compare", params={"studies": f"{chosen[0]},{chosen[1]}"}, timeout=60
    ).json()
    tables = page.locator("#compare-tables").inner_text()
    for row in compare["rows"]:  # one row per (study, variant), with the best point's value
        assert row["study_name"] in tables
        assert f"{row['best']['value']:.3f}".rstrip("0") in tables
    assert "shift towards larger lr" in tables or "no significant shift" in tables

    # each study on its own colour scale, then all on the shared one
    def zmins() -> list[float]:
        return [
            next(t["zmin"] for t in plot if t["type"] == "contour")
            for plot in _traces(page, "#compare-landscapes")
        ]

    own = [entry["colour_scale"]["min"] for entry in compare["studies"] for _ in entry["variants"]]
    assert zmins() == pytest.approx(own)
    _pick(page, "compare-scale", "one shared by all")
    shared = compare["shared_colour_scale"]["min"]
    page.wait_for_function(
        f"() => [...document.querySelectorAll('#compare-landscapes .js-plotly-plot')].every("
        f"el => Math.abs(el.data[0].zmin - {shared}) < 1e-9)"
    )
    assert "One colour scale for every study" in page.locator("#compare-scale-note").inner_text()
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)

    # ids are checked before any request; an unknown one is the API's not-found
    page.goto(f"{server}/compare?studies={ids[0]},1..2")
    page.locator(".compare-error", has_text="'1..2' is not a study id").wait_for()
    page.goto(f"{server}/compare?studies={ids[0]},99999")
    page.locator(".compare-error", has_text="Not found: study 99999 not found").wait_for()
    assert not page.locator("#compare-landscapes .js-plotly-plot").count()
    assert not page.errors
