"""Workers that go away mid-run, in both modes; every run still executes to the end, and each of
its points is stored exactly once.

    killed   SIGKILL of the worker's whole process group (no cleanup at all): the run stays
             "running" until the reaper of another worker sees its heartbeat stop, requeues it
             and sends it again; that worker completes it
    stopped  SIGTERM (docker stop, `idlab serve` stopping): the run is handed back to the queue
             at once, without using up an attempt, and its message sent again once the worker
             has stopped consuming

Worker start-up (torch imports) is the slow part here, so each next worker starts while the
previous one still trains.
"""

from __future__ import annotations

from collections import Counter

import pytest

from backend.domain.models import QUEUED, RUNNING, SUCCEEDED
from idlab.config import RunConfig
from tests.lab.lab_processes import LONG, MODES, TINY, expected_point_keys, open_lab, wait_for

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(params=MODES)
def lab(request, tmp_path):
    with open_lab(request.param, tmp_path) as lab:
        yield lab


def assert_points_exactly_once(lab, run_id: int) -> None:
    stored = Counter(lab.point_keys(run_id))
    assert max(stored.values()) == 1, "a point was stored twice"
    assert set(stored) == expected_point_keys(RunConfig.model_validate({**TINY, **LONG})), "a point is missing"


def running_with_points(lab, run_id: int, worker) -> bool:
    run = lab.run(run_id)
    return run.status == RUNNING and run.worker == worker.name and lab.point_count(run_id) >= 20


def test_runs_survive_a_killed_worker_and_a_stopped_one(lab):
    doomed = lab.start_worker("doomed")
    first = lab.create_run(**LONG)
    wait_for(lambda: running_with_points(lab, first, doomed), 60, "the first run to train on the doomed worker")
    rescuer = lab.start_worker("rescuer", ready=False)

    doomed.kill()
    assert lab.run(first).status == RUNNING  # nobody can know yet: the database still says so
    run = lab.wait_finished(first, timeout=90)

    assert run.status == SUCCEEDED, lab.describe(first)
    assert run.attempt == 2 and run.worker == rescuer.name and run.error is None
    assert_points_exactly_once(lab, first)
    assert f"run {first}: worker {doomed.name} stopped heartbeating at" in rescuer.output()

    second = lab.create_run(**LONG)
    wait_for(lambda: running_with_points(lab, second, rescuer), 60, "the second run to train on the rescuer")
    successor = lab.start_worker("successor", ready=False)

    assert rescuer.stop(timeout=30) == 0, rescuer.output()[-3000:]

    run = lab.run(second)  # queued again — or already taken by the successor, which was waiting
    assert run.worker != rescuer.name and (run.status != QUEUED or run.error.startswith(
        f"worker {rescuer.name} shut down at")), lab.describe(second)
    assert run.attempt == (0 if run.status == QUEUED else 1), lab.describe(second)   # the attempt given back
    assert f"run {second} handed back to the queue" in rescuer.output()
    run = lab.wait_finished(second, timeout=90)
    assert run.status == SUCCEEDED and run.attempt == 1 and run.worker == successor.name, lab.describe(second)
    assert lab.executions(second) == 2                 # executed twice, charged once
    assert_points_exactly_once(lab, second)


def test_every_run_of_a_killed_workers_batch_is_requeued_and_completed_once(lab):
    batch = [lab.create_run(send=False, **LONG, seed=seed) for seed in range(3)]
    for run_id in batch:  # all queued before the worker takes the first: it claims the others beside it
        lab.send(run_id)
    doomed = lab.start_worker("doomed", batch_runs=3)

    def training_together() -> bool:
        runs = [lab.run(run_id) for run_id in batch]
        return (all(run.status == RUNNING and run.worker == doomed.name for run in runs)
                and len({run.batch_id for run in runs}) == 1 and runs[0].batch_id is not None
                and min(lab.point_count(run_id) for run_id in batch) >= 20)

    wait_for(training_together, 90, "the three runs to train in one batch on the doomed worker")
    row = lab.worker_row(doomed.name)
    assert sorted(row.current_batch) == batch and row.current_run_id in batch
    rescuer = lab.start_worker("rescuer", ready=False, batch_runs=3)

    doomed.kill()
    finished = [lab.wait_finished(run_id, timeout=180) for run_id in batch]

    assert all(run.status == SUCCEEDED for run in finished), [lab.describe(run_id) for run_id in batch]
    assert [(run.attempt, run.worker) for run in finished] == [(2, rescuer.name)] * 3
    assert {lab.executions(run_id) for run_id in batch} == {2}   # once on each worker, never twice on one
    for run_id in batch:
        assert f"run {run_id}: worker {doomed.name} stopped heartbeating at" in rescuer.output()
        assert_points_exactly_once(lab, run_id)
