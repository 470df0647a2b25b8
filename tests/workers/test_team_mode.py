"""Team-mode files. Docker cannot run here, so the compose file is parsed and checked, not run."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_compose_file_wires_services_together():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "api", "reconciler", "worker-gpu0"} <= set(services)
    worker = services["worker-gpu0"]
    assert worker["command"][:2] == ["prunescape", "worker"]
    assert worker["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["capabilities"] == ["gpu"] and device["device_ids"] == ["0"]
    for name in ("api", "worker-gpu0", "reconciler"):
        env = services[name]["environment"]
        assert env["PRUNESCAPE_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["PRUNESCAPE_BROKER_URL"] == "redis://redis:6379/0"
    # API and workers share the artefact volume
    assert "artifacts:/artifacts" in services["api"]["volumes"]
    assert "artifacts:/artifacts" in worker["volumes"]
    assert "artifacts" in compose["volumes"]


def test_dockerfile_installs_the_package():
    text = (REPO / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "RUN pip install ." in text


def test_compose_commands_are_real_subcommands():
    from backend.cli.main import build_parser

    parser = build_parser()
    for argv in (["worker", "--concurrency", "1"], ["reconcile", "--every", "30"], ["migrate"]):
        assert callable(parser.parse_args(argv).func)


def test_celery_app_has_the_settings_long_runs_need(monkeypatch):
    from workers.celery_app import create_app

    monkeypatch.setenv("PRUNESCAPE_VISIBILITY_TIMEOUT_S", "7200")
    from backend.settings import Settings

    app = create_app(Settings(broker_url="redis://127.0.0.1:1/0"), queue="gpu-a")
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 7200
    assert conf.task_default_queue == "gpu-a"


def test_importing_the_celery_app_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, workers.celery_app, workers.dispatch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
