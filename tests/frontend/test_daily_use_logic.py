"""The pure parts of issue 19's pages, without a browser: error sentences for people, the study
view in the URL (hostile values ignored), progress by state, the top bar's auth words, downloads
that hold named numbers without float noise, the variant row's fields per kind, the extension's
question and answer in values, the run page's per-kind panel, the pagers."""

from __future__ import annotations

import csv
import io

import pytest

from frontend.pages import new_spec, run, studies, study, study_downloads, study_runs, study_view
from frontend.pages import study_data as sd
from frontend.pages.components import fmt_hyper, rows_to_csv, run_progress, table_to_tsv
from frontend.pages.messages import error_text, field_label, field_messages, sentences
from frontend.pages.token import token_status
from tests.frontend.records import make_record


def _text(component) -> str:
    """Every string inside a Dash component tree."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(t for t in (_text(c) for c in component) if t)
    return _text(getattr(component, "children", None))


# --- messages ------------------------------------------------------------------------------------
def test_pydantic_errors_become_one_sentence_per_field_in_plain_words():
    detail = [
        {"loc": ["body", "grid", "size"], "msg": "Value error, size must be odd so the prior is the centre point (got 4)"},
        {"loc": ["body", "variants", 2, "int8", "source"], "msg": "Field required"},
        {"loc": ["body", "grid", "step"], "msg": "Input should be greater than 0"},
        {"loc": ["body", "recipe", "epochs"], "msg": "Input should be a valid integer, got a number with a fractional part"},
        {"loc": ["body", "name"], "msg": "String should have at least 1 character"},
        {"loc": ["body", "variants"], "msg": "Value error, variants: duplicate variant names: base"},
    ]  # fmt: skip
    messages = field_messages(detail)
    assert messages == {
        "grid.size": "size must be odd so the prior is the centre point (got 4)",
        "variants.2.source": "is required",
        "grid.step": "must be greater than 0",
        "recipe.epochs": "must be a whole number",
        "name": "must not be empty",
        "variants": "duplicate variant names: base",
    }
    text = " ".join(sentences(detail))
    assert "Value error" not in text and "int8" not in text and "body" not in text
    assert "variant 3: source: is required." in text and "grid step: must be greater than 0." in text
    assert field_label("variants.0.flops_ratio") == "variant 1: FLOPs ratio"
    assert error_text("study 9 not found") == "study 9 not found."
    assert error_text({"unexpected": "shape"}) == "{'unexpected': 'shape'}."  # never a crash


def test_the_forms_errors_land_next_to_their_fields_under_the_rows_own_indices():
    # rows 0 and 3 are on the page (1 and 2 were removed): the API's position 1 is row 3
    variant_ids = [{"type": "v-row", "index": 0}, {"type": "v-row", "index": 3}]
    detail = [
        {"loc": ["body", "variants", 1, "int8", "source"], "msg": "Value error, variant 'q': source 'x' is not a variant"},
        {"loc": ["body", "variants", 1, "int8", "calibration_batches"], "msg": "Input should be greater than or equal to 1"},
        {"loc": ["body", "grid", "size"], "msg": "Value error, size must be odd"},
        {"loc": ["body", "dataset", "synthetic_size"], "msg": "Input should be less than or equal to 10000000"},
    ]  # fmt: skip
    errors = new_spec.form_errors(detail, variant_ids, [])
    shown = [{"field": f} for f in ("variants.3.source", "variants.3", "grid.size", "dataset", "_", "name")]
    placed = dict(zip([e["field"] for e in shown], new_spec.route_errors(errors, shown), strict=True))
    assert placed["variants.3.source"] == "variant 'q': source 'x' is not a variant"
    assert placed["variants.3"] == "calibration batches: must be at least 1"
    assert placed["grid.size"] == "size must be odd"
    assert placed["dataset"] == "synthetic size: must be at most 10000000"
    assert placed["_"] == "" and placed["name"] == ""


def test_a_variant_row_shows_and_sends_only_the_fields_of_its_kind():
    assert new_spec.visible_cells("int8", None) == {
        "ratio": False, "method": False, "source": True, "retrain": False, "epochs": False, "iterations": False,
    }  # fmt: skip
    assert (
        new_spec.visible_cells("structured", "finetune")["epochs"]
        and not new_spec.visible_cells("structured", None)["epochs"]
    )
    assert not any(new_spec.visible_cells("base", "rewind").values())
    # the copied FLOPs ratio of an int8 row is never sent
    assert new_spec.variant_spec("q8", "int8", 0.5, "uniform", "base", "finetune", 3, 4) == {
        "name": "q8", "kind": "int8", "source": "base",
    }  # fmt: skip
    assert new_spec.variant_spec("u", "unstructured", 0.7, "global", None, "finetune", 2, 3) == {
        "name": "u", "kind": "unstructured", "amount": 0.7, "scope": "global", "retrain": "finetune",
        "finetune_epochs": 2, "iterations": 3,
    }  # fmt: skip
    assert new_spec.source_choices(["base", "u50", "q8", " "], ["base", "structured", "int8", "base"]) == [
        "base",
        "u50",
    ]


def test_scans_in_the_spec_and_the_plan_preview():
    form = ["s", "digits", None, "digits_cnn", 3, 64, 0.9, 0.1, 1e-4, 0.4, 3, 1, ["on"], 12, 0.5]
    variants = [["base"], ["base"], [None], [None], [None], [None], [None], [None]]
    scans = [["unstructured"], ["layer"], ["0, 0.5 0.9;abc"], ["all"]]
    spec = new_spec.spec_from_form(form, variants, scans)
    assert spec["scans"] == [
        {"kind": "unstructured", "scope": "layer", "fractions": [0.0, 0.5, 0.9, "abc"], "on": "all"}
    ]
    assert spec["grid"]["auto_extend"] == {"max_points": 12, "level": 0.5}
    assert "scans" not in new_spec.spec_from_form(form, variants, [[], [], [], []])
    assert "auto_extend" not in new_spec.spec_from_form(form[:-3] + [[], 12, 0.5], variants)["grid"]
    plan = {
        "run_counts": {"train": 9, "prune": 1, "quantise": 0, "measure": 2, "scan": 2, "total": 23},
        "variants": [
            {"name": "base", "kind": "base", "train": 9, "prune": 0, "quantise": 0, "measure": 1, "scan": 1,
             "total": 11, "iterations": None, "prune_epochs": 0},
            {"name": "u", "kind": "unstructured", "train": 9, "prune": 1, "quantise": 0, "measure": 1, "scan": 1,
             "total": 12, "iterations": 3, "prune_epochs": 9},
        ],
        "grid_points": 9, "repeats": 1, "lr_values": [0.1], "wd_values": [3.98107170553e-05],
    }  # fmt: skip
    sentence, table, grid, auto = new_spec.plan_view(plan, {"max_points": 12, "level": 0.5})
    # every new grid point gets every variant's train runs: 18 runs per point over 9 points -> 2 per point
    assert auto.children.startswith("Auto-extension on: where a trained variant's 0.5-ROI touches")
    assert "up to 12 more grid points per variant, i.e. up to 24 more runs" in auto.children
    assert new_spec.plan_view(plan)[3] is None
    assert sentence.children.endswith("2 measurement, 2 sensitivity scan.")
    row = [cell.children for cell in table.children[1].children[1].children]
    assert row == ["u", "unstructured", "9", "1", "0", "1", "1", "12", "3", "9"]
    assert grid.children[2].children[1].children == "3.98e-05"


# --- the study view in the URL --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("search", "view"),
    [
        ("?metric=top5&scale=variant&floor=91.5", {"metric": "top5", "scale": "variant", "floor": 91.5}),
        ("", {"metric": "top1", "scale": "shared", "floor": None}),
        ("?metric=<script>&scale=x&floor=nan", {"metric": "top1", "scale": "shared", "floor": None}),
        ("?floor=1e308", {"metric": "top1", "scale": "shared", "floor": None}),
        ("?floor=-3", {"metric": "top1", "scale": "shared", "floor": None}),
        ("?floor=" + "9" * 5000, {"metric": "top1", "scale": "shared", "floor": None}),
        ("?" + "&".join(f"k{n}=v" for n in range(50)), {"metric": "top1", "scale": "shared", "floor": None}),
    ],
)
def test_the_view_comes_back_from_the_url_and_hostile_values_are_ignored(search, view):
    try:
        got = study_view.view_from_query(search)
    except ValueError:  # too many fields: parse_qs refuses, the page is shown with the defaults
        got = {"metric": "top1", "scale": "shared", "floor": None}
    assert got == view


def test_the_view_goes_into_the_url_and_reads_back_the_same():
    search = study_view.query_string("top5", "shared", 90.04)
    assert search == "?metric=top5&floor=90.0"
    assert study_view.view_from_query(search) == {"metric": "top5", "scale": "shared", "floor": 90.0}
    assert study_view.query_string("top1", "variant", 90.0) == "?scale=variant"  # no floor per variant
    # the default view is no query at all: opening a study pushes no history entry of its own
    assert study_view.query_string("top1", "shared", 91.6, default_floor=91.62) == ""
    assert study_view.query_string("top1", "shared", 91.7, default_floor=91.62) == "?floor=91.7"


# --- states ---------------------------------------------------------------------------------------
def test_progress_shows_succeeded_failed_cancelled_apart():
    cancelled = {"succeeded": 58, "failed": 0, "diverged": 0, "cancelled": 6, "total": 64, "finished": 64}
    bar = run_progress(cancelled)
    assert _text(bar) == "64 / 64 runs ended: 58 succeeded, 6 cancelled"
    segments = bar.children[0].children
    assert [s.className for s in segments] == ["segment segment-succeeded", "segment segment-cancelled"]
    assert [s.style["width"] for s in segments] == ["90.62%", "9.38%"]
    going = {"succeeded": 2, "failed": 1, "running": 1, "pending": 4, "total": 8, "finished": 3}
    assert _text(run_progress(going)) == "3 / 8 runs ended: 2 succeeded, 1 failed; 5 to go"
    assert _text(run_progress({"total": 21, "finished": 0, "pending": 21})) == "0 / 21 runs ended"


def test_the_top_bar_says_the_servers_auth_mode():
    assert token_status(None, "off") == "auth off: no token needed"
    assert token_status(None, "writes") == "no token: reads only"
    assert token_status(None, "all") == "no token: this server needs one to read"
    assert token_status(None, None) == "no token"  # the API could not say: claim nothing
    assert token_status("psk_x", "writes") == "token set"


def test_a_study_without_top5_offers_top5_disabled():
    options = study_view.metric_options({"metrics_available": ["top1"]})
    assert [(o["value"], o["disabled"]) for o in options] == [("top1", False), ("top5", True)]
    assert all(not o["disabled"] for o in study_view.metric_options({"metrics_available": ["top1", "top5"]}))


def test_a_missing_study_is_a_not_found_page_with_nothing_to_act_on():
    page = study.missing_page({"status": 404, "study_id": "9999", "error": "study 9999 not found."})
    assert _text(page).startswith("Study 9999 not found") and page.id == "not-found"
    refused = study.missing_page({"status": 401, "detail": "a token is needed", "error": "x"})
    assert "requires an API token to read" in _text(refused)


# --- downloads --------------------------------------------------------------------------------------
def _data(record: dict) -> dict:
    grid = [
        {"x": -4.0, "y": -0.2, "lr": 0.631, "wd": 1e-4, "status": "failed", "grid_i": 2, "grid_j": 0},
        {"x": -4.0, "y": -1.0, "lr": 0.1, "wd": 1e-4, "status": "finished", "grid_i": 0, "grid_j": 0},
    ]
    return {"study": {"id": 7, "name": "s", "variants": ["base", "u50"]}, "analysis": record,
            "extras": {"landscapes": {"base": grid}, "compare": {}, "variants": []}}  # fmt: skip


def test_a_landscape_csv_holds_the_accuracies_under_named_columns():
    record = make_record()
    answer = study_downloads.figure_download(_data(record), "landscape-base")
    assert answer["filename"] == "study-7-landscape-base-top1.csv"
    rows = list(csv.DictReader(io.StringIO(answer["content"])))
    assert list(rows[0]) == ["variant", "lr", "wd", "log10_lr", "log10_wd", "grid_i", "grid_j", "status",
                             "top1_mean", "top1_std", "seeds", "diverged_seeds", "run_ids"]  # fmt: skip
    means = {float(r["top1_mean"]) for r in rows if r["top1_mean"]}
    expected = {p for row in record["results"]["base"]["landscape"]["z"] for p in row if p is not None}
    assert means == expected  # the accuracies themselves, not colour values clipped at a floor
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed == [{**failed[0], "lr": "0.631", "grid_i": "2", "top1_mean": "", "seeds": "0"}]
    centre = next(r for r in rows if r["grid_i"] == "0")
    assert centre["run_ids"] and " " in centre["run_ids"]  # both seeds' runs


def test_the_latency_csv_has_variants_and_numbers_not_colours():
    data = _data(make_record())
    data["extras"]["compare"] = {
        "variants": [
            {"name": "base", "kind": "base", "best_top1": 92.0, "best_top5": 99.0, "params": 10, "params_nonzero": 10,
             "compression_rate": 1.0, "flops": 100, "flops_kept": 1.0, "size_mb": 2.0, "size_sparse_bytes": None,
             "finished_runs": 9},
            {"name": "u50", "kind": "structured", "best_top1": 91.0, "best_top5": 98.0, "params": 5,
             "params_nonzero": 5, "compression_rate": 2.0, "flops": 50, "flops_kept": 0.5, "size_mb": 1.0,
             "size_sparse_bytes": None, "finished_runs": 9},
        ],
        "latency": {"default_runtime": "onnxruntime-cpu", "runtimes": ["onnxruntime-cpu", "torch-cpu"],
                    "batch_sizes": ["1", "32"], "by_runtime": {
            "onnxruntime-cpu": {"pareto_front": {"1": ["u50", "base"]}, "rows": [
                {"variant": "base", "batch": "1", "median_ms": 2.0, "accuracy": 92.0, "latency_ratio": None},
                {"variant": "u50", "batch": "1", "median_ms": 1.25, "accuracy": 91.0, "latency_ratio": 0.625},
                {"variant": "u50", "batch": "32", "median_ms": 30.0, "accuracy": 91.0, "latency_ratio": 0.7}]},
            "torch-cpu": {"pareto_front": {"1": ["base"]}, "rows": [
                {"variant": "base", "batch": "1", "median_ms": 3.0, "accuracy": 92.0, "latency_ratio": None},
                {"variant": "u50", "batch": "1", "median_ms": 3.5, "accuracy": 91.0, "latency_ratio": 1.17}]}}},
    }  # fmt: skip
    # the runtime and batch size the page shows (the default: onnxruntime-cpu, batch 1)
    answer = study_downloads.figure_download(data, "tradeoff-latency")
    assert answer["filename"] == "study-7-accuracy-vs-latency-onnxruntime-cpu-batch-1.csv"
    rows = list(csv.DictReader(io.StringIO(answer["content"])))
    assert rows == [
        {"variant": "base", "runtime": "onnxruntime-cpu", "batch_size": "1", "median_ms": "2", "best_top1": "92",
         "on_pareto_front": "True"},
        {"variant": "u50", "runtime": "onnxruntime-cpu", "batch_size": "1", "median_ms": "1.25", "best_top1": "91",
         "on_pareto_front": "True"},
    ]  # fmt: skip
    other = study_downloads.figure_download(data, "tradeoff-latency", latency=("torch-cpu", "1"))
    assert other["filename"] == "study-7-accuracy-vs-latency-torch-cpu-batch-1.csv"
    assert [r["on_pareto_front"] for r in csv.DictReader(io.StringIO(other["content"]))] == ["True", "False"]
    size = study_downloads.figure_download(data, "tradeoff-size")
    assert size["filename"] == "study-7-accuracy-vs-size.csv"
    assert size["content"].splitlines()[:2] == ["variant,size_mb,best_top1,on_pareto_front", "base,2,92,True"]
    assert "#" not in answer["content"]


def test_tables_copy_and_download_without_float_noise_and_without_formulas():
    rows = [{"variant": "=cmd|' /C calc'!A0", "mean": 0.1 + 0.2, "n": 3, "lr": 0.0398107170553}]
    columns = [{"id": "variant", "name": "variant"}, {"id": "mean", "name": "mean d (pp)"},
               {"id": "n", "name": "points"}, {"id": "lr", "name": "lr"}]  # fmt: skip
    assert table_to_tsv(rows, columns).splitlines()[1] == "=cmd|' /C calc'!A0\t0.3\t3\t0.0398107"
    assert rows_to_csv(rows, columns).splitlines() == [
        "variant,mean d (pp),points,lr",
        "'=cmd|' /C calc'!A0,0.3,3,0.03981071706",
    ]
    assert fmt_hyper(3.98107170553e-05) == "3.98e-05" and fmt_hyper(0.1) == "0.1" and fmt_hyper(None) == "—"
    assert study_downloads.export_file(3, "json", {"rows": [1]}) == (
        '{\n "rows": [\n  1\n ]\n}',
        "study-3-runs.json",
    )


# --- the extension says what it adds, in values ---------------------------------------------------
def test_the_extension_asks_first_and_then_says_which_values_were_added():
    data = {
        "study": {"id": 4, "name": "ext", "variants": ["base", "u50"], "spec": {}},
        "analysis": {"variants": ["base"], "results": {"base": {"extension": {
            "needed": True, "n_points": 3, "level": 1.0,
            "sides": [{"axis": "lr", "side": "high", "value": 0.630957344480193}]}}}},
    }  # fmt: skip
    assert sd.extension_question(data) == (
        "Extend study 'ext' (id 4)? Add a row of higher learning rates at 0.631: 3 new grid points for each "
        "of its 2 variants, trained and measured like the rest."
    )
    answer = {"added_runs": 8, "added_points": 3, "lr_range": [-1, 2], "wd_range": [-1, 1],
              "lr_values": [0.0398, 0.1, 0.251, 0.631], "wd_values": [3.98e-05, 0.0001, 0.000251]}  # fmt: skip
    old_grid = {"lr_range": [-1, 1], "wd_range": [-1, 1]}
    assert sd.extension_added(answer, old_grid) == (
        "Extended: added 8 runs at 3 new grid points: learning rates 0.631 (with every weight decay)."
    )
    assert "[" not in sd.extension_added(answer, old_grid)  # no index ranges


# --- the run page ---------------------------------------------------------------------------------
def test_the_run_page_says_what_each_kind_did():
    measure = {"id": 9, "study_id": 2, "variant": "u50", "kind": "measure", "status": "succeeded",
               "result": {"params": 1200, "params_nonzero": 600, "flops": 50000, "size_bytes": 9000}}  # fmt: skip
    variant = {"latency": {"onnxruntime-cpu": {"supported": True, "precision": "fp32",
                                               "by_batch": {"1": {"median_ms": 0.512}, "32": {"median_ms": 4.0}}},
                           "torch-cuda": {"supported": False, "reason": "no CUDA device"}}}  # fmt: skip
    text = _text(run.kind_panel(measure, variant))
    assert "non-zero params 600" in text and "FLOPs (batch 1) 50,000" in text
    assert "onnxruntime-cpu (fp32): batch 1: 0.512 ms, batch 32: 4.000 ms" in text
    assert "torch-cuda: not timed (no CUDA device)" in text
    prune = {"id": 5, "study_id": 2, "variant": "u50", "kind": "prune", "status": "succeeded",
             "result": {"flops_ratio": 0.49, "params": 600}}  # fmt: skip
    panel = run.kind_panel(prune, {"model_artefact_id": 31})
    link = panel[2].children[1]
    assert link.href == "/api/v1/artefacts/31" and link.children == "study-2-u50-model.pt"
    quantise = {"id": 6, "kind": "quantise", "status": "succeeded", "result": {"kind": "int8", "runtime": "onnxruntime"},
                "started_at": "2026-01-01T10:00:00+00:00", "finished_at": "2026-01-01T10:00:12.5+00:00"}  # fmt: skip
    assert "seconds 12.5" in _text(run.kind_panel(quantise, None))
    assert run.kind_panel({"kind": "train"}, None) == []
    assert run.epochs_csv({"id": 6, "study_id": 2, "epochs": [{"epoch": 1, "top1": 50.0}]}) == (
        "epoch,train_loss,train_top1,val_loss,top1,top5,lr,seconds\n1,,,,50,,,\n",
        "study-2-run-6-epochs.csv",
    )


# --- pagers ---------------------------------------------------------------------------------------
def test_the_pagers_count_and_move_within_the_total():
    assert studies.count_text(25, 25, 52) == "studies 26–50 of 52 · page 2 of 3"
    assert studies.count_text(0, 0, 0) == "no studies"
    assert studies.next_offset("studies-next", 25, 52) == 50
    assert studies.next_offset("studies-next", 50, 52) == 50  # the last page stays
    assert studies.next_offset("studies-prev", 0, 52) == 0
    assert studies.next_offset("studies-filter", 50, 52) == 0  # a new filter: first page
    assert study_runs.count_text(0, 25, 64) == "runs 1–25 of 64"
    assert study_runs.next_offset("runs-next", 25, 64) == 50
    assert study_runs.next_offset("runs-next", 50, 64) == 50
    assert study_runs.next_offset("runs-sort", 50, 64) == 0
    assert (
        study_runs.first_line("Traceback ...\n  File x\nRuntimeError: CUDA error")
        == "RuntimeError: CUDA error"
    )
