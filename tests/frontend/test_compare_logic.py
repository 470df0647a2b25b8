"""Page logic of /compare and of the study's extension records, without a browser.

The bodies are GET /api/v1/compare (`StudiesCompare`) and StudyOut's `extensions` /
`auto_extension` in the shape docs/api.md documents (branch h16b; not on main when these were
written, so they are the documented examples, not a backend's output)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from frontend.api_client import ApiClient
from frontend.pages import compare as cmp
from frontend.pages import study_extensions as ext

COMPARE = {
    "metric": "top1",
    "roi_levels": [0.5, 1.0],
    "studies": [
        {"study_id": 1, "name": "resnet", "kind": "native", "status": "succeeded", "model": "digits_cnn",
         "dataset": "digits", "base": "base", "variants": ["base", "u50"], "analysed": True, "reason": None,
         "grid": {}, "colour_scale": {"min": 95.1, "max": 97.9, "percentile": 85.0, "n_observations": 98},
         "analysis_url": "/api/v1/studies/1/analysis?metric=top1", "landscape_urls": {}},
        {"study_id": 2, "name": "empty", "kind": "native", "status": "pending", "model": "digits_cnn",
         "dataset": "digits", "base": "base", "variants": ["base"], "analysed": False,
         "reason": "no finished run yet", "grid": None, "colour_scale": None,
         "analysis_url": "/api/v1/studies/2/analysis?metric=top1", "landscape_urls": {}},
    ],
    "rows": [
        {"study_id": 1, "study_name": "resnet", "variant": "base", "kind": "base", "is_base": True, "n_runs": 49,
         "best": {"value": 97.9, "lr": 0.1, "wd": 1e-4, "x": -4.0, "y": -1.0, "std": 0.2, "n": 3,
                  "ci_low": 97.6, "ci_high": 98.1, "ci_level": 0.95},
         "roi": {"0.5": 6, "1.0": 11},
         "ellipse": {"0.5": {"length": 1.2, "width": 0.4, "angle_deg": -12.0, "centre": [-4.0, -1.0], "n_points": 6},
                     "1.0": None},
         "ellipse_reason": {"0.5": None, "1.0": "the ROI's points lie on a line"},
         "shift": {"0.5": None, "1.0": None},
         "risk": {"level": 0.5, "mean": 0.3, "std": 0.1, "rel_mean": 0.003, "rel_std": 0.001, "n": 6,
                  "missing": 0, "reason": None},
         "noise": {"std": 0.2, "source": "seeds", "estimate": False}},
        {"study_id": 1, "study_name": "resnet", "variant": "u50", "kind": "structured", "is_base": False,
         "n_runs": 49,
         "best": {"value": 97.2, "lr": 0.16, "wd": 0.003, "x": -2.5, "y": -0.8, "std": None, "n": 1,
                  "ci_low": None, "ci_high": None, "ci_level": 0.95},
         "roi": {"0.5": 3, "1.0": 11},
         "ellipse": {"0.5": None, "1.0": {"length": 2.0, "width": 0.5, "angle_deg": 30.0, "centre": [-2.6, -0.9],
                                          "n_points": 11}},
         "ellipse_reason": {"0.5": "only 3 points in the 0.5-ROI; an ellipse needs at least 5", "1.0": None},
         "shift": {"0.5": {"tested": False, "verdict": "not tested", "reason": "too few points", "delta": None,
                           "distance": None, "ci_low": None, "ci_high": None, "p_value": None, "significant": False},
                   "1.0": {"tested": True, "verdict": "shift towards larger lr", "reason": None,
                           "delta": [0.1, 0.3], "distance": 0.32, "ci_low": [0.0, 0.1], "ci_high": [0.2, 0.5],
                           "p_value": 0.0004, "significant": True}},
         "risk": {"level": 0.5, "mean": 0.6, "std": 0.4, "rel_mean": 0.006, "rel_std": 0.004, "n": 6,
                  "missing": 1, "reason": None},
         "noise": {"std": 0.3, "source": "fit", "estimate": True}},
        {"study_id": 2, "study_name": "empty", "variant": "base", "kind": "base", "is_base": True, "n_runs": 0,
         "best": None, "roi": {"0.5": None, "1.0": None}, "ellipse": {"0.5": None, "1.0": None},
         "ellipse_reason": {"0.5": None, "1.0": None}, "shift": {"0.5": None, "1.0": None}, "risk": None,
         "noise": None},
    ],
    "shared_colour_scale": {"min": 94.0, "max": 97.9, "percentile": 85.0, "n_observations": 196},
}  # fmt: skip


@pytest.mark.parametrize(
    ("search", "ids"),
    [("?studies=1,2", [1, 2]), ("?studies=3,%201,3", [3, 1]), ("?studies=1&studies=2", [1, 2])],
)
def test_the_address_names_two_to_eight_study_ids(search, ids):
    assert cmp.parse_studies(search) == (ids, None)


@pytest.mark.parametrize(
    ("search", "words"),
    [
        ("", "name the studies"),
        ("?studies=1", "choose 2 to 8 different studies (got 1)"),
        ("?studies=1,1", "(got 1)"),
        ("?studies=" + ",".join(str(i) for i in range(1, 10)), "(got 9)"),
        ("?studies=1,../runs/5", "'../runs/5' is not a study id"),
        ("?studies=1,-2", "'-2' is not a study id"),
        ("?studies=1,2147483648", "'2147483648' is not a study id"),
        ("?studies=1,2.0", "'2.0' is not a study id"),
        ("?studies=1," + "9" * 5000, "not a list of study ids"),
        (None, "not a list of study ids"),
    ],
)
def test_a_bad_address_is_refused_naming_the_field_before_any_request(search, words):
    ids, problem = cmp.parse_studies(search)
    assert ids == [] and problem.startswith("studies: ") and words in problem


def test_the_client_asks_for_the_ids_it_was_given_and_no_other_path():
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json=COMPARE)

    client = ApiClient("http://api.test", transport=httpx.MockTransport(answer))
    assert asyncio.run(client.compare_studies([1, "2"], "top5")) == COMPARE
    (url,) = seen
    assert url.path == "/api/v1/compare" and dict(url.params) == {"studies": "1,2", "metric": "top5"}
    with pytest.raises(Exception, match="404"):
        asyncio.run(client.compare_studies([1, "2/../../runs"]))
    assert len(seen) == 1


def test_the_tables_have_one_row_per_study_and_variant():
    best = cmp.best_rows(COMPARE)
    assert [(r["study_id"], r["variant"]) for r in best] == [(1, "base"), (1, "u50"), (2, "base")]
    assert (best[0]["best"], best[0]["std"], best[0]["seeds"], best[0]["ci_low"]) == (97.9, 0.2, 3, 97.6)
    assert best[1]["noise_source"] == "fit (estimate)" and best[2]["best"] is None
    roi = {(r["study_id"], r["variant"]): r for r in cmp.roi_rows(COMPARE)}
    assert (roi[(1, "base")]["roi_0.5"], roi[(1, "base")]["length_0.5"], roi[(1, "base")]["angle_0.5"]) == (
        6,
        1.2,
        -12.0,
    )
    assert roi[(1, "base")]["why_1.0"] == "the ROI's points lie on a line"
    assert roi[(1, "u50")]["width_1.0"] == 0.5 and "only 3 points" in roi[(1, "u50")]["why_0.5"]
    shift = {(r["study_id"], r["variant"]): r for r in cmp.shift_rows(COMPARE)}
    assert shift[(1, "base")]["shift_1.0"] == "(the reference)"
    assert shift[(1, "u50")]["shift_0.5"] == "not tested (too few points)"
    assert shift[(1, "u50")]["shift_1.0"] == (
        "shift towards larger lr (Δ log10 wd 0.100, Δ log10 lr 0.300; p < 0.001)"
    )
    risk = {(r["study_id"], r["variant"]): r for r in cmp.risk_rows(COMPARE)}
    assert risk[(1, "u50")]["risk_rel_mean"] == pytest.approx(0.6) and risk[(1, "u50")]["risk_missing"] == 1
    assert risk[(2, "base")]["risk_mean"] is None
    ids = {c["id"] for c in cmp.roi_columns(COMPARE)}
    assert {"length_0.5", "width_1.0", "angle_1.0", "roi_0.5"} <= ids


def test_landscapes_on_their_own_or_on_the_shared_colour_scale(monkeypatch):
    drawn = []
    monkeypatch.setattr(cmp, "landscape_figure", lambda analysis, variant, **_: drawn.append(
        (variant, analysis["colour_scale"])) or {})  # fmt: skip
    analysis = {"colour_scale": COMPARE["studies"][0]["colour_scale"], "variants": ["base", "u50"]}
    data = {"compare": COMPARE, "analyses": {"1": analysis}}
    blocks, note = cmp.landscapes(data, "own")
    assert drawn == [("base", analysis["colour_scale"]), ("u50", analysis["colour_scale"])]
    assert "own colour scale" in note and len(blocks) == 2
    assert "no finished run yet" in str(blocks[1])  # the study without an analysis says why
    drawn.clear()
    _, note = cmp.landscapes(data, "shared")
    assert {scale["min"] for _, scale in drawn} == {94.0} and "One colour scale for every study" in note
    assert analysis["colour_scale"]["min"] == 95.1  # the stored analysis is left as it was


def test_compare_selected_links_the_ticked_studies():
    assert cmp.picked_ids([[3], [], [1], [3], ["x"], "junk"]) == [3, 1]
    assert cmp.compare_href([3, 1]) == "/compare?studies=3,1"


EXTENDED = {
    "auto_extension": {"max_points": 40, "level": 1.0, "points_used": 21, "points_left": 19, "extensions": 3,
                       "state": "stopped", "stopped": "enclosed",
                       "why": "the 1.0-ROI of every trained variant is enclosed by the grid"},
    "extensions": [
        {"at": "2026-12-02T10:00:00+00:00", "kind": "auto",
         "rows": {"lr_low": 0, "lr_high": 1, "wd_low": 1, "wd_high": 1},
         "sides": ["lr_high", "wd_low", "wd_high"], "added_points": 11, "added_runs": 22,
         "lr_range": [-1, 2], "wd_range": [-2, 2], "level": 1.0,
         "triggered_by": {"base": ["lr_high", "wd_low", "wd_high"]}, "left_out": {"lr_low": "grid limit"},
         "points_used": 11, "points_left": 29,
         "why": "the 1.0-ROI touches the grid's edge (base: lr high, wd low, wd high)"},
        {"at": "2026-12-02T10:20:00+00:00", "kind": "stop", "stopped": "enclosed", "why": "enclosed by the grid",
         "lr_range": [-1, 4], "wd_range": [-2, 3], "points_used": 21, "points_left": 19, "wanted": {},
         "through": "2026-12-02T10:20:00+00:00"},
    ],
}  # fmt: skip


def test_the_extension_records_read_into_when_which_sides_why_and_the_stop():
    first, stop = ext.extension_rows(EXTENDED)
    assert first["at"] == "2026-12-02 10:00:00" and first["kind"] == "automatic"
    assert first["sides"] == "higher lr, lower wd, higher wd" and first["added_points"] == 11
    assert first["triggered_by"] == "base: higher lr, lower wd, higher wd"
    assert first["left_out"] == "lower lr: grid limit" and first["lr_range"] == "[-1, 2]"
    assert (stop["kind"], stop["stopped"], stop["sides"]) == ("stopped", "enclosed", "—")
    text = ext.auto_extension_text(EXTENDED)
    assert text.startswith("Auto-extension at the 1.0-ROI: stopped: enclosed (the 1.0-ROI of every")
    assert "21 of 40 grid points per variant used (19 left)" in text
    assert ext.extensions_view({"extensions": [], "auto_extension": None}) == []  # nothing to say
