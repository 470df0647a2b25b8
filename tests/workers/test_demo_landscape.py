"""The demo shows a landscape (issue 16 item 4): the spec `prunescape serve --demo` submits, run
for real through the worker's task body in-process, has the properties it is built for.

The colour-floor property of the issue ("less than half of each map at the colour floor") cannot
hold with the SPEC's floor: the floor is the 85th percentile of all the study's observations, so
85 % of them lie at or below it, and the maps together hold exactly those observations. What is
pinned instead, in its spirit: no map is saturated (its 1.0-ROI is less than half of it) and none
is a flat field at the floor (each has points above it).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import pytest
import sqlalchemy as sa

from backend.db.models import Run
from backend.db.session import session_factory
from backend.demo import demo_spec, landscape_checks
from backend.services.analysis_views import analysis_json
from backend.services.study_creation import create_study
from backend.spec import parse_spec
from workers.tasks import execute

PROCESSES = 2  # the machine's cores; each run keeps one intra-op thread, as `serve --demo` does


def _execute(run_id: int, settings_json: str) -> str:
    """One run in a pool process (spawned: torch and the database connection start fresh)."""
    import torch

    from backend.settings import Settings

    torch.set_num_threads(1)  # CPU results are bit-identical only at equal thread counts
    return execute(run_id, settings=Settings.model_validate_json(settings_json)).status


def run_study(settings, spec: dict) -> tuple[int, float]:
    """Create the study and run every run through the worker's task body, PROCESSES at a time,
    each wave the runs that are ready; returns (study id, seconds)."""
    make = session_factory(settings)
    with make() as session:
        study_id = create_study(session, parse_spec(spec), settings).id
    started = time.monotonic()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        while True:
            with make() as session:
                pending = session.scalars(
                    sa.select(Run.id)
                    .where(Run.study_id == study_id, Run.status == "pending")
                    .order_by(Run.id)
                ).all()
            if not pending:
                break
            list(pool.map(_execute, pending, [settings.model_dump_json()] * len(pending)))
    return study_id, time.monotonic() - started


@pytest.mark.slow
def test_the_demo_spec_shows_a_landscape(sqlite_db):
    settings = sqlite_db
    make = session_factory(settings)
    spec = demo_spec()  # the very spec `submit_demo` posts
    study_id, elapsed = run_study(settings, spec)
    with make() as session:
        statuses = dict(
            session.execute(
                sa.select(Run.status, sa.func.count()).where(Run.study_id == study_id).group_by(Run.status)
            ).all()
        )
        analysis = json.loads(analysis_json(session, study_id, metric="top1").body)
    assert statuses == {"succeeded": sum(statuses.values())}, statuses
    checks = landscape_checks(analysis)
    print(
        f"demo: {sum(statuses.values())} runs in {elapsed:.0f} s, {PROCESSES} processes; {json.dumps(checks)}"
    )

    results, grid, floor = analysis["results"], analysis["grid"], analysis["colour_scale"]["min"]
    structured = [v["name"] for v in spec["variants"] if v["kind"] == "structured"]
    assert structured and set(analysis["variants"]) == {v["name"] for v in spec["variants"]}
    for name in structured:
        ellipse = results[name]["ellipse"]["0.5"]
        assert ellipse is not None and ellipse["n_points"] >= 5, (name, results[name]["roi"]["0.5"])
        shift = results[name]["shift"]["0.5"]
        assert shift["tested"] and shift["p_value"] is not None, (name, shift["reason"])
        assert shift["verdict"] != "not tested"
    best = results["base"]["best"]
    assert grid["lr_values"][0] < best["lr"] < grid["lr_values"][-1], best
    assert grid["wd_values"][0] < best["wd"] < grid["wd_values"][-1], best
    for name, result in results.items():
        means = [m for m in result["landscape"]["points"]["mean"] if m is not None]
        assert len(means) == len(grid["lr_values"]) * len(grid["wd_values"])
        assert result["roi"]["1.0"]["n_points"] < len(means) / 2, (name, result["roi"]["1.0"])
        assert sum(m > floor for m in means) >= 3, (name, floor, max(means))
