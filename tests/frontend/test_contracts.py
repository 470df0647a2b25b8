"""Contract tests: what the backend really makes, read by the dashboard's readers.

The readers know one shape of each record (frontend/figures/record.py, frontend/pages/study_data.py,
frontend/pages/study_record.py). These tests feed them the real thing: the analysis record that
`backend.analysis.analyse` makes, the variant row a real measure job writes, the /compare body
the API builds from it. A renamed or reshaped field fails here instead of blanking a panel.
"""

from __future__ import annotations

import pytest

from backend.analysis import analyse
from frontend.figures import record as rec
from frontend.pages import study_data as sd
from tests.frontend.synthetic import rows as synthetic_rows


@pytest.fixture(scope="module")
def analysis() -> dict:
    table = [dict(r, run_id=n + 1) for n, r in enumerate(synthetic_rows(seeds=3))]
    return analyse(table).to_dict()


def test_the_landscape_readers_read_every_point_of_the_real_record(analysis):
    assert rec.variant_names(analysis) == ["base", "u50"]
    for variant in ("base", "u50"):
        result = analysis["results"][variant]
        columns = result["landscape"]["points"]
        points = rec.landscape_points(analysis, variant)
        assert len(points) == len(columns["x"]) == result["landscape"]["n_points"] > 0
        assert [p["value"] for p in points] == columns["mean"]
        assert [p["seeds"] for p in points] == columns["n"] == [3] * len(points)
        assert [p["std"] for p in points] == columns["std"]
        assert all(p["run_ids"] for p in points)
        grid = rec.landscape_grid(analysis, variant)
        assert grid["x"] == result["landscape"]["x"] and grid["y"] == result["landscape"]["y"]
        assert rec.grid_has_contour(grid)
        best, drawn = result["best"], rec.best_point(analysis, variant)
        assert (drawn["value"], drawn["lr"], drawn["wd"], drawn["seeds"]) == (
            best["value"],
            best["lr"],
            best["wd"],
            best["n"],
        )
        assert (drawn["ci_low"], drawn["ci_high"]) == (best["ci_low"], best["ci_high"])
        assert drawn["ci_low"] is not None  # three seeds: a bootstrap interval
        levels = [e["level"] for e in rec.ellipses(analysis, variant)]
        assert levels == sorted(float(k) for k, e in result["ellipse"].items() if e is not None)
        assert levels  # this landscape has ellipses to draw
    assert rec.colour_range(analysis) == (analysis["colour_scale"]["min"], analysis["colour_scale"]["max"])


def test_the_tables_read_the_real_record(analysis):
    rows, columns = sd.summary_table(analysis)
    assert [r["variant"] for r in rows] == ["base", "u50"]
    assert {c["id"] for c in columns} >= {"best", "best_lr", "best_wd", "best_ci_low", "noise_std"}
    assert rows[0]["best"] == analysis["results"]["base"]["best"]["value"]
    ellipse_rows, _ = sd.ellipse_table(analysis)
    assert {(r["variant"], r["level"]) for r in ellipse_rows} == {
        (v, level) for v in ("base", "u50") for level in (0.5, 1.0)
    }
    assert all(r["length"] is not None for r in ellipse_rows if r["n_points"] >= 5)
    risk_rows, _ = sd.risk_table(analysis)
    base_risk = analysis["results"]["base"]["risk"]
    assert (risk_rows[0]["mean"], risk_rows[0]["n"]) == (base_risk["mean"], base_risk["n"])
    assert [s["values"] for s in sd.risk_series(analysis)][0] == base_risk["values"]
    verdicts = sd.shift_verdicts(analysis)
    assert len(verdicts) == 2 and all(v.startswith("u50, ") for v in verdicts)
    assert sd.extension_text(analysis)[0]  # the base's extension record reads into a sentence


def test_a_real_measure_run_reads_into_the_measurement_table(tmp_path):
    """A real measure job (digits_cnn, both CPU runtimes), the /compare body the API makes of it,
    and the dashboard's measurement row: latency on the default runtime, named, and the histograms."""
    from backend.analysis.latency import latency_comparison, latency_records
    from backend.api.schemas import Compare, CompareRow
    from workers.engine.artifacts import save_model
    from workers.engine.models import build_model
    from workers.jobs.inputs import RunInput
    from workers.jobs.measure import run_measure

    save_model(
        build_model("digits_cnn", num_classes=10),
        tmp_path / "model.pt",
        model_name="digits_cnn",
        num_classes=10,
        input_shape=(1, 8, 8),
    )
    inp = RunInput(
        run_id=1,
        study_id=1,
        kind="measure",
        variant_id=1,
        variant_name="base",
        variant_kind="base",
        variant_spec={"name": "base", "kind": "base"},
        spec={"dataset": {"name": "digits"}, "model": {"name": "digits_cnn"}, "recipe": {}},
        artifact_root=tmp_path,
        source_model="model.pt",
        latency_warmup=1,
        latency_runs=2,
    )
    updates = run_measure(inp).variant_updates
    latency = latency_records(updates["latency"])
    assert {"onnxruntime-cpu", "torch-cpu"} <= set(latency)
    row = dict.fromkeys(CompareRow.model_fields)
    row.update(
        name="base",
        kind="base",
        params=updates["params"],
        params_nonzero=updates["params_nonzero"],
        flops=updates["flops"],
        size_bytes=updates["size_bytes"],
        size_mb=updates["size_bytes"] / 1e6,
        size_sparse_bytes=updates["size_sparse_bytes"],
        latency=latency,
        best_top1=90.0,
        finished_runs=1,
    )
    comparison = latency_comparison(
        [{"name": "base", "kind": "base", "latency": latency, "accuracy": 90.0}], "base"
    )
    compare = Compare(
        study_id=1,
        base="base",
        flops_convention="FLOPs = ...",
        variants=[CompareRow(**row)],
        latency=comparison.to_dict(),
    ).model_dump()
    variant_row = {"name": "base", "kind": "base", "source": None, "histograms": updates["histograms"]}
    data = {"study": {"kind": "native"}, "extras": {"compare": compare, "variants": [variant_row]}}

    (table_row,) = sd.measurement_rows(data)
    ort = latency["onnxruntime-cpu"]["by_batch"]
    assert (
        table_row["latency_ms"] == ort["1"]["median_ms"]
        and table_row["latency_ms_32"] == ort["32"]["median_ms"]
    )
    assert table_row["latency_ratio"] is None  # the base is the reference: no ratio to itself
    assert table_row["params"] == updates["params"] and table_row["size_mb"] == updates["size_bytes"] / 1e6
    assert sd.latency_on(data)[0] == "onnxruntime-cpu"
    assert (
        sd.measurement_rows(data, "torch-cpu")[0]["latency_ms"]
        == latency["torch-cpu"]["by_batch"]["1"]["median_ms"]
    )
    assert "onnxruntime-cpu" in sd.flops_note(data)
    layers = sd.histogram_layers(data, "base")
    assert layers and set(sd.histogram_series(data, "base", layers[0])) == {"base (after)"}
