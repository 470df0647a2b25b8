"""The worked example of docs/pruning-as-regularisation.md runs: its spec, read from the page, with
short epochs and the grid cut to the prior, created through the API and run by
`workers.tasks.execute`; what the page tells a reader to look at is there."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from backend.db.models import Run
from backend.db.session import get_engine
from workers.tasks import execute

API = "/api/v1"
PAGE = Path(__file__).resolve().parents[2] / "docs" / "pruning-as-regularisation.md"


def page_spec() -> dict:
    return json.loads(re.search(r"```json\n(.*?)```", PAGE.read_text(), re.S).group(1))


def test_the_page_spec_is_the_design_it_describes():
    spec = page_spec()
    kinds = {
        v["name"]: (v["kind"], v.get("amount"), v.get("retrain"), v.get("finetune_epochs"))
        for v in spec["variants"]
    }
    assert kinds == {
        "base": ("base", None, None, None),
        "ft-only": ("unstructured", 0.0, "finetune", 15),  # the control: same epochs, nothing pruned
        "sp50-ft": ("unstructured", 0.5, "finetune", 15),
        "sp80-ft": ("unstructured", 0.8, "finetune", 15),
    }
    assert spec["recipe"]["epochs"] == 60 and spec["scans"] == [{"kind": "unstructured", "scope": "global"}]


@pytest.mark.slow
def test_the_worked_example_runs_on_digits(sqlite_db):
    settings = sqlite_db
    spec = copy.deepcopy(page_spec())
    spec["recipe"]["epochs"] = 3
    spec["grid"]["size"] = 1
    for variant in spec["variants"]:
        if variant.get("retrain") == "finetune":
            variant["finetune_epochs"] = 1
    from backend.api import create_app

    with TestClient(create_app(settings)) as api:
        created = api.post(f"{API}/studies", json=spec)
        assert created.status_code == 201, created.text
        study_id = created.json()["id"]
        make = sessionmaker(bind=get_engine(settings))
        while True:
            with make() as s:
                pending = s.scalars(
                    sa.select(Run.id)
                    .where(Run.study_id == study_id, Run.status == "pending")
                    .order_by(Run.id)
                ).all()
            if not pending:
                break
            for run_id in pending:
                execute(run_id, settings=settings)

        study = api.get(f"{API}/studies/{study_id}").json()
        assert (
            study["status"] == "succeeded"
            and study["progress"]["succeeded"] == study["progress"]["total"] == 12
        )
        rows = {r["name"]: r for r in api.get(f"{API}/studies/{study_id}/compare").json()["variants"]}
        assert list(rows) == ["base", "ft-only", "sp50-ft", "sp80-ft"]
        assert all(10 < rows[name]["best_top1"] <= 100 for name in rows)
        # the control prunes nothing; the pruned ones keep about half / a fifth of the weights
        assert rows["ft-only"]["params_nonzero"] == rows["base"]["params"]
        assert (
            rows["sp80-ft"]["params_nonzero"]
            < rows["sp50-ft"]["params_nonzero"]
            < 0.55 * rows["base"]["params"]
        )
        assert rows["sp80-ft"]["params_nonzero"] < 0.25 * rows["base"]["params"]
        # 1. the overfitting figure: training top-1 next to validation top-1 on the base's run
        (base_run,) = api.get(
            f"{API}/studies/{study_id}/runs", params={"variant": "base", "kind": "train"}
        ).json()["items"]
        detail = api.get(f"{API}/runs/{base_run['id']}").json()
        assert 0 < detail["result"]["train_top1"] <= 100 and len(detail["epochs"]) == 3
        # 4. the scan of the base: ten fractions, the first the trained model itself
        (scan,) = next(
            v for v in api.get(f"{API}/studies/{study_id}/variants").json()["items"] if v["name"] == "base"
        )["scan"]
        assert [r["fraction"] for r in scan["rows"]] == pytest.approx([i / 10 for i in range(10)])
        assert scan["rows"][0]["top1"] == pytest.approx(base_run["top1"], abs=0.01)
        assert scan["rows"][-1]["sparsity"] == pytest.approx(0.9, abs=0.01)
