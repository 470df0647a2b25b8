"""A fused group meets a worker killed mid-epoch (docs/spec.md section 8): real `prunescape worker`
processes with PRUNESCAPE_FUSED_GROUP_SIZE=3 on Postgres and Redis. Every run of the group is
`running` when the worker dies; the reconciler requeues them, the next worker resumes each from
its own checkpoint (grouped again or alone), and no run is lost or trained twice."""

from __future__ import annotations

import signal
import time

import pytest
import sqlalchemy as sa

from backend.db.models import Artefact
from tests.reliability.test_worker_faults_more import cluster_factory, spec, submit  # noqa: F401
from tests.workers.conftest import stop_worker, wait_for
from workers.dispatch import reconcile


@pytest.mark.slow
def test_a_worker_killed_mid_group_loses_no_run_and_trains_none_twice(cluster_factory, redis_url) -> None:  # noqa: F811
    epochs_total = 5
    cluster = cluster_factory(redis_url, reconcile_after_s=5.0)
    grouped = cluster.env(PRUNESCAPE_FUSED_GROUP_SIZE="3")
    study_id = submit(cluster, spec("killed mid-group", epochs=epochs_total, size=3, batch_size=16))
    train = [r.id for r in cluster.runs(study_id) if r.kind == "train"]
    first_group = train[:3]

    def reconcile_once() -> None:
        with cluster.make() as s:
            reconcile(s, cluster.settings)  # what `prunescape reconcile --every N` does

    worker = cluster.start_worker("worker-1", **grouped)
    # one worker process running one task: three runs gaining epochs together are one fused group
    wait_for(
        lambda: all(len(cluster.epochs(r)) >= 2 for r in first_group), 300, "two epochs of the first group"
    )
    seconds = cluster.epoch_seconds(first_group[0])
    time.sleep(seconds[max(seconds)] / 2)  # into the next epoch
    stop_worker(worker, signal.SIGKILL)
    before = {r: cluster.epoch_seconds(r) for r in first_group}
    runs = {r.id: r for r in cluster.runs(study_id)}
    assert [(runs[r].status, runs[r].attempts) for r in first_group] == [("running", 1)] * 3
    assert all(2 <= len(before[r]) < epochs_total for r in first_group), before
    assert {runs[r].status for r in train[3:]} == {"queued"}  # the rest waited for the group
    assert "training fused as one group" in cluster.log_text("worker-1")

    cluster.start_worker("worker-2", **grouped)
    cluster.wait_finished([study_id], 600, tick=reconcile_once)

    runs = {r.id: r for r in cluster.runs(study_id)}
    assert {runs[r].status for r in runs} == {"succeeded"}, [(r.id, r.status, r.error) for r in runs.values()]
    with cluster.make() as s:
        for run_id in train:
            run = runs[run_id]
            assert run.epochs_done == epochs_total
            assert sorted(cluster.epochs(run_id)) == list(range(1, epochs_total + 1))  # each epoch once
            assert run.attempts == (2 if run_id in first_group else 1), (run_id, run.attempts)
            models = s.scalar(
                sa.select(sa.func.count()).where(Artefact.run_id == run_id, Artefact.kind == "model")
            )
            assert models == 1, run_id
    # Resumed, not retrained: the epochs recorded before the kill keep their measured wall times.
    for run_id in first_group:
        after = cluster.epoch_seconds(run_id)
        assert {e: after[e] for e in before[run_id]} == before[run_id], run_id
    # the rest were trained in groups too (worker-2 groups whatever is claimable when it looks)
    assert any((runs[r].result or {}).get("group") for r in train[3:])
    assert cluster.study_status(study_id) == "succeeded"
