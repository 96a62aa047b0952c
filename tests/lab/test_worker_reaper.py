"""The reaper, in process on SQLite: what becomes of runs whose worker vanished, and of lost messages."""

from __future__ import annotations

import os
import subprocess
import sys

from backend.domain import lifecycle
from backend.domain.models import utcnow
from backend.domain.queue import TRAIN_TASK
from tests.lab import worker_fixtures
from tests.lab.conftest import REPO
from tests.lab.worker_fixtures import SentMessages, add_run, add_worker, reload
from worker.reaper import reap, resend_handed_back

# The in-process worker fixtures (a migrated SQLite database per module) over tests/lab/conftest.py's.
database = worker_fixtures.database
sessions = worker_fixtures.sessions
settings = worker_fixtures.settings

STALE = 120  # seconds without a heartbeat: past the fixture's stale_after_seconds (60)


def reap_once(sessions, settings, celery=None):
    celery = celery or SentMessages()
    with sessions() as session:
        return reap(session, settings, celery), celery


def test_a_running_run_without_heartbeat_is_requeued_with_the_reason_and_sent_again(sessions, settings):
    stale = add_run(sessions, status="running", age=STALE, attempt=1, worker="w1@host")
    alive = add_run(sessions, status="running", age=1, attempt=1, worker="w2@host")

    summary, celery = reap_once(sessions, settings)

    assert summary.requeued == [stale.id]
    run = reload(sessions, stale.id)
    assert run.status == "queued" and run.claim_token is None and run.worker is None
    assert run.error.startswith("worker w1@host stopped heartbeating at ")
    assert run.error.endswith("; requeued (attempt 2 of 3)")
    assert celery.sent == [(TRAIN_TASK, [stale.id], "cpu")]
    assert reload(sessions, alive.id).status == "running"


def test_a_run_out_of_attempts_fails_with_the_reason_and_is_not_sent(sessions, settings):
    run = add_run(sessions, status="running", age=STALE, attempt=3, worker="w1@host")

    summary, celery = reap_once(sessions, settings)

    assert summary.failed == [run.id] and celery.sent == []
    run = reload(sessions, run.id)
    assert run.status == "failed" and run.finished_at is not None
    assert "stopped heartbeating" in run.error and "failed after 3 attempts" in run.error


def test_a_vanished_run_whose_cancel_was_asked_is_cancelled(sessions, settings):
    run = add_run(sessions, status="running", age=STALE, attempt=1, worker="w1@host", cancel_requested=True)

    summary, celery = reap_once(sessions, settings)

    assert summary.cancelled == [run.id] and celery.sent == []
    assert reload(sessions, run.id).status == "cancelled"


def test_two_reapers_requeue_a_run_once(sessions, settings):
    run = add_run(sessions, status="running", age=STALE, attempt=1, worker="w1@host")
    cutoff = utcnow()

    with sessions() as first, sessions() as second:  # both saw it stale; the database picks one
        won = [lifecycle.requeue_stale(s, run.id, run.claim_token, cutoff, "reason") for s in (first, second)]

    assert won == [True, False]
    summary, celery = reap_once(sessions, settings)
    assert not summary and celery.sent == []


def test_a_worker_that_beats_again_keeps_its_run(sessions, settings):
    run = add_run(sessions, status="running", age=STALE, attempt=1, worker="w1@host")
    with sessions() as session:
        assert lifecycle.heartbeat(session, run.id, run.claim_token)

    summary, _ = reap_once(sessions, settings)

    assert not summary and reload(sessions, run.id).status == "running"


def test_a_run_queued_long_while_a_live_worker_of_its_queue_idles_is_sent_again_once(sessions, settings):
    lost = add_run(sessions, age=STALE)
    fresh = add_run(sessions, age=1)
    add_worker(sessions)

    summary, celery = reap_once(sessions, settings)
    again, celery_again = reap_once(sessions, settings)

    assert summary.resent == [lost.id] and celery.run_ids == [lost.id]
    assert not again and celery_again.sent == []
    assert reload(sessions, fresh.id).status == reload(sessions, lost.id).status == "queued"


def test_a_queued_run_is_not_sent_again_while_no_idle_live_worker_could_have_taken_it(sessions, settings):
    add_run(sessions, age=STALE)  # a cpu run
    finished = add_run(sessions, status="succeeded", worker="busy-lately@host")
    with sessions() as session:
        session.get(type(finished), finished.id).finished_at = utcnow()
        session.commit()
    add_worker(sessions, "busy@host", current_run_id=999)
    add_worker(sessions, "gone@host", seen_ago=STALE)
    add_worker(sessions, "gpu-only@host", queues=("gpu",))
    add_worker(sessions, "just-started@host", started_ago=5)
    add_worker(sessions, "busy-lately@host")

    summary, celery = reap_once(sessions, settings)

    assert not summary and celery.sent == []


def test_runs_a_stopping_worker_handed_back_are_sent_again(sessions, settings):
    mine = add_run(sessions, error="worker w1@host shut down at 2026-01-01 00:00:00 UTC; requeued")
    add_run(sessions, error="worker w2@host shut down at 2026-01-01 00:00:00 UTC; requeued")
    add_run(sessions, status="running", attempt=1, worker="w1@host")
    celery = SentMessages()

    with sessions() as session:
        assert resend_handed_back(session, celery, "w1@host") == [mine.id]
    assert celery.run_ids == [mine.id]


def test_the_api_can_enqueue_without_importing_torch():
    code = ("import sys, tempfile; from backend.domain.settings import Settings; "
            "from backend.domain.queue import make_celery, enqueue_run; "
            "app = make_celery(Settings(_env_file=None, data_dir=tempfile.mkdtemp())); "
            "enqueue_run(1, {'device': 'cpu'}, app); assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_importing_the_backend_creates_nothing_on_disk(tmp_path):
    """A notebook importing the API or the Celery app in some folder finds that folder untouched;
    the API's app creates the embedded broker's folders in its data directory when it is made."""
    code = ("import backend.api.app, backend.domain.queue, pathlib; "
            "assert not list(pathlib.Path('.').iterdir()), list(pathlib.Path('.').iterdir()); "
            "from backend.domain.settings import Settings; "
            "backend.domain.queue.make_celery(Settings(_env_file=None, data_dir='lab')); "
            "assert sorted(p.name for p in pathlib.Path('lab/broker').iterdir()) == ['control', 'processed', 'queue']")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDLAB_")}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_stuck_queue_does_not_starve_the_lost_runs_of_an_idle_one(sessions, settings):
    """More lost-looking runs than one batch wait for the busy gpu queue; the idle cpu worker's lost run is
    still sent."""
    from worker.reaper import RESEND_BATCH

    for _ in range(RESEND_BATCH + 5):
        add_run(sessions, age=STALE, device="auto")        # the gpu queue: no idle worker consumes it
    lost = add_run(sessions, age=STALE, device="cpu")
    add_worker(sessions, "cpu-only@host", queues=("cpu",))

    summary, celery = reap_once(sessions, settings)

    assert summary.resent == [lost.id] and celery.run_ids == [lost.id]


def test_the_sql_queue_filter_agrees_with_queue_for(sessions, settings):
    from sqlalchemy import select

    from backend.domain.models import Run
    from backend.domain.queue import queue_for
    from worker.reaper import in_queues

    runs = {device: add_run(sessions, device=device).id for device in ("cpu", "auto", "cuda", "cuda:1")}
    with sessions() as session:
        for queues in ({"cpu"}, {"gpu"}, {"cpu", "gpu"}, set(), {"other"}):
            found = set(session.scalars(select(Run.id).where(Run.id.in_(runs.values()), in_queues(queues))))
            assert found == {run_id for device, run_id in runs.items() if queue_for({"device": device}) in queues}
