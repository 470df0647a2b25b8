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
from frontend.figures.noise import point_map_figure
from frontend.pages import latency_panel as lp
from frontend.pages import study_compression as sc
from frontend.pages import study_data as sd
from frontend.pages import study_noise as sn
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
    from backend.api.comparison_schemas import Compare, CompareRow
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
    assert "onnxruntime-cpu" in lp.flops_note(data)
    layers = sd.histogram_layers(data, "base")
    assert layers and set(sd.histogram_series(data, "base", layers[0])) == {"base (after)"}


# --- seed noise (issue 16 item 2): the record analyse() makes with 3 noisy seeds and with one -------
@pytest.fixture(scope="module")
def noisy() -> dict:
    """3 seeds whose spread (std 0.36 pp) puts the 0.5-ROI within noise, not the 1.0-ROI."""
    table = [dict(r, run_id=n + 1) for n, r in enumerate(synthetic_rows(seeds=3, wobble=0.8))]
    return analyse(table).to_dict()


@pytest.fixture(scope="module")
def one_seed() -> dict:
    table = [dict(r, run_id=n + 1) for n, r in enumerate(synthetic_rows(seeds=1))]
    return analyse(table).to_dict()


def test_the_noise_readers_read_the_real_three_seed_record(noisy):
    rows = {row["variant"]: row for row in sn.noise_rows(noisy)}
    for variant in ("base", "u50"):
        noise = noisy["results"][variant]["noise"]
        row = rows[variant]
        assert (row["noise_std"], row["source"], row["within_noise_below"]) == (
            noise["std"],
            "seeds",
            noise["within_noise_below"],
        )
        assert noise["roi_within_noise"] == {"0.5": True, "1.0": False}
        assert (row["within_0.5"], row["within_1.0"]) == ("yes", "no")
        best = noisy["results"][variant]["best"]
        assert (row["best_ci_low"], row["best_ci_high"]) == (best["ci_low"], best["ci_high"])
        assert f"{best['ci_low']:.2f} – {best['ci_high']:.2f}" in sn.best_ci_text(noisy, variant)
    warnings = sn.within_noise_warnings(noisy)
    assert [w.split(":")[0] for w in warnings] == ["base", "u50"]
    assert all("0.5-ROI is within noise" in w and "1.0-ROI" not in w for w in warnings)
    assert sn.estimate_notes(noisy) == []
    assert sn.resampling_notes(noisy) == [
        "u50: the shift test resampled seeds per point and recomputed the ROI each time."
    ]
    assert not any(option["disabled"] for option in sn.view_options(noisy))
    # the level radio carries the record's keys ("1.0": a number would come back as 1)
    assert [o["value"] for o in sn.level_options(noisy)] == ["0.5", "1.0"]
    assert sn.chosen_level(noisy, "1.0") == 1.0
    assert sn.chosen_level(noisy, 1) == sn.chosen_level(noisy, "../1") == 0.5  # forged: the first level
    # every point's membership lands in its own grid cell, and its spread and seeds too
    points = rec.landscape_points(noisy, "u50")
    membership = noisy["results"]["u50"]["roi_membership"]["1.0"]
    assert len(membership) == len(points)
    figures = {
        view: point_map_figure(noisy, "u50", view, level=1.0) for view in ("membership", "spread", "count")
    }
    grid = rec.landscape_grid(noisy, "u50")
    for point, share in zip(points, membership, strict=True):
        i, j = grid["y"].index(point["y"]), grid["x"].index(point["x"])
        assert figures["membership"].data[0].z[i][j] == share
        assert figures["spread"].data[0].z[i][j] == point["std"]
        assert figures["count"].data[0].z[i][j] == point["seeds"] == 3
        assert figures["count"].data[0].customdata[i][j][0] == rec.seed_summary(point)
    assert "± " in rec.seed_summary(points[0]) and "(3 seeds)" in rec.seed_summary(points[0])


def test_the_noise_readers_read_the_real_one_seed_record(one_seed):
    for row in sn.noise_rows(one_seed):
        noise = one_seed["results"][row["variant"]]["noise"]
        assert noise["source"] == "fit" and noise["estimate"] is True
        assert (row["noise_std"], row["source"]) == (noise["std"], "fit (estimate)")
        assert row["best_ci_low"] is None and row["best_ci_high"] is None
    notes = sn.estimate_notes(one_seed)
    assert len(notes) == 2 and all(
        "an estimate from the residuals of a local quadratic fit" in n for n in notes
    )
    assert "no confidence interval" in sn.best_ci_text(one_seed, "base")
    disabled = {option["value"] for option in sn.view_options(one_seed) if option["disabled"]}
    assert disabled == {"spread", "membership"}  # one seed: no spread, no resamples to count
    assert rec.roi_membership(one_seed, "base", 0.5) is None
    empty = point_map_figure(one_seed, "base", "membership", level=0.5)
    assert not empty.data and "two or more seeds" in empty.layout.annotations[0].text
    assert sn.resampling_notes(one_seed) == [
        "u50: the shift test resampled the ROI's points (one seed per point)."
    ]


def test_too_few_points_for_the_fit_say_so_instead_of_a_number():
    table = [dict(r, run_id=n + 1) for n, r in enumerate(synthetic_rows(seeds=1)) if r["variant"] == "base"][
        :4
    ]
    few = analyse(table).to_dict()
    noise = few["results"]["base"]["noise"]
    assert noise["std"] is None and noise["reason"]
    assert sn.estimate_notes(few) == [f"base: no noise estimate yet ({noise['reason']})."]
    (row,) = sn.noise_rows(few)
    assert (row["within_0.5"], row["within_1.0"], row["note"]) == ("—", "—", noise["reason"])
    assert sn.within_noise_warnings(few) == []


# --- scans, iterations and latency (issues 17, 18): what the real jobs write -----------------------
@pytest.fixture(scope="module")
def digits_jobs(tmp_path_factory) -> dict:
    """A digits_cnn base model, its real scan job, a real 2-round iterative structured prune job
    (finetune 1 epoch a round) and the real measure job of the base and of the pruned model."""
    from workers.engine.artifacts import save_model
    from workers.engine.models import build_model
    from workers.jobs.inputs import RunInput
    from workers.jobs.measure import run_measure
    from workers.jobs.prune import run_prune
    from workers.jobs.scan import run_scan

    root = tmp_path_factory.mktemp("digits-jobs")
    save_model(
        build_model("digits_cnn", num_classes=10),
        root / "model.pt",
        model_name="digits_cnn",
        num_classes=10,
        input_shape=(1, 8, 8),
    )
    spec = {
        "name": "contracts",
        "dataset": {"name": "digits"},
        "model": {"name": "digits_cnn"},
        "recipe": {"epochs": 1, "batch_size": 64},
        "grid": {"lr_centre": 0.05, "wd_centre": 1e-4, "step": 0.5, "size": 1},
        "variants": [{"name": "base", "kind": "base"}],
        "scans": [
            {"kind": "structured", "scope": "layer", "fractions": [0, 0.5]},
            {"kind": "unstructured", "scope": "global", "fractions": [0, 0.9]},
        ],
    }
    it2 = {"name": "it2", "kind": "structured", "flops_ratio": 0.5, "iterations": 2, "retrain": "finetune",
           "finetune_epochs": 1}  # fmt: skip

    def run_input(kind, variant_id, name, vkind, vspec, source_model, **extra):
        return RunInput(
            run_id=variant_id * 10 + len(kind),
            study_id=1,
            kind=kind,
            variant_id=variant_id,
            variant_name=name,
            variant_kind=vkind,
            variant_spec=vspec,
            spec=spec,
            artifact_root=root,
            source_model=source_model,
            source_run_id=7,
            lr=0.05,
            wd=1e-4,
            latency_warmup=1,
            latency_runs=2,
            **extra,
        )

    base_spec = {"name": "base", "kind": "base"}
    scan = run_scan(run_input("scan", 1, "base", "base", base_spec, "model.pt"))
    prune = run_prune(run_input("prune", 2, "it2", "structured", it2, "model.pt"))
    assert scan.status == prune.status == "succeeded"
    measured = {
        "base": run_measure(run_input("measure", 1, "base", "base", base_spec, "model.pt")).variant_updates,
        "it2": run_measure(
            run_input("measure", 2, "it2", "structured", it2, prune.model_path)
        ).variant_updates,
    }
    return {
        "scan": scan.variant_updates["scan"],
        "iterations": prune.result["iterations"],
        "measured": measured,
    }


def test_the_scan_and_iteration_readers_read_what_the_jobs_store(digits_jobs):
    from backend.api.schemas import IterationStep, VariantScan

    scans = [VariantScan(**s).model_dump() for s in digits_jobs["scan"]]  # the API's declared shape
    steps = [IterationStep(**s).model_dump() for s in digits_jobs["iterations"]]
    variants = [
        {"name": "base", "kind": "base", "spec": {}, "scan": scans, "iterations": None},
        {"name": "it2", "kind": "structured", "spec": {"iterations": 2}, "scan": None, "iterations": steps},
    ]
    data = {
        "study": {"id": 4, "spec": {"scans": [{}, {}]}},
        "analysis": {"metric": "top1"},
        "extras": {"variants": variants},
    }
    charts = sc.scan_charts(data)
    assert [c["name"] for c in charts] == ["scan-global", "scan-base-0"]
    layer_rows = scans[0]["rows"]
    layers = list(dict.fromkeys(r["layer"] for r in layer_rows))
    assert layers == ["conv2", "conv3"]
    per_layer = {c["label"]: c for c in charts[1]["curves"]}
    assert list(per_layer) == layers  # one curve per layer: the fragile-layer view
    for row in layer_rows:
        curve = per_layer[row["layer"]]
        assert curve["accuracy"][curve["fractions"].index(row["fraction"])] == row["top1"]
    (global_curve,) = charts[0]["curves"]
    assert global_curve["label"] == "base · unstructured"
    assert global_curve["accuracy"] == [r["top1"] for r in scans[1]["rows"]]
    fragile = sc.fragile_layers(charts[1]["curves"])
    assert {layer for layer, _, _ in fragile} == set(layers) and fragile[0][2] >= fragile[-1][2]
    assert sc.scans_csv_href(data) == "/api/v1/studies/4/scans.csv"

    (iterative,) = sc.iterative_variants(data)
    read = sc.iteration_steps(iterative)
    assert [s["step"] for s in read] == [1, 2]
    assert [(s["after_pruning"], s["after_retraining"]) for s in read] == [
        (s["pruned_top1"], s["top1"]) for s in steps
    ]
    assert all(s["reached"].startswith("FLOPs ratio") for s in read)


def _compare_body(measured: dict, *, drop: dict[str, str] | None = None) -> dict:
    """The /compare body the API builds from real measure records (CompareRow, latency_comparison);
    `drop`: {variant: runtime} removes that runtime's record (a variant timed on the other only)."""
    from backend.analysis.latency import latency_comparison, latency_records
    from backend.api.comparison_schemas import Compare, CompareRow

    rows, inputs = [], []
    base_flops = measured["base"]["flops"]
    kinds = {"base": "base", "it2": "structured", "u80": "unstructured"}
    accuracy = {"base": 90.0, "it2": 88.0, "u80": 85.0}
    for name, kind in kinds.items():
        updates = measured["it2" if name == "u80" else name]
        latency = latency_records(updates["latency"])
        if drop and name in drop:
            latency.pop(drop[name])
        row = dict.fromkeys(CompareRow.model_fields)
        row.update(
            name=name,
            kind=kind,
            params=updates["params"],
            params_nonzero=updates["params_nonzero"],
            flops=updates["flops"],
            flops_kept=updates["flops"] / base_flops,
            size_bytes=updates["size_bytes"],
            size_mb=updates["size_bytes"] / 1e6,
            size_sparse_bytes=updates["size_sparse_bytes"],
            latency=latency,
            best_top1=accuracy[name],
            finished_runs=1,
        )
        rows.append(CompareRow(**row))
        inputs.append(
            {
                "name": name,
                "kind": kind,
                "latency": latency,
                "accuracy": accuracy[name],
                "flops_ratio": row["flops_kept"],
            }
        )
    comparison = latency_comparison(inputs, "base").to_dict()
    return Compare(
        study_id=1, base="base", flops_convention="FLOPs = ...", variants=rows, latency=comparison
    ).model_dump()


def test_the_latency_panel_shows_the_apis_rows_of_the_selected_runtime_only(digits_jobs):
    """it2 is timed on torch-cpu only: under onnxruntime-cpu (the default) it has no ratio, under
    torch-cpu it has the API's. Every ratio the panel shows is the API's row of the runtime chosen."""
    compare = _compare_body(digits_jobs["measured"], drop={"it2": "onnxruntime-cpu"})
    data = {"study": {"kind": "native"}, "analysis": {}, "extras": {"compare": compare, "variants": []}}
    options, chosen = lp.runtime_choice(data)
    assert chosen == "onnxruntime-cpu" == compare["latency"]["default_runtime"]
    assert [o["value"] for o in options] == ["onnxruntime-cpu", "torch-cpu"]
    assert lp.runtime_choice(data, "torch-cpu")[1] == "torch-cpu"
    assert lp.runtime_choice(data, "no-such-runtime")[1] == "onnxruntime-cpu"
    assert lp.batch_choice(data, "32")[1] == "32" and lp.batch_choice(data, ["1"])[1] == "1"
    assert lp.batch_choice(data) == ([{"label": " 1", "value": "1"}, {"label": " 32", "value": "32"}], "1")

    by_runtime = compare["latency"]["by_runtime"]
    for runtime in ("onnxruntime-cpu", "torch-cpu"):
        api = {(r["variant"], r["batch"]): r for r in by_runtime[runtime]["rows"]}
        for row in sd.measurement_rows(data, runtime):
            b1, b32 = api[(row["variant"], "1")], api[(row["variant"], "32")]
            assert (row["latency_ms"], row["latency_ratio"]) == (b1["median_ms"], b1["latency_ratio"])
            assert (row["latency_ms_32"], row["latency_ratio_32"]) == (b32["median_ms"], b32["latency_ratio"])
        for batch in ("1", "32"):
            assert lp.chart_rows(data, runtime, batch) == [
                {"variant": r["variant"], "top1": r["accuracy"], "latency_ms": r["median_ms"]}
                for r in by_runtime[runtime]["rows"]
                if r["batch"] == batch
            ]
            assert lp.latency_front(data, runtime, batch) == by_runtime[runtime]["pareto_front"][batch]
        assert lp.not_faster_messages(data, runtime) == by_runtime[runtime]["messages"]
        columns = [name for _, name, _ in lp.measure_columns(runtime) if "latency" in name]
        assert columns and all(f"{runtime})" in name for name in columns)

    ort = {r["variant"]: r for r in lp.ratio_rows(data, "onnxruntime-cpu", "1")}
    torch_rows = {r["variant"]: r for r in lp.ratio_rows(data, "torch-cpu", "1")}
    assert set(ort) == set(torch_rows) == {"it2", "u80"}  # the pruned variants, FLOPs ratio beside latency
    assert ort["it2"]["latency_ratio"] is None and "not timed on onnxruntime-cpu" in ort["it2"]["reason"]
    assert torch_rows["it2"]["latency_ratio"] is not None
    assert ort["it2"]["flops_ratio"] == torch_rows["it2"]["flops_ratio"] < 1
    (it2_ort,) = [r for r in sd.measurement_rows(data, "onnxruntime-cpu") if r["variant"] == "it2"]
    assert it2_ort["latency_ms"] is None and it2_ort["latency_ratio"] is None
    assert "not timed on onnxruntime-cpu" in it2_ort["latency_reason"]
    (untimed,) = lp.untimed_notes(data, "onnxruntime-cpu")
    assert untimed.startswith("it2: no latency ratio on onnxruntime-cpu: not timed on onnxruntime-cpu")
    assert lp.untimed_notes(data, "torch-cpu") == []
    (note,) = lp.unstructured_notes(data, "onnxruntime-cpu")
    assert note.startswith("u80 (unstructured): ") and "dense kernels do not skip zeros" in note
    assert "MB sparse encoding" in note


def _import(client, rows: list[dict], name: str) -> int:
    lines = ["variant,lr,wd,seed,top1"] + [
        f"{r['variant']},{r['lr']},{r['wd']},{r['seed']},{r['top1']}" for r in rows
    ]
    response = client.post(
        "/api/v1/studies/import", files={"file": (f"{name}.csv", "\n".join(lines) + "\n", "text/csv")}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_the_real_compare_endpoint_reads_into_the_compare_page(tmp_path):
    """GET /api/v1/compare?studies= as the API makes it, through the /compare page's readers."""
    from fastapi.testclient import TestClient

    from backend.api import create_app
    from backend.db.migrate import upgrade
    from backend.settings import Settings
    from frontend.pages import compare as cmp

    settings = Settings(data_dir=tmp_path, check_dataset_paths=False)
    upgrade(settings)
    client = TestClient(create_app(settings))
    first = _import(client, synthetic_rows(seeds=3), "three seeds")
    second = _import(client, [r for r in synthetic_rows(seeds=1) if r["variant"] == "base"], "one seed")
    compare = client.get("/api/v1/compare", params={"studies": f"{first},{second}"}).json()
    best = cmp.best_rows(compare)
    assert [(r["study_id"], r["variant"]) for r in best] == [
        (first, "base"),
        (first, "u50"),
        (second, "base"),
    ]
    analysis = client.get(f"/api/v1/studies/{first}/analysis").json()
    assert best[0]["best"] == analysis["results"]["base"]["best"]["value"]
    assert best[0]["ci_low"] == analysis["results"]["base"]["best"]["ci_low"] is not None
    roi = {(r["study_id"], r["variant"]): r for r in cmp.roi_rows(compare)}
    assert roi[(first, "base")]["roi_0.5"] == analysis["results"]["base"]["roi"]["0.5"]["n_points"]
    shift = {(r["study_id"], r["variant"]): r for r in cmp.shift_rows(compare)}
    assert shift[(first, "base")]["shift_0.5"] == "(the reference)" and shift[(first, "u50")]["shift_0.5"]
    risk = {(r["study_id"], r["variant"]): r for r in cmp.risk_rows(compare)}
    assert risk[(first, "u50")]["risk_mean"] == analysis["results"]["u50"]["risk"]["mean"]
    assert cmp.tables(compare)  # the four tables build from the real body


def test_real_extension_records_read_into_the_study_page(tmp_path):
    """A manual extension as the service records it (StudyOut.extensions), through the page's reader."""
    from fastapi.testclient import TestClient

    from backend.api import create_app
    from backend.db.migrate import upgrade
    from backend.settings import Settings
    from frontend.pages import study_extensions as ext
    from tests.backend.conftest import DEMO_SPEC

    settings = Settings(data_dir=tmp_path, check_dataset_paths=False)
    upgrade(settings)
    client = TestClient(create_app(settings))
    sid = client.post("/api/v1/studies", json=DEMO_SPEC).json()["id"]
    assert client.post(f"/api/v1/studies/{sid}/extend", json={"lr_high": 1}).status_code == 200
    study = client.get(f"/api/v1/studies/{sid}").json()
    (row,) = ext.extension_rows(study)
    assert row["kind"] == "by hand" and "higher lr" in row["sides"] and row["added_points"] == 3
    assert ext.extensions_view(study)
