"""POST /studies/plan, the dry run of POST /studies: the planner's counts for the README's example
spec, 422 naming the field for a bad one, and nothing stored either way (SQLite and Postgres)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import sqlalchemy as sa

from backend.db.models import Run, Study, Variant
from backend.db.session import session_scope
from backend.services.planner import plan_study
from backend.spec import parse_spec
from workers.engine.catalog import CIFAR10_FILES

API = "/api/v1"
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_spec(cifar_dir: Path) -> dict:
    """The spec under '## A study spec' in the README, its CIFAR path pointed at a stand-in
    directory (the API checks the files exist; it does not open them)."""
    text = README.read_text()
    section = text[text.index("## A study spec") :]
    spec = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    folder = cifar_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR10_FILES:
        (folder / name).write_bytes(b"")
    spec["dataset"]["path"] = str(cifar_dir)
    return spec


def row_counts(settings) -> tuple[int, int, int]:
    with session_scope(settings) as session:
        return tuple(
            session.scalar(sa.select(sa.func.count()).select_from(table)) for table in (Study, Variant, Run)
        )


def test_plan_matches_the_planner_and_stores_nothing(client, settings, tmp_path):
    spec = readme_spec(tmp_path / "cifar")
    response = client.post(f"{API}/studies/plan", json=spec)
    assert response.status_code == 200, response.text
    body = response.json()
    # 9 x 9 grid, one seed: base + 3 pruned variants train 81 points each, q8 quantises base's 81
    assert body["run_counts"] == {
        "train": 324,
        "prune": 3,
        "quantise": 81,
        "measure": 5,
        "scan": 0,
        "total": 413,
    }
    assert body["grid_points"] == 81 and body["repeats"] == 1
    plan = plan_study(parse_spec(spec))
    assert body["run_counts"] == plan.count_by_kind()
    by_variant = {v["name"]: v for v in body["variants"]}
    assert list(by_variant) == ["base", "u60", "n60", "sp80", "q8"]
    for name, row in by_variant.items():
        kinds = [run.kind for run in plan.runs if run.variant == name]
        assert {k: row[k] for k in ("train", "prune", "quantise", "measure")} == {
            k: kinds.count(k) for k in ("train", "prune", "quantise", "measure")
        }
        assert row["total"] == len(kinds)
    assert by_variant["u60"] == {
        "name": "u60", "kind": "structured", "source": "base",
        "train": 81, "prune": 1, "quantise": 0, "measure": 1, "scan": 0, "total": 83,
        "iterations": 1, "prune_epochs": 0,
    }  # fmt: skip
    assert by_variant["q8"]["source"] == "base" and by_variant["q8"]["quantise"] == 81
    # lr = 0.1 * 10 ** (0.2 i), wd = 1e-4 * 10 ** (0.2 j), i, j = -4 .. 4
    assert len(body["lr_values"]) == len(body["wd_values"]) == 9
    assert body["lr_values"][4] == 0.1 and body["wd_values"][4] == 1e-4
    assert body["lr_values"][0] == parse_spec(spec).grid.lr_at(-4)
    assert abs(body["wd_values"][-1] - 1e-4 * 10**0.8) < 1e-15
    assert row_counts(settings) == (0, 0, 0)
    # the same spec, created, plans exactly what the preview said
    created = client.post(f"{API}/studies", json=spec)
    assert created.status_code == 201, created.text
    assert created.json()["run_counts"] == body["run_counts"]


def test_bad_spec_is_422_naming_the_field_and_stores_nothing(client, settings):
    from tests.backend.conftest import DEMO_SPEC

    spec = copy.deepcopy(DEMO_SPEC)
    spec["grid"]["step"] = 0
    response = client.post(f"{API}/studies/plan", json=spec)
    assert response.status_code == 422
    assert ["body", "grid", "step"] in [e["loc"] for e in response.json()["detail"]]
    spec = copy.deepcopy(DEMO_SPEC)
    spec["variants"][2]["source"] = "nope"
    response = client.post(f"{API}/studies/plan", json=spec)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][:2] == ["body", "variants"]
    spec = copy.deepcopy(DEMO_SPEC)
    spec["grid"]["size"] = 45  # above max_grid_size 41: the limits of POST /studies apply too
    response = client.post(f"{API}/studies/plan", json=spec)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "grid", "size"]
    assert "limit of 41" in response.json()["detail"][0]["msg"]
    assert row_counts(settings) == (0, 0, 0)
