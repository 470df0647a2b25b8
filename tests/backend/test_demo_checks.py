"""The demo spec is a valid study within the service's default limits, and `landscape_checks`
reads the properties the demo is built to show off an analysis record (known synthetic ones)."""

from __future__ import annotations

import pytest

from backend.analysis import analyse
from backend.analysis.synthetic import SyntheticVariant, synthetic_rows
from backend.demo import demo_spec, landscape_checks
from backend.settings import Settings
from backend.spec import check_limits, count_runs, parse_spec

GRID = {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.2, "size": 7}


def test_the_demo_spec_is_valid_and_small():
    spec = parse_spec(demo_spec())
    settings = Settings()
    check_limits(spec, max_grid_size=settings.max_grid_size, max_runs_per_study=settings.max_runs_per_study)
    assert spec.dataset.name == "digits" and spec.model.name == "digits_cnn"
    assert [v.kind for v in spec.variants].count("structured") >= 2
    assert count_runs(spec)["total"] <= 320  # what two CPU cores finish in a few minutes
    assert demo_spec() == demo_spec() and demo_spec() is not demo_spec()  # a fresh copy each time


def _analysis(variants):
    rows = synthetic_rows(variants, size=7, step=0.2, noise=0.0)
    return analyse(rows, grid=GRID).to_dict()


def test_checks_find_the_best_off_the_edge_and_the_tested_shift():
    analysis = _analysis([SyntheticVariant("base"), SyntheticVariant("u60", shift_lr=0.2)])
    checks = landscape_checks(analysis)
    base, u60 = checks["variants"]["base"], checks["variants"]["u60"]
    assert base["best_on_edge"] is False and base["best_lr"] == 0.1 and base["best_wd"] == 1e-4
    assert base["points"] == 49 and base["roi_0.5_points"] >= 5 and base["ellipse_0.5"] is True
    assert base["shift_0.5_tested"] is False  # the base is the reference
    assert u60["shift_0.5_tested"] is True and u60["shift_0.5_p"] is not None
    assert u60["roi_1.0_share"] == analysis["results"]["u60"]["roi"]["1.0"]["n_points"] / 49
    floor = checks["colour_scale"]["min"]
    assert base["above_floor"] + u60["above_floor"] <= 0.15 * 98 + 1  # the floor: 85th percentile
    assert base["at_floor_share"] == pytest.approx(1 - base["above_floor"] / 49)
    assert floor < base["best"]


def test_checks_see_a_best_on_the_edge():
    checks = landscape_checks(_analysis([SyntheticVariant("base", shift_wd=-1.0)]))
    assert checks["variants"]["base"]["best_on_edge"] is True


@pytest.mark.parametrize(
    ("demo", "preset", "expected"), [(True, None, "1"), (True, "4", "4"), (False, None, None)]
)
def test_serve_demo_runs_its_worker_with_one_thread_per_run(monkeypatch, demo, preset, expected):
    """The demo's numbers are pinned at one intra-op thread (tests/workers/test_demo_landscape.py);
    `serve --demo` gives its worker the same, unless the user chose a thread count."""
    import subprocess

    from backend.embedded import EmbeddedService, ServeOptions

    started = {}

    class FakePopen:
        pid = 12345

        def __init__(self, command, env, start_new_session):
            started.update(command=command, env=env)

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    if preset is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", preset)
    EmbeddedService(ServeOptions(demo=demo)).start_worker()
    assert "worker" in started["command"]
    assert started["env"].get("OMP_NUM_THREADS") == expected
