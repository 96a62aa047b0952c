"""Claims and clocks, in process on SQLite and PostgreSQL: an execution that lost its run writes
nothing; a hand-back costs no attempt and a retry starts a fresh budget; times are the database's.

The same with real worker processes (one whose clock is ten minutes off, one stopped mid-run) is
tests/lab/test_worker_clocks.py and tests/lab/test_worker_crash.py.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from backend.domain import lifecycle
from backend.domain.models import FAILED, QUEUED, RUNNING, SUCCEEDED, MetricEnvelope, MetricPoint, Run, utcnow
from backend.domain.points import write_points
from backend.domain.settings import Settings
from idlab.config import RunConfig
from tests.lab.lab_processes import TINY
from tests.lab.worker_fixtures import SentMessages
from worker.reaper import reap
from worker.recorder import LOST, RunRecorder
from worker.subspace.training import MetricPoint as Point


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, database_url=database_url, stale_after_seconds=60,
                    max_attempts=3)


def new_run(sessions) -> int:
    with sessions() as session:
        run = lifecycle.new_run(RunConfig.model_validate(TINY))
        session.add(run)
        session.commit()
        return run.id


def claim(sessions, run_id: int, worker: str = "w1@host") -> str:
    with sessions() as session:
        token = lifecycle.claim(session, run_id, worker)
    assert token is not None
    return token


def reap_as_if_silent(sessions, run_id: int, token: str) -> None:
    """What a reaper does to a run whose worker fell silent: requeue it (its heartbeat is judged
    stale by moving the cutoff past it, rather than by waiting a minute)."""
    with sessions() as session:
        cutoff = lifecycle.database_now(session) + timedelta(seconds=1)
        assert lifecycle.requeue_stale(session, run_id, token, cutoff, "worker w1@host stopped heartbeating")


def stored(sessions, run_id: int) -> dict[tuple[str, int], float]:
    with sessions() as session:
        return {(key, step): value for key, step, value in session.execute(
            select(MetricPoint.key, MetricPoint.step, MetricPoint.value).where(MetricPoint.run_id == run_id))}


def run_of(sessions, run_id: int) -> Run:
    with sessions() as session:
        return session.get(Run, run_id)


def test_an_execution_that_lost_its_run_writes_nothing(sessions):
    run_id = new_run(sessions)
    old = claim(sessions, run_id)
    with sessions() as session:
        assert lifecycle.write_claimed_points(session, run_id, old,
                                              [("train_loss", 1, 0, 2.0), ("train_loss", 2, 0, 1.5)])
    reap_as_if_silent(sessions, run_id, old)

    with sessions() as session:
        assert not lifecycle.holds_claim(session, run_id, old)
        assert not lifecycle.write_claimed_points(session, run_id, old,
                                                  [("train_loss", 2, 0, 9.0), ("train_loss", 3, 0, 1.0)])
        assert not lifecycle.heartbeat(session, run_id, old, {"step": 3})
        assert not lifecycle.finish(session, run_id, old, SUCCEEDED, metrics={"test_acc": 0.9})
        assert not lifecycle.release(session, run_id, old, "shutting down")
    assert stored(sessions, run_id) == {("train_loss", 1): 2.0, ("train_loss", 2): 1.5}   # nothing new, nothing changed
    run = run_of(sessions, run_id)
    assert run.status == QUEUED and run.attempt == 1 and run.final_metrics == {} and run.progress == {}

    new = claim(sessions, run_id, "w2@host")          # the next execution owns it, and only it writes
    with sessions() as session:
        assert lifecycle.write_claimed_points(session, run_id, new, [("train_loss", 2, 0, 1.4)])
        assert not lifecycle.write_claimed_points(session, run_id, old, [("train_loss", 2, 0, 9.0)])
        assert lifecycle.finish(session, run_id, new, SUCCEEDED)
    assert stored(sessions, run_id)[("train_loss", 2)] == 1.4
    assert run_of(sessions, run_id).attempt == 2


def test_a_recorder_that_lost_its_run_drops_its_points_and_stops_it(sessions):
    run_id = new_run(sessions)
    token = claim(sessions, run_id)
    recorder = RunRecorder(sessions, run_id, token, threading.Event(), clock=lambda: 0.0)
    recorder([Point(1, 0, "train_loss", 2.0)])
    recorder.flush()
    assert recorder.written == 1 and recorder.stop_reason is None
    reap_as_if_silent(sessions, run_id, token)

    recorder([Point(2, 0, "train_loss", 1.0), Point(3, 0, "train_loss", 0.5)])
    recorder.flush()   # before its next check of the run: the write itself finds the claim gone

    assert recorder.stop_reason == LOST and recorder([]) is True
    assert recorder.written == 1 and recorder.dropped == 2
    assert stored(sessions, run_id) == {("train_loss", 1): 2.0}


def test_a_requeue_waits_for_the_points_write_in_flight(sessions):
    """The claim's check and the write are one transaction holding the run (a row lock on PostgreSQL,
    the write lock on SQLite): a reaper's requeue lands after the write, never between check and write."""
    run_id = new_run(sessions)
    token = claim(sessions, run_id)
    requeued = []
    with sessions() as writer:
        assert lifecycle.holds_claim(writer, run_id, token)
        reaper = threading.Thread(target=lambda: requeued.append(reap_as_if_silent(sessions, run_id, token)))
        reaper.start()
        reaper.join(1.0)
        assert reaper.is_alive(), "the requeue went through while the execution was writing under its claim"
        assert run_of(sessions, run_id).status == RUNNING
        write_points(writer, run_id, [("train_loss", 1, 0, 2.0)])
        writer.commit()
    reaper.join(30)
    assert requeued == [None] and run_of(sessions, run_id).status == QUEUED
    assert stored(sessions, run_id) == {("train_loss", 1): 2.0}


def test_a_hand_back_costs_no_attempt(sessions, settings):
    run_id = new_run(sessions)
    for _ in range(settings.max_attempts + 2):        # a rolling restart hands it back again and again
        token = claim(sessions, run_id)
        assert run_of(sessions, run_id).attempt == 1
        with sessions() as session:
            assert lifecycle.release(session, run_id, token, "worker w1@host shut down; requeued")
        assert run_of(sessions, run_id).attempt == 0

    token = claim(sessions, run_id)                   # then its worker vanishes: the reaper still requeues it
    summary = reap_later(sessions, settings)
    assert summary.requeued == [run_id] and summary.failed == []
    assert run_of(sessions, run_id).error.endswith("requeued (attempt 2 of 3)")


def reap_later(sessions, settings, after: float = 120):
    """A reaper pass `after` seconds from now on the database's clock (heartbeats then look that old)."""
    with sessions() as session:
        later = lifecycle.database_now(session) + timedelta(seconds=after)
        return reap(session, settings, SentMessages(), now=later)


def test_a_retry_starts_with_a_fresh_attempt_budget(sessions, settings):
    run_id = new_run(sessions)
    for _ in range(settings.max_attempts):            # three executions whose worker vanished
        claim(sessions, run_id)
        summary = reap_later(sessions, settings)
    assert summary.failed == [run_id]
    assert run_of(sessions, run_id).status == FAILED and run_of(sessions, run_id).attempt == settings.max_attempts

    with sessions() as session:
        lifecycle.retry(session, session.get(Run, run_id))
        session.commit()
    assert run_of(sessions, run_id).attempt == 0
    claim(sessions, run_id)
    summary = reap_later(sessions, settings)        # vanished again: requeued, not failed at once
    assert summary.requeued == [run_id] and run_of(sessions, run_id).status == QUEUED


def test_a_handed_back_run_rebuilds_its_envelopes_when_it_finishes(sessions):
    """The attempt no longer tells a re-execution (a hand-back gives it back): the envelopes' write
    counts do, so the spike the first execution wrote does not outlive the one that replaced it."""
    run_id = new_run(sessions)
    first = claim(sessions, run_id)
    with sessions() as session:
        assert lifecycle.write_claimed_points(session, run_id, first, [("train_loss", s, 0, 999.0 if s == 7 else 1.0)
                                                                      for s in range(20)])
        assert lifecycle.release(session, run_id, first, "worker w1@host shut down; requeued")
    second = claim(sessions, run_id)
    with sessions() as session:
        assert lifecycle.write_claimed_points(session, run_id, second, [("train_loss", s, 0, 1.0) for s in range(20)])
        assert lifecycle.finish(session, run_id, second, SUCCEEDED)
        highest = session.scalar(select(func.max(MetricEnvelope.max_value)).where(MetricEnvelope.run_id == run_id))
    assert run_of(sessions, run_id).attempt == 1 and highest == 1.0


def test_claims_heartbeats_and_finishes_are_stamped_with_the_database_clock(sessions):
    """Stamped by the database and read back as aware UTC, to the fraction of a second (SQLite's
    CURRENT_TIMESTAMP would keep whole seconds only)."""
    run_id = new_run(sessions)
    token = claim(sessions, run_id)
    claimed = run_of(sessions, run_id)
    time.sleep(0.05)
    with sessions() as session:
        assert lifecycle.heartbeat(session, run_id, token)
        beat = session.scalar(select(Run.heartbeat_at).where(Run.id == run_id))
        assert lifecycle.finish(session, run_id, token, SUCCEEDED)
        now = lifecycle.database_now(session)
    finished = run_of(sessions, run_id).finished_at
    for stamp in (claimed.started_at, claimed.heartbeat_at, beat, finished):
        assert stamp.utcoffset() == timedelta(0) and abs((utcnow() - stamp).total_seconds()) < 60
    assert claimed.started_at == claimed.heartbeat_at < beat <= finished <= now
    assert (beat - claimed.heartbeat_at).total_seconds() >= 0.04
