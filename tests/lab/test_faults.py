"""Faults of the deployed lab, with real processes: PostgreSQL, a private `redis-server` that the
tests kill, `idlab worker` processes and the API as its own uvicorn process.

Whatever the fault, no run is lost, none executes more often than it has to (each worker logs
every claim of a run: "run N claimed by …"), and every metric point is stored exactly once —
the (key, step) pairs stored are the ones `expected_point_keys` says the run's config logs.

    broker restart   Redis killed (SIGKILL, nothing persisted) with runs queued and no worker
                     (and one created through the API while it is down), then again while both
                     workers execute runs with more queued behind them: the messages are gone,
                     the runs table is not — a worker's reaper sends them again
    API restart      stopped (SIGTERM) and killed (SIGKILL) while a browser-style client follows
                     a run's event stream: it reconnects with Last-Event-ID and receives every
                     point the database holds, once, through to the end event
    cancel           asked while a run is in its first (seconds-long) step, and while it evaluates
                     (seen in the `phase` of its progress): it stops there, once, its points intact
    200 runs         two workers drain 200 tiny queued runs: each executes once, every point kept

A worker killed mid-run (SIGKILL, with a second worker alive) is `tests/lab/test_worker_crash.py`.
"""

from __future__ import annotations

import os
import re
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select

from backend.domain import lifecycle
from backend.domain.models import CANCELLED, RUNNING, SUCCEEDED, MetricPoint, Run
from idlab import metrics as M
from idlab.config import RunConfig
from tests.lab.lab_processes import TINY, EventSourceClient, RedisServer, expected_point_keys, open_lab, wait_for

pytestmark = pytest.mark.timeout(300)

#: A tiny run: two steps, seven points, well under a second.
QUICK = dict(method="direct", fc_widths=[8], train_size=32, batch_size=16, test_size=16, epochs=1)
#: Seconds of training (5,120 steps, a point every step; about 7 s on the CI machine's CPU, 15 s
#: on two slow cores): still executing while Redis restarts …
BUSY = dict(TINY, epochs=40, batch_size=8, log_every=1, train_size=1024)
#: … and long enough (12,288 steps, at least 15 s) to outlive two restarts of the API.
STREAMED = dict(TINY, epochs=48, batch_size=8, log_every=1, train_size=2048)
#: A run whose every step takes seconds (3,000 examples through a 15 M-weight network) …
SLOW_STEPS = dict(method="direct", fc_widths=[3500, 3500], train_size=6000, batch_size=3000, test_size=100,
                  epochs=2)
#: … and one whose evaluation does (MNIST's 10,000 test images in five batches, 19 M weights).
SLOW_EVALUATION = dict(dataset="mnist", method="direct", fc_widths=[4000, 4000], train_size=16, test_size=None,
                       batch_size=8, epochs=2)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    yield redis
    redis.kill()


@pytest.fixture(scope="module")
def lab(broker, tmp_path_factory):
    """A deployed lab on the private Redis; its two workers start with the first test that needs them."""
    with open_lab("deployed", tmp_path_factory.mktemp("lab"), broker_url=broker.url) as lab:
        yield lab


def workers(lab, count: int = 2) -> list:
    alive = [worker for worker in lab.workers if worker.alive()]
    started = [lab.start_worker(ready=False) for _ in range(count - len(alive))]
    for worker in started:
        lab.wait_until_registered(worker)
    return alive + started


def api_of(lab):
    """The lab's API process, started with the first test that needs it."""
    alive = [api for api in lab.apis if api.alive()]
    return alive[0] if alive else lab.start_api()


def config_of(fields: dict) -> RunConfig:
    return RunConfig.model_validate({**TINY, **fields})


def stored_points(lab, run_ids) -> dict[int, Counter]:
    """run id → how many rows each of its (key, step) has."""
    with lab.sessions() as session:
        rows = session.execute(select(MetricPoint.run_id, MetricPoint.key, MetricPoint.step, func.count())
                               .where(MetricPoint.run_id.in_(list(run_ids)))
                               .group_by(MetricPoint.run_id, MetricPoint.key, MetricPoint.step)).all()
    stored: dict[int, Counter] = {run_id: Counter() for run_id in run_ids}
    for run_id, key, step, count in rows:
        stored[run_id][(key, step)] = count
    return stored


def assert_each_executed_once_with_every_point(lab, runs: dict[int, dict]) -> None:
    """Every run succeeded on its first execution, was claimed once, and stored each point it logs once."""
    finished = {run_id: lab.wait_finished(run_id, timeout=120) for run_id in runs}
    failed = [lab.describe(run_id) for run_id, run in finished.items() if run.status != SUCCEEDED]
    assert not failed, failed[:3]
    assert {run_id: run.attempt for run_id, run in finished.items() if run.attempt != 1} == {}
    assert {run_id: n for run_id in runs if (n := lab.executions(run_id)) != 1} == {}, "claimed other than once"
    stored = stored_points(lab, runs)
    for run_id, fields in runs.items():
        assert all(n == 1 for n in stored[run_id].values()), f"run {run_id}: a point stored twice"
        assert set(stored[run_id]) == expected_point_keys(config_of(fields)), f"run {run_id}: points missing"


def resent_in_logs(lab, run_id: int) -> bool:
    """Whether a worker's reaper sent the run's message again, having found it lost."""
    pattern = re.compile(rf"\brun {run_id}: queued since before .* its message was lost, sent again")
    return any(pattern.search(worker.output()) for worker in lab.workers)


# ---- the broker --------------------------------------------------------------------------------


def test_runs_whose_messages_died_with_redis_each_execute_once(lab, broker):
    for worker in lab.workers:              # the fault needs runs queued with no worker running
        worker.stop()
    lab.workers.clear()
    api = api_of(lab)
    orphans = {lab.create_run(**QUICK, seed=seed): QUICK for seed in range(4)}
    assert lab.queue_length("cpu") == len(orphans)

    broker.kill()
    created = httpx.post(f"{api.url}/api/runs", json={**TINY, **QUICK, "seed": 5}, timeout=30)
    assert created.status_code == 201, created.text     # stored, and said not to be sent yet
    assert created.json()["status"] == "queued" and "broker could not be reached" in created.json()["warnings"][0]
    orphans[created.json()["id"]] = QUICK
    broker.start()
    assert lab.queue_length("cpu") == 0, "the restarted Redis still holds messages: the fault did not happen"
    sent_after = {lab.create_run(**QUICK, seed=10): QUICK}
    assert lab.queue_length("cpu") == 1, "a message sent after the restart was lost: the producer did not reconnect"
    workers(lab)

    assert_each_executed_once_with_every_point(lab, {**orphans, **sent_after})
    assert all(resent_in_logs(lab, run_id) for run_id in orphans), "a lost run executed without being sent again"

    # Again while both workers execute a run and more wait behind them: the executing runs finish
    # (their messages cannot be acknowledged any more), the waiting ones are sent again once a
    # worker has sat idle for stale_after_seconds.
    executing = {lab.create_run(**BUSY, seed=seed): BUSY for seed in (1, 2)}
    waiting = {lab.create_run(**QUICK, seed=seed): QUICK for seed in range(20, 23)}
    wait_for(lambda: all(lab.run(run_id).status == RUNNING for run_id in executing), 60, "both busy runs to run")
    broker.kill()
    broker.start()
    assert lab.queue_length("cpu") == 0
    assert_each_executed_once_with_every_point(lab, {**executing, **waiting})
    assert all(resent_in_logs(lab, run_id) for run_id in waiting)


# ---- cancel ------------------------------------------------------------------------------------


def request_cancel(lab, run_id: int) -> None:
    with lab.sessions() as session:
        lifecycle.request_cancel(session, session.get(Run, run_id))
        session.commit()


def wait_for_phase(lab, run_id: int, phase: str, step: int) -> None:
    def there():
        run = lab.run(run_id)
        assert run.status in (RUNNING, "queued"), lab.describe(run_id)
        return run.progress.get("phase") == phase and run.progress.get("step") == step
    wait_for(there, 120, f"run {run_id} to be {phase} at step {step}")


def test_a_run_cancelled_during_its_first_step_stops_after_that_step(lab):
    workers(lab)
    run_id = lab.create_run(**SLOW_STEPS)
    wait_for_phase(lab, run_id, M.TRAINING, step=0)       # its first step takes seconds

    request_cancel(lab, run_id)
    run = lab.wait_finished(run_id, timeout=120)

    assert run.status == CANCELLED and run.error is None, lab.describe(run_id)
    assert run.final_metrics["steps"] == 1, "it went on training after the step it was cancelled in"
    assert run.attempt == 1 and lab.executions(run_id) == 1
    assert stored_points(lab, [run_id])[run_id] == Counter({(M.LR, 0): 1})   # all it logged, once


def test_a_run_cancelled_while_it_evaluates_stops_without_finishing_the_evaluation(lab, mnist_dir):
    if not (lab.data_dir / "MNIST").exists():
        os.symlink(mnist_dir / "MNIST", lab.data_dir / "MNIST")
    workers(lab)
    run_id = lab.create_run(**SLOW_EVALUATION)
    steps_per_epoch = SLOW_EVALUATION["train_size"] // SLOW_EVALUATION["batch_size"]
    wait_for_phase(lab, run_id, M.EVALUATING, step=steps_per_epoch)   # after its first epoch

    request_cancel(lab, run_id)
    run = lab.wait_finished(run_id, timeout=120)

    assert run.status == CANCELLED and run.error is None, lab.describe(run_id)
    assert run.progress["phase"] == M.EVALUATING and run.final_metrics["steps"] == steps_per_epoch
    assert M.TEST_ACC not in run.final_metrics
    assert run.attempt == 1 and lab.executions(run_id) == 1
    # The first epoch's training points, once; no test point: the evaluation never finished.
    assert stored_points(lab, [run_id])[run_id] == Counter(
        {(M.LR, 0): 1, (M.TRAIN_LOSS, steps_per_epoch): 1, (M.TRAIN_ACC, steps_per_epoch): 1})


# ---- the API -----------------------------------------------------------------------------------


def test_an_event_stream_survives_api_restarts_and_delivers_every_point_once(lab):
    workers(lab)
    api = api_of(lab)
    created = httpx.post(f"{api.url}/api/runs", json=STREAMED, timeout=10)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    client = EventSourceClient(f"{api.url}/api/runs/{run_id}/events")
    client.start()
    try:
        def streaming_on_a_new_connection() -> bool:
            assert client.failure is None, client.failure
            return bool(client.points()) and client.points()[-1]["connection"] >= len(client.connections) - 1

        wait_for(streaming_on_a_new_connection, 60, "points to stream")
        for restart in ("stop", "kill"):               # docker stop / restart, then a crash
            assert lab.run(run_id).status == RUNNING, "the run ended before the API went down: make it longer"
            if restart == "stop":
                assert api.stop() is not None, f"the API did not stop on SIGTERM:\n{api.output()[-3000:]}"
                assert "ERROR" not in api.output(), f"the open stream did not end cleanly:\n{api.output()[-3000:]}"
            else:
                api.kill()
            down_with = lab.point_count(run_id)
            wait_for(lambda down_with=down_with: lab.point_count(run_id) > down_with, 60,
                     "points written while the API is down")
            api.restart()
            wait_for(streaming_on_a_new_connection, 60, "the client to reconnect and stream again")
        client.join(120)
    finally:
        client.close()

    assert client.failure is None, client.failure
    assert client.events[-1]["event"] == "end" and client.events[-1]["data"] == {"status": SUCCEEDED}
    received = client.points()
    connections = sorted({point["connection"] for point in received})
    assert len(connections) >= 3, f"points came on connections {connections} only: the restarts were not followed"
    for index in connections[1:]:                  # each reconnection resumed after the last point received
        earlier = [point["id"] for point in received if point["connection"] < index]
        assert client.connections[index]["last_event_id"] == str(max(earlier))
        assert min(point["id"] for point in received if point["connection"] == index) > max(earlier)

    with lab.sessions() as session:
        stored = {row.id: (row.key, row.step, row.value) for row in session.execute(
            select(MetricPoint.id, MetricPoint.key, MetricPoint.step, MetricPoint.value)
            .where(MetricPoint.run_id == run_id))}
    ids = [point["id"] for point in received]
    assert len(ids) == len(set(ids)), "a point was delivered twice"
    assert {point["id"]: (point["key"], point["step"], point["value"]) for point in received} == stored
    keys = Counter((point["key"], point["step"]) for point in received)
    assert max(keys.values()) == 1 and set(keys) == expected_point_keys(config_of(STREAMED))
    assert lab.run(run_id).attempt == 1 and lab.executions(run_id) == 1


# ---- many runs ---------------------------------------------------------------------------------


def test_two_workers_drain_200_queued_runs_each_executing_once(lab):
    pair = workers(lab)
    runs = {lab.create_run(**QUICK, seed=seed): QUICK for seed in range(200)}

    assert_each_executed_once_with_every_point(lab, runs)
    for worker in pair:
        assert sum(worker.claimed(run_id) for run_id in runs) > 0, f"{worker.name} executed none"
