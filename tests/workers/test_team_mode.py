"""Team-mode files. Docker cannot run here, so the compose file is parsed and checked, not run."""

from __future__ import annotations

import importlib
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


def _compose_commands(compose: dict) -> dict[str, list[list[str]]]:
    """Each service's commands as argv lists (a `sh -c "a && b"` string splits into a and b)."""
    import shlex

    commands: dict[str, list[list[str]]] = {}
    for name, service in compose["services"].items():
        command = service.get("command")
        if command is None:
            continue
        argv = command if isinstance(command, list) else shlex.split(command)
        if argv[:2] == ["sh", "-c"]:
            commands[name] = [shlex.split(part) for part in argv[2].split("&&")]
        else:
            commands[name] = [argv]
    return commands


def test_every_command_and_setting_in_docker_compose_exists():
    """What team mode runs (docker-compose.yml) must be commands and settings prunescape has: a
    renamed subcommand, a removed flag or a misspelt PRUNESCAPE_ variable fails here, not at 3 am."""
    import yaml

    from backend.cli.main import build_parser
    from backend.settings import Settings

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    commands = _compose_commands(compose)
    assert {"api", "reconciler", "worker-gpu0"} <= set(commands)
    parser = build_parser()
    seen = set()
    for service, argvs in commands.items():
        for argv in argvs:
            if argv[0] == "prunescape":
                assert callable(parser.parse_args(argv[1:]).func), (service, argv)
                seen.add(argv[1])
            elif argv[0] == "uvicorn":
                target = argv[argv.index("--factory") + 1]
                module, _, attr = target.partition(":")
                assert callable(getattr(importlib.import_module(module), attr)), target
                seen.add("uvicorn")
    assert {"migrate", "reconcile", "worker", "uvicorn"} <= seen
    known = {f"PRUNESCAPE_{name.upper()}" for name in Settings.model_fields}
    known |= {"PRUNESCAPE_QUEUE", "PRUNESCAPE_VISIBILITY_TIMEOUT_S", "PRUNESCAPE_API_WORKERS"}
    env = dict(compose["x-prunescape-env"])
    for service in compose["services"].values():
        env.update(service.get("environment") or {})
    used = {key for key in env if key.startswith("PRUNESCAPE_")}
    assert used and used <= known, sorted(used - known)


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
