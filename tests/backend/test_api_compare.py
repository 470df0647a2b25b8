"""Studies side by side (issue 16 item 3): `GET /api/v1/compare?studies=...` reads every number out
of each study's analysis, draws the landscapes' references, and refuses hostile id lists."""

from __future__ import annotations

import numpy as np
import pytest

from backend.analysis.synthetic import SyntheticVariant, rows_to_csv, synthetic_rows
from backend.db.session import session_factory
from backend.services.analysis_views import result_rows

API = "/api/v1"


def _import(client, name: str, variants, **kwargs) -> int:
    content = rows_to_csv(synthetic_rows(variants, size=7, **kwargs))
    response = client.post(
        f"{API}/studies/import", files={"file": ("r.csv", content, "text/csv")}, data={"name": name}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture
def two_studies(client) -> tuple[int, int]:
    """One study whose u60 moves to larger lr, one with the same optimum and a lower peak."""
    first = _import(
        client, "shifted", [SyntheticVariant("base"), SyntheticVariant("u60", shift_lr=0.6, peak=92.0)]
    )
    second = _import(
        client, "flat", [SyntheticVariant("base", peak=80.0), SyntheticVariant("n60", peak=79.5)]
    )
    return first, second


def test_one_row_per_study_and_variant_with_the_analysis_numbers(client, settings, two_studies):
    first, second = two_studies
    response = client.get(f"{API}/compare", params={"studies": f"{second},{first}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["study_id"] for s in body["studies"]] == [second, first]  # the order asked for
    assert [(r["study_id"], r["variant"]) for r in body["rows"]] == [
        (second, "base"),
        (second, "n60"),
        (first, "base"),
        (first, "u60"),
    ]
    assert body["roi_levels"] == [0.5, 1.0] and body["metric"] == "top1"
    for study_id in (first, second):
        analysis = client.get(f"{API}/studies/{study_id}/analysis").json()
        entry = next(s for s in body["studies"] if s["study_id"] == study_id)
        assert entry["analysed"] and entry["grid"] == analysis["grid"]
        assert entry["colour_scale"] == analysis["colour_scale"]  # each its own scale
        assert entry["variants"] == analysis["variants"] and entry["base"] == "base"
        for variant in entry["variants"]:
            landscape = client.get(entry["landscape_urls"][variant])
            assert landscape.status_code == 200 and landscape.json()["variant"] == variant
            row = next(r for r in body["rows"] if (r["study_id"], r["variant"]) == (study_id, variant))
            result = analysis["results"][variant]
            assert row["best"]["value"] == result["best"]["value"]
            assert (row["best"]["lr"], row["best"]["wd"]) == (result["best"]["lr"], result["best"]["wd"])
            for level in ("0.5", "1.0"):
                assert row["roi"][level] == result["roi"][level]["n_points"]
                ellipse = result["ellipse"][level]
                if ellipse is None:
                    assert row["ellipse"][level] is None
                else:
                    for key in ("length", "width", "angle_deg", "centre"):
                        assert row["ellipse"][level][key] == ellipse[key]
                shift = result["shift"][level]
                assert row["shift"][level]["verdict"] == shift["verdict"]
                assert row["shift"][level]["p_value"] == shift["p_value"]
                assert row["shift"][level]["delta"] == shift["delta"]
            risk = result["risk"]
            assert (row["risk"]["mean"], row["risk"]["std"], row["risk"]["rel_mean"]) == (
                risk["mean"],
                risk["std"],
                risk["rel_mean"],
            )
    moved = next(r for r in body["rows"] if r["variant"] == "u60")
    assert moved["shift"]["1.0"]["tested"] and moved["shift"]["1.0"]["delta"][1] > 0.3  # larger lr
    assert "larger lr" in moved["shift"]["1.0"]["verdict"]
    assert moved["risk"]["mean"] > 0
    # one scale for all, by the same rule over both studies' observations
    with session_factory(settings)() as session:
        values = [r["top1"] for sid in (first, second) for r in result_rows(session, sid)]
    shared = body["shared_colour_scale"]
    assert shared["min"] == pytest.approx(float(np.percentile(values, 85)))
    assert shared["max"] == pytest.approx(max(values)) and shared["n_observations"] == len(values)
    lowest_own_floor = min(s["colour_scale"]["min"] for s in body["studies"])
    assert shared["min"] > lowest_own_floor  # the flat study's 80 % landscape sits below it


def test_a_study_without_results_gets_rows_of_nulls(client, two_studies):
    from tests.backend.conftest import DEMO_SPEC

    fresh = client.post(f"{API}/studies", json=DEMO_SPEC).json()["id"]
    body = client.get(f"{API}/compare", params={"studies": f"{two_studies[0]},{fresh}"}).json()
    entry = body["studies"][1]
    assert entry["analysed"] is False and entry["reason"] == "no finished runs yet" and entry["grid"] is None
    rows = [r for r in body["rows"] if r["study_id"] == fresh]
    assert [r["variant"] for r in rows] == ["base", "u50", "q8"]
    assert all(r["best"] is None and r["roi"] == {"0.5": None, "1.0": None} for r in rows)


def test_top5_of_an_import_without_it_is_explained_per_study(client, two_studies):
    body = client.get(f"{API}/compare", params={"studies": "{},{}".format(*two_studies), "metric": "top5"})
    assert body.status_code == 200
    assert all(not s["analysed"] and "top5" in s["reason"] for s in body.json()["studies"])


def test_an_unknown_study_is_404_naming_it(client, two_studies):
    response = client.get(f"{API}/compare", params={"studies": f"{two_studies[0]},987654"})
    assert response.status_code == 404
    assert response.json()["detail"] == "study 987654 not found"


@pytest.mark.parametrize(
    "studies",
    [
        "1",
        "1,1",
        "1,2,3,4,5,6,7,8,9",
        "1,,2",
        ",1,2",
        "1;2",
        "a,b",
        "1.5,2",
        "-1,2",
        "0,1",
        "+1,2",
        "1,2147483648",
        "1,99999999999999999999",
        "\u0661,\u0662",  # Arabic-Indic digits: str.isdigit() says yes, an id they are not
        "1, 2 ,3e2",
        "0x1,2",
        " ",
    ],
)
def test_hostile_id_lists_are_422_naming_studies(client, studies):
    response = client.get(f"{API}/compare", params={"studies": studies})
    assert response.status_code == 422, (studies, response.text)
    assert response.json()["detail"][0]["loc"] == ["query", "studies"]


def test_missing_or_oversized_parameters_are_422(client):
    assert client.get(f"{API}/compare").status_code == 422
    assert client.get(f"{API}/compare", params={"studies": "1," * 200 + "2"}).status_code == 422
    assert client.get(f"{API}/compare", params={"studies": "1,2", "metric": "top3"}).status_code == 422


def test_whitespace_around_ids_is_fine(client, two_studies):
    response = client.get(f"{API}/compare", params={"studies": " {} , {} ".format(*two_studies)})
    assert response.status_code == 200
