"""analyse() end to end, its JSON, the `prunescape analyse` command and the synthetic generator."""

from __future__ import annotations

import json
import time

import pytest

from backend.analysis import analyse, parse_results_csv
from backend.analysis.synthetic import SyntheticVariant, rows_to_csv, synthetic_rows
from backend.analysis.synthetic import main as synthetic_main
from backend.cli.main import main as cli_main

VARIANT_KEYS = {
    "best", "roi", "ellipse", "ellipse_reason", "risk", "shift", "extension", "landscape", "noise",
    "roi_membership",
}  # fmt: skip


@pytest.fixture(scope="module")
def shifted_rows():
    variants = [
        SyntheticVariant("base"),
        SyntheticVariant("u60", 0.6, 0.0, 92.2),
        SyntheticVariant("same", 0, 0, 92.2),
    ]
    return synthetic_rows(variants, seed=0, run_ids=True)


def test_json_shape_and_no_nan(shifted_rows):
    d = analyse(shifted_rows).to_dict()
    json.dumps(d, allow_nan=False)  # raises on NaN / infinity
    assert d["variants"] == ["base", "u60", "same"] and d["metric"] == "top1"
    assert {"metric", "variants", "colour_scale", "summary", "results", "grid"} <= set(d)
    assert set(d["colour_scale"]) == {"min", "max", "percentile", "n_observations"}
    for v in d["variants"]:
        res = d["results"][v]
        assert set(res) >= VARIANT_KEYS
        assert set(res["roi"]) == {"0.5", "1.0"}
        ell = res["ellipse"]["1.0"]
        assert {"centre", "length", "width", "angle_deg", "n_points"} <= set(ell) and len(ell["centre"]) == 2
        assert {"mean", "std", "rel_mean", "rel_std", "n", "missing", "values"} <= set(res["risk"])
        assert len(res["landscape"]["z"]) == 9 and len(res["landscape"]["z"][0]) == 9
        assert res["landscape"]["points"]["run_ids"][0][0].startswith(v)
    assert d["results"]["base"]["shift"]["1.0"]["tested"] is False
    assert [r["variant"] for r in d["summary"]["rows"]] == ["base", "u60", "same"]
    assert d["summary"]["csv"].splitlines()[0].split(",") == d["summary"]["columns"]


def test_known_optimum_is_found_without_noise():
    rows = synthetic_rows([SyntheticVariant("base"), SyntheticVariant("v", 0.4, -0.2, 92.0)], noise=0.0)
    res = analyse(rows).results
    assert (res["base"].best.lr, res["base"].best.wd) == pytest.approx((0.1, 1e-4))
    assert (res["v"].best.y, res["v"].best.x) == pytest.approx((-0.6, -4.2))
    assert res["v"].best.value == pytest.approx(92.0)


def test_base_missing_degrades_with_reasons():
    rows = [r for r in synthetic_rows([SyntheticVariant("v")])]
    report = analyse(rows)
    assert report.results["v"].risk.reason and not report.results["v"].shift["1.0"].tested
    assert any("base" in w for w in report.warnings)


def test_top5_requested_but_absent_is_a_value_error(shifted_rows):
    with pytest.raises(ValueError, match="no top5"):
        analyse(shifted_rows, metric="top5")


def test_cli_text_and_json(tmp_path, capsys, shifted_rows):
    path = tmp_path / "results.csv"
    path.write_text(rows_to_csv(shifted_rows), encoding="utf-8")
    assert cli_main(["analyse", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Shift vs base" in text and "shift towards larger lr" in text and "no significant shift" in text
    assert "Seed noise" in text and "fit (estimate)" in text and "roi points" in text
    assert cli_main(["analyse", str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["results"]["u60"]["shift"]["1.0"]["verdict"] == "shift towards larger lr"
    assert d["results"]["same"]["shift"]["1.0"]["verdict"] == "no significant shift"


def test_cli_bad_file_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("variant,lr,wd,seed,top1\nbase,0.1,1e-4,0,101\n", encoding="utf-8")
    assert cli_main(["analyse", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prunescape analyse: error: line 2, column 'top1'") and "\n" not in err
    assert cli_main(["analyse", str(path), "--metric", "top5"]) == 2


def test_synthetic_module_writes_a_parsable_csv(tmp_path):
    out = tmp_path / "s.csv"
    assert synthetic_main(["--out", str(out), "--shift", "0.6,0", "--variants", "a,b", "--size", "5"]) == 0
    table = parse_results_csv(out.read_bytes())
    assert table.variants == ["base", "a", "b"] and len(table) == 75


def test_ten_thousand_runs_are_analysed_quickly():
    variants = [SyntheticVariant("base")] + [SyntheticVariant(f"v{i}", 0.05 * i, 0, 92.5) for i in range(8)]
    rows = synthetic_rows(variants, size=33, step=0.1)
    from backend.analysis.table import table_from_rows

    table = table_from_rows(rows)
    assert len(table) == 9 * 33 * 33
    analyse(table)
    start = time.process_time()
    analyse(table)
    # bench/analysis_speed.py measures properly; this only catches a return to per-run Python loops
    assert time.process_time() - start < 2.0
