"""Issues 17 and 18 in Chromium: a digits study with a structured layer scan, a whole-model
unstructured scan, an `iterations: 3` structured variant, an unstructured and an fp16 variant,
created through the API and run to the end in-process (`workers.tasks.execute` on SQLite, as
tests/workers/test_scans_and_iterations.py does), then served to the browser: the scan curves and
their CSV, the per-round accuracies, and latency on one runtime at a time (the fp16 variant is
timed on torch-cpu only, so it has no ratio under onnxruntime-cpu). Saves
docs/screenshots/{study-compression,study-latency}.png."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from tests.frontend.live import REPO, live_server

SCREENSHOTS = REPO / "docs" / "screenshots"
SPEC = {
    "name": "digits compression",
    "dataset": {"name": "digits"},
    "model": {"name": "digits_cnn"},
    "recipe": {"epochs": 2, "batch_size": 64},
    "grid": {"lr_centre": 0.05, "wd_centre": 1e-4, "step": 0.5, "size": 1},
    "variants": [
        {"name": "base", "kind": "base"},
        {"name": "it3", "kind": "structured", "flops_ratio": 0.5, "iterations": 3, "retrain": "finetune",
         "finetune_epochs": 1},
        {"name": "u70", "kind": "unstructured", "amount": 0.7},
        {"name": "h16", "kind": "fp16", "source": "base"},
    ],
    "scans": [
        {"kind": "structured", "scope": "layer", "fractions": [0, 0.25, 0.5]},
        {"kind": "unstructured", "scope": "global", "fractions": [0, 0.5, 0.9]},
    ],
}  # fmt: skip


def _run_study_to_the_end(data_dir) -> int:
    """Create SPEC through the API and execute every run in this process, as a worker would."""
    import sqlalchemy as sa
    from fastapi.testclient import TestClient
    from sqlalchemy.orm import sessionmaker

    from backend.api import create_app
    from backend.db.migrate import upgrade
    from backend.db.models import Run
    from backend.db.session import dispose_engines, get_engine
    from backend.settings import Settings
    from workers.tasks import execute

    # a quick latency protocol (the SPEC's is 10 warm-up / 50 timed runs; meets_spec says so)
    settings = Settings(
        data_dir=data_dir, database_url=None, broker_url=None, latency_warmup=1, latency_runs=3
    )
    upgrade(settings)
    with TestClient(create_app(settings)) as client:
        created = client.post("/api/v1/studies", json=SPEC)
        assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    make = sessionmaker(bind=get_engine(settings))
    while True:
        with make() as session:
            pending = session.scalars(
                sa.select(Run.id).where(Run.study_id == study_id, Run.status == "pending").order_by(Run.id)
            ).all()
        if not pending:
            break
        for run_id in pending:
            execute(run_id, settings=settings)
    with make() as session:
        ended = session.execute(
            sa.select(Run.kind, Run.status, Run.error).where(Run.study_id == study_id)
        ).all()
    assert {(kind, status) for kind, status, _ in ended} <= {
        (kind, "succeeded") for kind in ("train", "prune", "quantise", "measure", "scan")
    }, ended
    dispose_engines()
    return study_id


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("prunescape-compression")
    study_id = _run_study_to_the_end(data_dir)
    with live_server(data_dir) as base:
        api = f"{base}/api/v1/studies/{study_id}"
        study = httpx.get(api, timeout=60).json()
        assert study["status"] == "succeeded"  # finished, from the API
        yield {
            "base": base,
            "id": study_id,
            "variants": {v["name"]: v for v in httpx.get(api + "/variants", timeout=60).json()["items"]},
            "compare": httpx.get(api + "/compare", timeout=60).json(),
        }


def _plot(page, name: str) -> list[dict]:
    """Traces of the figure card `name`: type, name, x, y."""
    return page.evaluate(
        """(name) => {
            const el = [...document.querySelectorAll('.js-plotly-plot')].find(
                g => (g.closest('[id]') || {}).id.includes('"name":"' + name + '"'));
            return el ? el.data.map(t => ({type: t.type || 'scatter', name: t.name, x: t.x, y: t.y})) : null;
        }""",
        name,
    )


def _axis_title(page, name: str) -> str:
    return page.evaluate(
        """(name) => [...document.querySelectorAll('.js-plotly-plot')].find(
                g => (g.closest('[id]') || {}).id.includes('"name":"' + name + '"')).layout.xaxis.title.text""",
        name,
    )


def _table(page, name: str) -> dict:
    """The DataTable {'type': 'table', 'name': name}'s rows and columns as the renderer holds them."""
    return page.evaluate(
        "(name) => { const p = window.dash_component_api.getLayout({type: 'table', name: name}).props;"
        " return {data: p.data, columns: p.columns}; }",
        name,
    )


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_draws_the_scan_curves_and_the_iteration_accuracies(served, page):
    page.goto(f"{served['base']}/studies/{served['id']}")
    page.wait_for_function("() => document.querySelectorAll('#scan-cards .js-plotly-plot').length === 2")
    layer_scan, global_scan = served["variants"]["base"]["scan"]
    assert (layer_scan["scope"], global_scan["scope"]) == ("layer", "global")
    # one curve per layer for the layer scan: the view that tells which layers are fragile
    curves = {t["name"]: t for t in _plot(page, "scan-base-0")}
    assert list(curves) == ["conv2", "conv3"]
    for row in layer_scan["rows"]:
        curve = curves[row["layer"]]
        assert curve["y"][curve["x"].index(row["fraction"])] == pytest.approx(row["top1"])
    (whole,) = _plot(page, "scan-global")
    assert whole["name"] == "base · unstructured"
    assert whole["y"] == pytest.approx([row["top1"] for row in global_scan["rows"]])
    cards = page.locator("#scan-cards").inner_text()
    assert "Most fragile first" in cards and "conv2" in cards
    # the CSV export the page links to holds every scan row
    href = page.locator("#scans-csv").get_attribute("href")
    assert href == f"/api/v1/studies/{served['id']}/scans.csv"
    exported = list(csv.DictReader(io.StringIO(httpx.get(served["base"] + href, timeout=60).text)))
    assert len(exported) == len(layer_scan["rows"]) + len(global_scan["rows"])

    # it3's three rounds: accuracy right after pruning and after the round's retraining
    steps = served["variants"]["it3"]["iterations"]
    assert [s["step"] for s in steps] == [1, 2, 3]
    traces = {t["name"]: t for t in _plot(page, "iterations-it3")}
    assert traces["after pruning"]["y"] == pytest.approx([s["pruned_top1"] for s in steps])
    assert traces["after retraining"]["y"] == pytest.approx([s["top1"] for s in steps])
    rounds = _table(page, "iterations-it3")["data"]
    assert [(r["step"], r["after_retraining"]) for r in rounds] == [(s["step"], s["top1"]) for s in steps]
    page.wait_for_timeout(500)
    page.locator("#study-compression").screenshot(path=str(SCREENSHOTS / "study-compression.png"))
    assert not page.errors


def _shown_on(page, served, runtime: str) -> None:
    """What the panel shows is the API's rows of `runtime`, named with it, and nothing else."""
    view = served["compare"]["latency"]["by_runtime"][runtime]
    api = {(r["variant"], r["batch"]): r for r in view["rows"]}
    page.wait_for_function(
        "(rt) => { const g = [...document.querySelectorAll('.js-plotly-plot')].find(el => "
        "(el.closest('[id]') || {}).id.includes('tradeoff-latency')); "
        "return g && g.layout.xaxis.title.text.includes(rt); }",
        arg=runtime,
    )
    assert _axis_title(page, "tradeoff-latency") == f"latency, batch 1 (ms, {runtime})"
    assert f"Accuracy vs latency (batch 1, {runtime})" in page.locator("#latency-charts").inner_text()
    points = next(t for t in _plot(page, "tradeoff-latency") if t["name"] == "variants")
    timed = {v: r["median_ms"] for (v, b), r in api.items() if b == "1" and r["median_ms"] is not None}
    assert sorted(points["x"]) == pytest.approx(sorted(timed.values()))
    front = next((t for t in _plot(page, "tradeoff-latency") if t["name"] == "Pareto front"), None)
    names = view["pareto_front"]["1"]
    if len(names) >= 2:  # the API's front of this runtime, drawn as given
        assert front["x"] == pytest.approx([api[(n, "1")]["median_ms"] for n in names])
    table = _table(page, "measurements")
    latency_headers = [c["name"] for c in table["columns"] if "latency" in c["name"]]
    assert len(latency_headers) == 5 and all(f"{runtime})" in name for name in latency_headers)
    for row in table["data"]:  # every ratio and figure shown is the API's on this runtime
        b1, b32 = api[(row["variant"], "1")], api[(row["variant"], "32")]
        assert (row["latency_ms"], row["latency_ratio"]) == (b1["median_ms"], b1["latency_ratio"])
        assert (row["latency_ms_32"], row["latency_ratio_32"]) == (b32["median_ms"], b32["latency_ratio"])
    notes = page.locator("#latency-notes").inner_text()
    for message in view["messages"]:
        assert message in notes
    assert "u70 (unstructured)" in notes and "dense kernels do not skip zeros" in notes
    ratios = {t["name"]: t for t in _plot(page, "latency-ratios")}
    latency_bars = ratios[f"latency / base latency ({runtime}, batch 1)"]
    assert latency_bars["x"] == ["it3", "u70"]  # the pruned variants, FLOPs ratio beside each
    assert latency_bars["y"] == pytest.approx([api[(v, "1")]["latency_ratio"] for v in ("it3", "u70")])


@pytest.mark.slow
@pytest.mark.browser
def test_latency_is_shown_one_runtime_at_a_time_and_no_ratio_mixes_runtimes(served, page):
    latency = served["compare"]["latency"]
    assert latency["default_runtime"] == "onnxruntime-cpu"
    assert {"onnxruntime-cpu", "torch-cpu"} <= set(latency["runtimes"])
    page.goto(f"{served['base']}/studies/{served['id']}")
    page.locator("#latency-runtime input[value='onnxruntime-cpu']").wait_for(state="attached")
    assert page.locator("#latency-runtime input[value='onnxruntime-cpu']").is_checked()
    _shown_on(page, served, "onnxruntime-cpu")
    # h16 (fp16) is timed on torch-cpu only: under onnxruntime-cpu it has no figure and no ratio
    (h16,) = [r for r in _table(page, "measurements")["data"] if r["variant"] == "h16"]
    assert h16["latency_ms"] is None and h16["latency_ratio"] is None and h16["latency_ratio_32"] is None
    assert "fp16" in h16["latency_reason"]
    notes = page.locator("#latency-notes").inner_text()
    assert f"h16: no latency ratio on onnxruntime-cpu: {h16['latency_reason']}" in notes
    page.wait_for_timeout(500)
    page.locator("#latency-panel").screenshot(path=str(SCREENSHOTS / "study-latency.png"))

    page.locator("#latency-runtime label", has_text="torch-cpu").click()
    _shown_on(page, served, "torch-cpu")
    torch_h16 = next(
        r for r in latency["by_runtime"]["torch-cpu"]["rows"] if r["variant"] == "h16" and r["batch"] == "1"
    )
    (h16,) = [r for r in _table(page, "measurements")["data"] if r["variant"] == "h16"]
    assert h16["latency_ratio"] == torch_h16["latency_ratio"] is not None
    assert not page.errors
