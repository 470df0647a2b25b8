"""The run page names the fused group a run was trained in (result.group), and nothing for a
run trained alone."""

from __future__ import annotations

from frontend.pages import run


def _detail(result: dict) -> dict:
    return {"id": 4, "study_id": 1, "variant": "base", "kind": "train", "status": "succeeded",
            "attempts": 1, "epochs": [], "result": result}  # fmt: skip


def test_the_run_page_shows_the_group_a_run_was_trained_in():
    grouped = {"fast_path": {"fused": True, "group_size": 3}, "group": {"run_ids": [3, 4, 5], "size": 3}}
    _, details, _, _ = run.render(_detail(grouped))
    assert "trained fused with runs 3, 4, 5 (group of 3)" in str(details)


def test_a_solo_run_or_a_malformed_group_shows_no_group_line():
    _, details, _, _ = run.render(_detail({"fast_path": {"fused": False}}))
    assert "fused group" not in str(details)
    for group in (None, {"run_ids": "3,4"}, {"run_ids": [3, "x"]}, [3, 4]):
        assert run.group_text({"group": group}) is None
