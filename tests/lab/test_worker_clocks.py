"""Workers whose clocks are ten minutes off, with real processes on PostgreSQL and a private Redis.

Heartbeats and staleness are judged by the database's clock, so a worker whose clock runs ten
minutes behind keeps its run while a worker whose clock runs ten minutes ahead reaps beside it,
and while a reaper with the true clock (this test's process) reaps too. Judged by their own
clocks, the heartbeats of the first would look ten minutes old to the others (stale after 3 s)
and its run would be requeued again and again.

The clocks are shifted with libfaketime (LD_PRELOAD; Debian's `faketime` package), the same way
for the worker and every process it forks.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.domain import lifecycle
from backend.domain.models import RUNNING, SUCCEEDED
from tests.lab.lab_processes import LONG, RedisServer, WorkerProcess, open_lab, wait_for
from tests.lab.worker_fixtures import SentMessages
from worker.reaper import reap

pytestmark = pytest.mark.timeout(300)

LIBFAKETIME = next((path for path in (Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
                                      Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
                                      Path("/usr/lib/faketime/libfaketime.so.1")) if path.exists()), None)
SKEW_SECONDS = 600
#: Staleness here: still 60 times shorter than the skew, and long enough that a heartbeat thread
#: delayed by a busy 2-core machine does not pass for a vanished worker.
STALE_SECONDS = 10


def skewed(env: dict, seconds: int) -> dict:
    """`env` with the process clock shifted by `seconds` (monotonic time left alone: it measures intervals)."""
    return {**env, "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"{seconds:+d}", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def clock_offset(env: dict) -> float:
    """How far the clock of a process started with `env` is from this one's, in seconds."""
    before = time.time()
    shown = float(subprocess.run([sys.executable, "-c", "import time; print(time.time())"], env=env, check=True,
                                 capture_output=True, text=True, timeout=60).stdout)
    return shown - (before + time.time()) / 2


@pytest.fixture
def lab(tmp_path):
    if LIBFAKETIME is None:
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    redis = RedisServer(tmp_path)
    try:
        with open_lab("deployed", tmp_path, broker_url=redis.url) as lab:
            yield lab
    finally:
        redis.kill()


def start(lab, name: str, seconds: int, queues: str) -> WorkerProcess:
    env = skewed({**lab.env(), "IDLAB_STALE_AFTER_SECONDS": str(STALE_SECONDS)}, seconds)
    assert abs(clock_offset(env) - seconds) < 30, "libfaketime did not shift the clock"
    worker = WorkerProcess(f"{name}-{abs(seconds)}", env, lab.data_dir / f"{name}.log", queues)
    lab.workers.append(worker)
    return worker


def test_workers_with_skewed_clocks_take_over_no_healthy_run(lab):
    # The one behind trains the run (it alone consumes the cpu queue); the one ahead only reaps.
    behind = start(lab, "behind", -SKEW_SECONDS, "cpu")
    ahead = start(lab, "ahead", +SKEW_SECONDS, "gpu")
    for worker in (behind, ahead):
        lab.wait_until_registered(worker)
    run_id = lab.create_run(**LONG)

    settings = lab.settings.model_copy(update={"stale_after_seconds": STALE_SECONDS})
    reaper = SentMessages()
    beats, deadline = 0, time.monotonic() + 180
    while (run := lab.run(run_id)).status not in (SUCCEEDED, "failed", "cancelled", "diverged"):
        assert run.status != "queued" or run.attempt == 0, f"the run was taken over: {lab.describe(run_id)}"
        with lab.sessions() as session:   # a reaper on the true clock, in this process
            summary = reap(session, settings, reaper)
            now = lifecycle.database_now(session)
        assert not summary, f"the reaper took over a healthy run: {summary}"
        if run.status == RUNNING and run.heartbeat_at is not None:
            assert abs((now - run.heartbeat_at).total_seconds()) < settings.stale_after_seconds, \
                "a heartbeat was not stamped by the database's clock"
            beats += 1
        assert time.monotonic() < deadline, f"the run did not finish: {lab.describe(run_id)}"
        time.sleep(0.25)

    run = lab.wait_finished(run_id, timeout=120)
    assert run.status == SUCCEEDED and run.attempt == 1 and run.error is None, lab.describe(run_id)
    assert run.worker == behind.name and lab.executions(run_id) == 1, lab.describe(run_id)
    assert beats >= 3 and reaper.sent == []
    for worker in (behind, ahead):
        assert worker.alive() and "stopped heartbeating" not in worker.output(), worker.output()[-3000:]
    # Both say they are alive (as they do between reaper passes) on the database's clock, not their own.
    for worker in (behind, ahead):
        wait_for(lambda worker=worker: age_of(lab, worker.name, "last_seen") < 3, 10,
                 f"{worker.name}'s last_seen to be current")
        assert age_of(lab, worker.name, "started_at") < 300


def age_of(lab, name: str, column: str) -> float:
    """How far the worker's `column` is from the database's clock, in seconds (either way)."""
    with lab.sessions() as session:
        now = lifecycle.database_now(session)
    return abs((now - getattr(lab.worker_row(name), column)).total_seconds())
