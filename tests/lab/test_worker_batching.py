"""Batches in the worker: which queued runs a worker claims beside the one its message named, and an
execution that trains them together while recording each run as if it had trained alone.

The execution tests call `worker.execution.execute` in this process, on a migrated SQLite
database and the synthetic dataset: the same code a pool process runs for a message.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from backend.domain import lifecycle
from backend.domain.models import FAILED, QUEUED, RUNNING, SUCCEEDED, MetricPoint, Run, Worker
from idlab.config import RunConfig
from tests.lab import worker_fixtures
from tests.lab.worker_fixtures import add_run, add_worker
from worker.batching import Claimed, claim_batchmates
from worker.execution import execute

# The in-process worker fixtures (a migrated SQLite database per module) over tests/lab/conftest.py's.
database = worker_fixtures.database
sessions = worker_fixtures.sessions
settings = worker_fixtures.settings

pytestmark = pytest.mark.timeout(300)

WORKER = "w1@host"


def claim_lead(sessions, run: Run) -> tuple[Claimed, RunConfig]:
    with sessions() as session:
        token = lifecycle.claim(session, run.id, WORKER)
    return Claimed(run.id, token, run.config), RunConfig.model_validate(run.config)


def batchmates_of(sessions, settings, lead: Run) -> list[int]:
    claimed, config = claim_lead(sessions, lead)
    with sessions() as session:
        return [mate.run_id for mate in claim_batchmates(session, claimed, config, WORKER, settings)]


def run_row(sessions, run_id: int) -> Run:
    with sessions() as session:
        return session.get(Run, run_id)


def test_batchmates_are_the_oldest_compatible_queued_runs_up_to_K(sessions, settings):
    settings.batch_runs = 3
    lead = add_run(sessions, seed=0)
    other_data = add_run(sessions, train_size=128)
    other_width = add_run(sessions, fc_widths=[32])
    other_batch_size = add_run(sessions, batch_size=16)
    other_device = add_run(sessions, device="auto")
    direct = add_run(sessions, method="direct")
    cancelled = add_run(sessions, status="cancelled")
    running = add_run(sessions, status="running", worker="w2@host")
    mates = [add_run(sessions, seed=1, d=10), add_run(sessions, seed=2, projection="dense", d=40),
             add_run(sessions, seed=3)]

    claimed = batchmates_of(sessions, settings, lead)

    assert claimed == [mates[0].id, mates[1].id]            # K − 1 = 2 places, oldest first
    for run_id in claimed:
        run = run_row(sessions, run_id)
        assert (run.status, run.worker, run.attempt) == (RUNNING, WORKER, 1) and run.claim_token
    untouched = (other_data, other_width, other_batch_size, other_device, direct, mates[2])
    assert {run_row(sessions, run.id).status for run in untouched} == {QUEUED}
    assert run_row(sessions, running.id).worker == "w2@host"
    assert run_row(sessions, cancelled.id).status == "cancelled"


def test_a_batch_stays_within_the_memory_budget_of_one_run(sessions, settings):
    dense = dict(dataset="mnist", fc_widths=[200, 200], projection="dense", d=300)
    one_run_mb = RunConfig.model_validate({**dense, "device": "cpu"}).memory_bytes() / 2**20
    settings.batch_runs, settings.memory_budget_mb = 8, 2.5 * one_run_mb   # room for two such runs
    lead = add_run(sessions, **dense)
    mates = [add_run(sessions, seed=seed, **dense) for seed in (1, 2, 3)]

    assert batchmates_of(sessions, settings, lead) == [mates[0].id]


def test_with_two_training_processes_each_batch_takes_its_share_of_the_queue(sessions, settings):
    settings.batch_runs, settings.worker_processes = 32, 2
    runs = [add_run(sessions, seed=seed) for seed in range(7)]
    # 7 runs for 2 processes: the first batch takes ⌈7/2⌉ = 4 (its lead and 3 mates) ...
    assert batchmates_of(sessions, settings, runs[0]) == [run.id for run in runs[1:4]]
    # ... and the second, counting the 4 this worker already trains, the other 3
    assert batchmates_of(sessions, settings, runs[4]) == [runs[5].id, runs[6].id]


def test_a_worker_set_to_one_run_claims_no_batchmates(sessions, settings):
    settings.batch_runs = 1
    lead = add_run(sessions)
    add_run(sessions, seed=1)

    assert batchmates_of(sessions, settings, lead) == []


def final_and_points(sessions, run_id: int) -> tuple[Run, dict]:
    with sessions() as session:
        run = session.get(Run, run_id)
        points = {(p.key, p.step): p.value
                  for p in session.scalars(select(MetricPoint).where(MetricPoint.run_id == run_id))}
    return run, points


def test_a_batch_records_each_run_as_it_would_have_trained_alone(sessions, settings):
    settings.batch_runs = 4
    shapes = [dict(seed=0, d=20), dict(seed=1, d=12, projection="sparse"), dict(seed=2, d=30, augmentation="rff"),
              dict(seed=3, d=20, epochs=1)]
    batch = [add_run(sessions, **fields) for fields in shapes]
    add_worker(sessions, WORKER)

    outcome = execute(batch[0].id, WORKER, settings, threading.Event())

    assert outcome == "batch of 4: 4 succeeded"
    assert execute(batch[1].id, WORKER, settings, threading.Event()) == "dropped"  # its own message, later
    together = [final_and_points(sessions, run.id) for run in batch]
    batch_ids = {run.batch_id for run, _ in together}
    assert len(batch_ids) == 1 and None not in batch_ids
    assert all(run.status == SUCCEEDED and run.attempt == 1 for run, _ in together)
    with sessions() as session:
        assert session.get(Worker, WORKER).current_batch is None          # idle again

    settings.batch_runs = 1
    alone = [add_run(sessions, **fields) for fields in shapes]
    for run in alone:
        assert execute(run.id, WORKER, settings, threading.Event()) == SUCCEEDED
    for (run, points), twin in zip(together, alone, strict=True):
        solo, solo_points = final_and_points(sessions, twin.id)
        assert solo.batch_id is None
        assert set(points) == set(solo_points)
        for key, value in solo_points.items():
            assert points[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (run.id, key)
        for key in ("test_acc", "test_loss", "train_loss", "steps", "epochs"):
            assert run.final_metrics[key] == pytest.approx(solo.final_metrics[key], rel=1e-5), key


def test_a_run_that_cannot_start_fails_alone_and_its_batchmates_train(sessions, settings):
    settings.batch_runs = 3
    first = add_run(sessions, seed=0)
    orphan = add_run(sessions, seed=1, projection="sparse", p_init="from_run:999999")  # no run to sample P from
    third = add_run(sessions, seed=2)

    assert execute(first.id, WORKER, settings, threading.Event()) == "batch of 3: 2 succeeded, 1 failed"
    assert run_row(sessions, orphan.id).status == FAILED
    assert "run 999999 has no stored statistics" in run_row(sessions, orphan.id).error
    assert {run_row(sessions, run.id).status for run in (first, third)} == {SUCCEEDED}


def test_a_stale_execution_stores_neither_its_artifact_nor_its_outcome(sessions, settings):
    from backend.domain.models import STATISTICS_ARTIFACT, RunArtifact
    from worker.execution import RunExecution
    from worker.heartbeat import Heartbeat

    run = add_run(sessions)
    lead, _ = claim_lead(sessions, run)
    execution = RunExecution(sessions, settings, lead, WORKER, threading.Event(),
                             Heartbeat(sessions, WORKER, settings.heartbeat_seconds))
    with sessions() as session:  # a reaper took the run over while this worker was unreachable
        requeued = lifecycle.requeue_stale(session, run.id, lead.token, lifecycle.database_now(session)
                                           + timedelta(seconds=1), "worker stopped heartbeating")
    assert requeued

    outcome = execution.conclude(SUCCEEDED, metrics={"test_acc": 0.5}, statistics={"P": {"linear": {}}})

    assert outcome == "lost"
    stored = run_row(sessions, run.id)
    assert (stored.status, stored.final_metrics, stored.claim_token) == (QUEUED, {}, None)
    with sessions() as session:
        assert session.scalar(select(RunArtifact).where(RunArtifact.run_id == run.id,
                                                        RunArtifact.name == STATISTICS_ARTIFACT)) is None


def test_the_worker_refuses_a_config_with_nan_or_inf_by_the_same_schema(sessions, settings):
    from worker.execution import RunExecution, RunSetupError, batchmates
    from worker.heartbeat import Heartbeat

    run = add_run(sessions)
    lead, _ = claim_lead(sessions, run)
    for field, value in (("lr", float("nan")), ("p_scale", float("inf"))):
        hostile = Claimed(lead.run_id, lead.token, {**lead.raw_config, field: value})
        execution = RunExecution(sessions, settings, hostile, WORKER, threading.Event(),
                                 Heartbeat(sessions, WORKER, settings.heartbeat_seconds))
        with pytest.raises(RunSetupError, match=f"{field}: Input should be a finite number"):
            execution.validated_config()
        with sessions() as session:
            assert batchmates(session, hostile, WORKER, settings) == []   # it fails alone, with its reason
