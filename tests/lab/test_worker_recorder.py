"""The training callback, in process on SQLite with a fake clock: batching of point writes, when it
asks the database, and why it stops a run."""

from __future__ import annotations

import math
import threading

import pytest
from sqlalchemy import func, select

from backend.domain import lifecycle
from backend.domain.models import MetricPoint, Run
from tests.lab import worker_fixtures
from tests.lab.worker_fixtures import add_run
from worker.recorder import BATCH_POINTS, CANCEL, CHECK_SECONDS, FLUSH_SECONDS, LOST, SHUTDOWN, RunRecorder
from worker.subspace.training import MetricPoint as Point

# The in-process worker fixtures (a migrated SQLite database per module) over tests/lab/conftest.py's.
database = worker_fixtures.database
sessions = worker_fixtures.sessions


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def claimed(sessions):
    run = add_run(sessions)
    with sessions() as session:
        token = lifecycle.claim(session, run.id, "w1@host")
    return run.id, token


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def shutdown():
    return threading.Event()


@pytest.fixture
def recorder(sessions, claimed, clock, shutdown):
    run_id, token = claimed
    return RunRecorder(sessions, run_id, token, shutdown, clock=clock)


def stored(sessions, run_id) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(MetricPoint).where(MetricPoint.run_id == run_id))


def points(first_step: int, count: int, key: str = "train_loss") -> list[Point]:
    return [Point(step, 1, key, 0.5) for step in range(first_step, first_step + count)]


def test_points_are_written_in_batches_by_time_and_by_size(sessions, claimed, recorder, clock):
    run_id, _ = claimed
    assert recorder(points(1, 10)) is False
    assert stored(sessions, run_id) == 0  # buffered: less than FLUSH_SECONDS since the last write

    clock.now += FLUSH_SECONDS + 0.01
    recorder(points(11, 1))
    assert stored(sessions, run_id) == 11

    recorder(points(12, BATCH_POINTS))  # a full batch goes at once
    assert stored(sessions, run_id) == 11 + BATCH_POINTS

    recorder(points(1, 5))  # the same (key, step) again: overwritten, not added
    recorder.flush()
    assert stored(sessions, run_id) == 11 + BATCH_POINTS


def test_a_cancel_is_seen_at_the_next_check(sessions, claimed, recorder, clock):
    run_id, _ = claimed
    with sessions() as session:
        lifecycle.request_cancel(session, session.get(Run, run_id))
        session.commit()

    assert recorder([]) is False  # not asked yet: at most every CHECK_SECONDS
    clock.now += CHECK_SECONDS
    assert recorder([]) is True and recorder.stop_reason == CANCEL


def test_a_run_taken_over_stops_its_execution(sessions, claimed, recorder, clock):
    run_id, token = claimed
    with sessions() as session:
        assert lifecycle.release(session, run_id, token, "taken over")

    clock.now += CHECK_SECONDS
    assert recorder([]) is True and recorder.stop_reason == LOST


def test_a_worker_shutdown_stops_the_run_at_once(recorder, shutdown):
    shutdown.set()
    assert recorder([]) is True and recorder.stop_reason == SHUTDOWN


def test_progress_holds_the_latest_values_and_non_finite_ones_are_not_stored(sessions, claimed, recorder, clock):
    run_id, _ = claimed
    recorder([Point(10, 1, "train_loss", 0.7), Point(10, 1, "train_acc", 0.4)])
    recorder([Point(20, 2, "train_loss", math.nan), Point(20, 2, "test_acc", 0.5)])
    recorder.flush()

    assert recorder.progress() == {"step": 20, "epoch": 2, "train_loss": None, "train_acc": 0.4, "test_acc": 0.5}
    assert stored(sessions, run_id) == 3
