"""The pages' pure parts without a browser: number formatting, the notes of panels without data,
the study summary's best top-1, the plan preview, the token control's rules, when the study page
stops polling, and the study and run pages' writes (API calls, answers and refusals in words)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from frontend.api_client import ApiClient, ApiError
from frontend.app import make_client_factory
from frontend.pages import new_spec, run, study
from frontend.pages import study_data as sd
from frontend.pages.components import fmt_p, fmt_sig
from frontend.pages.study_record import study_is_done, study_is_open
from frontend.pages.token import clean_token, refusal, refused_message


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0043, "0.0043"),
        (-0.0043, "-0.0043"),
        (0.3, "0.3"),
        (0.25, "0.25"),
        (12.34, "12"),
        (1e-17, "<0.001"),  # float noise of identical centres
        (0, "0"),
        (None, "—"),
        (float("nan"), "—"),
    ],
)
def test_significant_figures_keep_small_numbers(value, text):
    assert fmt_sig(value) == text


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (0.0004, "<0.001"),
        (1 / 1001, "<0.001"),
        (0.001, "0.001"),
        (0.004, "0.004"),
        (0.0496, "0.0496"),
        (0.41, "0.41"),
    ],
)
def test_p_values(p, text):
    assert fmt_p(p) == text


def test_shift_sentence_never_rounds_a_tiny_shift_to_zero():
    test = {
        "tested": True,
        "p_value": 1 / 10001,
        "delta": [0.0043, -0.0004],
        "significant": True,
        "verdict": "shift towards larger wd",
        "alpha": 0.05,
    }
    sentence = sd.shift_sentence("u50", "1.0", test)
    assert "0.00 " not in sentence and "0.000 " not in sentence
    assert "+0.0043 in log10 wd" in sentence and "<0.001 in log10 lr" in sentence
    assert "permutation p < 0.001" in sentence and "shift towards larger wd" in sentence
    test.update(p_value=0.41, significant=False, delta=[0.3, -0.25])
    sentence = sd.shift_sentence("u50", "0.5", test)
    assert "no significant shift" in sentence and "p = 0.41" in sentence
    assert "+0.3 in log10 wd and -0.25 in log10 lr" in sentence


def _compare_row(**fields):
    """A /compare row in the API's declared shape (backend/api/schemas.py CompareRow): every field
    present, the unset ones null, as the API serves them."""
    from backend.api.comparison_schemas import CompareRow

    row = dict.fromkeys(CompareRow.model_fields)
    row.update(finished_runs=0, **fields)
    return CompareRow(**row).model_dump()


def _data(measure_statuses, compare_rows=(), kind="native", variants=()):
    return {
        "study": {"kind": kind},
        "analysis": {},
        "extras": {
            "compare": {"variants": [_compare_row(**row) for row in compare_rows], "latency": None},
            "variants": list(variants),
            "measure_runs": [{"variant": f"v{n}", "status": s} for n, s in enumerate(measure_statuses)],
        },
    }


def test_panels_without_measurements_say_what_they_wait_for():
    data = _data(["pending", "blocked", "running"])
    rows = sd.measurement_rows(data)
    note, drawable = sd.measurements_note(data, rows)
    assert note.startswith("Waiting for 3 measure runs") and not drawable
    assert sd.histograms_note(data) == "Weight histograms: waiting for 3 measure runs."

    measured = {"name": "base", "kind": "base", "params": 1000, "size_mb": 0.1, "best_top1": 91.0}
    data = _data(["succeeded", "pending"], [measured, {"name": "u50", "kind": "structured"}])
    note, drawable = sd.measurements_note(data, sd.measurement_rows(data))
    assert note.startswith("Waiting for 1 more measure run;") and drawable

    data = _data(["succeeded", "succeeded"], [measured])
    assert sd.measurements_note(data, sd.measurement_rows(data)) == ("", True)

    data = _data(["failed", "cancelled"])
    assert sd.measurements_note(data, []) == ("No measurements: 2 measure runs failed or cancelled.", False)

    data = _data([], kind="imported")
    assert "imported study" in sd.measurements_note(data, [])[0]
    assert "imported study" in sd.histograms_note(data)


def test_kept_fractions_note_names_the_variants_still_pruning():
    variants = [
        {"name": "base", "kind": "base"},
        {"name": "u50", "kind": "structured", "kept_fractions": None},
        {"name": "n50", "kind": "structured", "kept_fractions": {"conv1": 0.5}},
    ]
    assert sd.kept_fractions_note(_data([], variants=variants)) == (
        "Kept filters per layer: waiting for the prune run of u50."
    )
    assert sd.kept_fractions_note(_data([], variants=variants[:1])) == "No structured variant in this study."


def test_risk_note_only_without_risk_values():
    with_values = {"variants": ["base"], "results": {"base": {"risk": {"values": [0.1, 0.2]}}}}
    assert sd.risk_note(with_values) == ""
    without = {"variants": ["base"], "results": {"base": {"risk": {"values": []}}}}
    assert "0.5-ROI" in sd.risk_note(without)
    # the analysis' own reason, not a guess (an import without top-5 has finished base runs)
    no_top5 = {"variants": [], "results": {}, "unavailable": "metric: the results hold no top5 values."}
    assert sd.risk_note(no_top5) == "No performance risk: metric: the results hold no top5 values."
    assert "finished runs" not in sd.risk_note(no_top5)
    reason = {
        "variants": ["base"],
        "results": {"base": {"risk": {"values": [], "reason": "no 0.5-ROI yet."}}},
    }
    assert sd.risk_note(reason) == "No performance risk yet: no 0.5-ROI yet."


def test_best_top1_per_variant_from_compare():
    rows = [
        {"name": "base", "kind": "base", "best_top1": 92.0, "best_lr": 0.1, "best_wd": 1e-4},
        {"name": "q8", "kind": "int8", "best_top1": None, "best_lr": None, "best_wd": None},
    ]
    assert sd.best_per_variant(_data([], rows)) == [
        {"variant": "base", "top1": 92.0, "std": None, "n": None, "lr": 0.1, "wd": 1e-4},
        {"variant": "q8", "top1": None, "std": None, "n": None, "lr": None, "wd": None},
    ]


PLAN = {
    "run_counts": {"train": 18, "prune": 1, "quantise": 9, "measure": 3, "total": 31},
    "variants": [
        {"name": "base", "kind": "base", "source": None, "train": 9, "prune": 0, "quantise": 0, "measure": 1,
         "total": 10},
        {"name": "u50", "kind": "structured", "source": "base", "train": 9, "prune": 1, "quantise": 0,
         "measure": 1, "total": 11},
        {"name": "q8", "kind": "int8", "source": "base", "train": 0, "prune": 0, "quantise": 9, "measure": 1,
         "total": 10},
    ],
    "grid_points": 9,
    "repeats": 1,
    "lr_values": [0.0398107170553, 0.1, 0.251188643151],
    "wd_values": [3.98107170553e-05, 0.0001, 0.000251188643151],
}  # fmt: skip


def test_plan_preview_shows_counts_per_variant_and_the_grid():
    sentence, table, grid, auto = new_spec.plan_view(PLAN)
    assert auto is None  # no auto-extension asked for
    assert sentence.children == (
        "This will plan 31 runs: 18 training, 1 pruning, 9 quantisation, 3 measurement."
    )
    body = table.children[1].children
    assert [[cell.children for cell in row.children] for row in body][2] == [
        "q8",
        "int8",
        "0",
        "0",
        "9",
        "1",
        "0",  # scan
        "10",
        "—",  # iterations: not a pruned variant
        "—",
    ]
    assert str(grid.children[0].children) == "grid: 3 x 3 points x 1 seed"
    assert grid.children[1].children[1].children == "0.0398, 0.1, 0.251"
    assert grid.children[2].children[1].children == "3.98e-05, 0.0001, 0.000251"


def test_form_values_make_the_spec_the_api_gets():
    form = ["  s  ", "digits", None, "digits_cnn", 3, 64, 0.9, 0.1, 1e-4, 0.4, 3, 1, [], 20, 1.0]
    columns = [["base", "u50"], ["base", "structured"], [None, 0.5], [None, "uniform"], ["", ""],
               [None, None], [None, None]]  # fmt: skip
    spec = new_spec.spec_from_form(form, columns)
    assert spec["name"] == "s" and spec["grid"] == {
        "lr_centre": 0.1,
        "wd_centre": 1e-4,
        "step": 0.4,
        "size": 3,
    }
    assert spec["variants"] == [
        {"name": "base", "kind": "base"},
        {"name": "u50", "kind": "structured", "flops_ratio": 0.5, "method": "uniform"},
    ]
    assert "path" not in spec["dataset"]


def test_token_rules_and_refusal_messages():
    assert clean_token("  psk_abc \n") == ("psk_abc", None)
    assert clean_token("") == (None, "paste a token first")
    assert clean_token("psk a")[0] is None
    unauthorised = refused_message(ApiError(401, "missing Authorization header", "/studies"))
    text = "".join(part if isinstance(part, str) else part.children for part in unauthorised)
    assert text == (
        "This server requires an API token for writes: create one with prunescape token create NAME "
        "and paste it in the top bar."
    )
    rejected = refused_message(ApiError(403, "unknown or revoked token", "/studies"))
    assert rejected[0].startswith("Token rejected")
    assert refused_message(ApiError(422, [], "/studies")) is None


def test_writes_carry_the_given_token_and_reads_none():
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"items": [], "id": 1})

    transport = httpx.MockTransport(handler)
    asyncio.run(ApiClient("http://api", token="psk_user", transport=transport).create_study({}))
    asyncio.run(ApiClient("http://api", transport=transport).list_studies())
    assert seen == ["Bearer psk_user", None]
    factory = make_client_factory(api_url="http://api")
    assert factory().headers == {} and factory("psk_x").headers == {"authorization": "Bearer psk_x"}


def _progress(**counts: int) -> dict:
    states = ("blocked", "pending", "queued", "running", "succeeded", "failed", "diverged", "cancelled")
    progress = {state: counts.get(state, 0) for state in states}
    progress["total"] = sum(progress.values())
    progress["finished"] = progress["total"] - sum(progress[s] for s in states[:4])
    return progress


def test_polling_stops_only_when_no_run_is_left_to_wait_for():
    running = {"status": "running", "progress": _progress(running=1, pending=3, succeeded=2)}
    assert not study_is_done(running) and study_is_open(running)
    # cancelled, but one run still has to reach its next epoch: keep reading until it has
    stopping = {"status": "cancelled", "progress": _progress(running=1, cancelled=5)}
    assert not study_is_done(stopping) and not study_is_open(stopping)
    stopped = {"status": "cancelled", "progress": _progress(cancelled=6)}
    assert study_is_done(stopped)
    assert study_is_done({"status": "failed", "progress": _progress(failed=1, succeeded=5)})
    assert study_is_done({"status": "succeeded", "kind": "imported", "progress": _progress(succeeded=9)})


def test_write_answers_and_refusals_in_words():
    assert study.cancel_answer({"status": "cancelled", "cancelled": 20, "cancel_requested": 1}) == (
        "Study cancelled: 20 waiting runs cancelled, 1 running stop at their next epoch."
    )
    assert study.cancel_answer({"status": "cancelled", "cancelled": 3, "cancel_requested": 0}) == (
        "Study cancelled: 3 waiting runs cancelled."
    )
    answer = {"run": {"id": 7, "status": "pending"}, "reopened": 3}
    assert run.retry_answer(answer) == (
        "Retried: run 7 is pending; 2 runs cancelled because of it wait on it again."
    )
    assert (
        run.retry_answer({"run": {"id": 7, "status": "blocked"}, "reopened": 1})
        == "Retried: run 7 is blocked."
    )
    named = {
        "id": 4,
        "name": "digits pruning",
        "kind": "native",
        "status": "running",
        "progress": _progress(pending=9, running=1),
    }
    assert "'digits pruning' (id 4)" in study.delete_question(named)
    assert "Its 10 unfinished runs" in study.cancel_question(named)

    conflict = ApiError(
        409, "run 7 is succeeded; only failed or cancelled runs can be retried", "/runs/7/retry"
    )
    assert refusal("Not retried", conflict).children == (
        "Not retried: run 7 is succeeded; only failed or cancelled runs can be retried."
    )
    assert conflict.stale_page() and not ApiError(401, "x", "/").stale_page()
    unauthorised = refusal("Not cancelled", ApiError(401, "missing token", "/studies/1/cancel"))
    assert (
        unauthorised.children[0] == "Not cancelled. " and "requires an API token" in unauthorised.children[1]
    )


def test_cancel_delete_retry_are_token_carrying_writes():
    seen: list[tuple[str, str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("authorization")))
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json={"ok": True})

    client = ApiClient("http://api", token="psk_user", transport=httpx.MockTransport(handler))
    assert asyncio.run(client.cancel_study(3)) == {"ok": True}
    assert asyncio.run(client.delete_study(3)) is None
    assert asyncio.run(client.retry_run(11)) == {"ok": True}
    assert seen == [
        ("POST", "/api/v1/studies/3/cancel", "Bearer psk_user"),
        ("DELETE", "/api/v1/studies/3", "Bearer psk_user"),
        ("POST", "/api/v1/runs/11/retry", "Bearer psk_user"),
    ]


def test_an_empty_epoch_panel_says_whether_epochs_are_coming():
    assert (
        run.no_epochs_text({"kind": "train", "status": "running", "attempts": 1}) == "no epochs recorded yet"
    )
    assert "imported result" in run.no_epochs_text({"kind": "train", "status": "succeeded", "attempts": 0})
    assert "before its first epoch" in run.no_epochs_text(
        {"kind": "train", "status": "failed", "attempts": 3}
    )
    assert run.no_epochs_text({"kind": "measure", "status": "succeeded"}) == "a measure run trains no epochs"


def test_run_details_show_the_workers_device_time_and_fast_path():
    detail = {
        "id": 7, "study_id": 1, "variant": "base", "kind": "train", "status": "succeeded", "attempts": 1,
        "lr": 0.1, "wd": 1e-4, "seed": 0, "top1": 91.0, "top5": 99.0, "epochs_done": 2, "epochs": [],
        "result": {"device": "cuda:0", "seconds": 12.34, "recipe": {"epochs": 2, "batch_size": 128},
                   "fast_path": {"cuda_graph": True, "channels_last": True, "amp_bf16": False,
                                 "optimizer": "sgd-fused"}},
    }  # fmt: skip
    _, details, _, _ = run.render(detail)
    text = str(details)
    assert "cuda:0" in text and "12.3" in text and "batch_size=128" in text
    assert "cuda_graph, channels_last, optimizer=sgd-fused" in text and "amp_bf16" not in text


def test_the_standalone_dashboard_checks_hosts_and_sends_the_security_headers():
    from fastapi.testclient import TestClient

    from frontend.app import create_standalone

    with TestClient(create_standalone("http://127.0.0.1:9", ["dash.example"])) as client:
        page = client.get("/")  # Host: testserver, the address TestClient's socket stands in for
        assert page.status_code == 200 and "_dash-config" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        assert "script-src 'self' 'sha256-" in page.headers["content-security-policy"]
        assert client.get("/", headers={"Host": "dash.example:8050"}).status_code == 200
        refused = client.get("/", headers={"Host": "evil.example"})
        assert refused.status_code == 400 and "PRUNESCAPE_ALLOWED_HOSTS" in refused.json()["detail"]


def test_someone_elses_study_is_refused_with_the_apis_reason_not_as_a_bad_token():
    owner = "study 3 belongs to alice; its creator or an admin token can cancel, extend or delete it"
    refused = refusal("Not deleted", ApiError(403, owner, "/studies/3"))
    assert refused.children == f"Not deleted: {owner}."
    rejected = refusal("Not deleted", ApiError(403, "unknown or revoked token", "/studies/3"))
    assert "Token rejected" in rejected.children[1]


def test_ids_from_the_browser_become_paths_only_when_they_are_ids():
    from frontend.api_client import parse_id

    assert [parse_id(v) for v in (1, "12", 2**31 - 1, "0007")] == [1, 12, 2**31 - 1, 7]
    bad = (0, -1, 2**31, True, 1.0, "1.0", " 1", "1 ", "-1", "+1", "1/../2", "١", "", None, [1], {"id": 1})
    assert [parse_id(v) for v in bad] == [None] * len(bad)
    seen: list[str] = []
    client = ApiClient("http://api", transport=httpx.MockTransport(lambda r: seen.append(r.url.path)))
    for forged in ("../../internal/secret", "1/../../runs/5/retry?", "2147483648"):
        for call in (
            client.get_study,
            client.cancel_study,
            client.delete_study,
            client.get_run,
            client.retry_run,
        ):
            with pytest.raises(ApiError) as refused:
                asyncio.run(call(forged))
            assert refused.value.status == 404 and "not found" in str(refused.value.detail)
    assert seen == []
