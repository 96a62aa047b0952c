"""Runs executed by real `idlab worker` processes, in the embedded mode (SQLite + filesystem broker)
and the deployed one (PostgreSQL + Redis): success, a batch, cancel, retry, duplicate delivery."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from backend.domain import lifecycle
from backend.domain.models import CANCELLED, FAILED, RUNNING, SUCCEEDED, Run
from idlab import metrics as M
from idlab.config import RunConfig
from tests.lab.lab_processes import LONG, MODES, TINY, expected_point_keys, open_lab, wait_for

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", params=MODES)
def lab(request, tmp_path_factory):
    with open_lab(request.param, tmp_path_factory.mktemp(request.param)) as lab:
        lab.worker = lab.start_worker("runs")
        yield lab


def assert_points_complete(lab, run_id: int, config: dict) -> None:
    """Every (key, step) the run logs is stored exactly once."""
    stored = Counter(lab.point_keys(run_id))
    duplicated = {key: n for key, n in stored.items() if n > 1}
    assert not duplicated, f"duplicated points: {duplicated}"
    assert set(stored) == expected_point_keys(RunConfig.model_validate({**TINY, **config}))


def test_a_run_goes_from_queued_to_succeeded_with_its_points_and_statistics(lab):
    run_id = lab.create_run(send=False)
    assert lab.run(run_id).status == "queued"
    lab.send(run_id)

    run = lab.wait_finished(run_id)

    assert run.status == SUCCEEDED, lab.describe(run_id)
    assert run.attempt == 1 and run.worker == lab.worker.name and run.error is None
    assert run.started_at <= run.finished_at and run.heartbeat_at is not None
    assert run.final_metrics[M.TEST_ACC] is not None and run.final_metrics["steps"] == 4
    assert run.progress["step"] == 4 and run.progress["epoch"] == 2 and M.TEST_ACC in run.progress
    assert_points_complete(lab, run_id, {})
    statistics = lab.artifact(run_id)
    assert set(statistics) == {"P", "theta_d"} and statistics["P"]["linear"]["initial"]["n"] > 0
    worker = lab.worker_row(lab.worker.name)
    assert worker.current_run_id is None and set(worker.queues) == {"cpu", "gpu"} and worker.device == "cpu"


def test_an_experiment_like_batch_all_succeed(lab):
    configs = [dict(augmentation=augmentation, d=d, seed=seed)
               for augmentation in ("linear", "power", "rff") for d in (10, 20) for seed in (0, 1)]
    configs.append(dict(method="direct"))
    run_ids = [lab.create_run(**config) for config in configs]

    runs = [lab.wait_finished(run_id, timeout=120) for run_id in run_ids]

    assert [run.status for run in runs] == [SUCCEEDED] * len(runs), [lab.describe(r.id) for r in runs
                                                                     if r.status != SUCCEEDED]
    assert all(run.attempt == 1 for run in runs)
    assert all(lab.artifact(run.id) for run in runs[:-1]), "every subspace run stores its statistics"
    assert runs[-1].final_metrics["d"] == runs[-1].final_metrics["D"], "the direct baseline trains all D weights"


def test_an_experiment_through_the_api_succeeds_and_its_summary_finds_d_int90(lab):
    """The acceptance sweep: linear/power/rff × two d × two seeds + the direct baseline, queued
    through the HTTP API, executed by the real worker, summarised."""
    from fastapi.testclient import TestClient

    from backend.api.app import create_app

    # Large enough a d for the linear subspace to reach 90% of direct training in seconds.
    base = dict(TINY, fc_widths=[16], epochs=10, batch_size=16, lr=0.01, projection="sparse", log_every=5)
    with TestClient(create_app(lab.settings)) as client:
        created = client.post("/api/experiments", json={
            "name": "acceptance", "base": base, "grid": {"augmentation": ["linear", "power", "rff"], "d": [16, 2000]},
            "seeds": [0, 1], "baseline": True})
        assert created.status_code == 201, created.text
        run_ids = created.json()["run_ids"]
        assert len(run_ids) == 3 * 2 * 2 + 2
        runs = [lab.wait_finished(run_id, timeout=180) for run_id in run_ids]
        assert all(run.status == SUCCEEDED for run in runs), [lab.describe(r.id) for r in runs]
        summary = client.get(f"/api/experiments/{created.json()['id']}/summary").json()

    baseline_accuracy = [run.final_metrics[M.TEST_ACC] for run in runs if run.role == "baseline"]
    assert summary["baseline"] == pytest.approx(sum(baseline_accuracy) / 2)
    assert summary["threshold"] == pytest.approx(0.9 * summary["baseline"])
    groups = {group["augmentation"]: group for group in summary["groups"]}
    assert set(groups) == {"linear", "power", "rff"}
    for group in groups.values():
        assert [(p["d"], p["n"]) for p in group["points"]] == [(16, 2), (2000, 2)]
    reached = [g for g in groups.values() if g["d_int90"] is not None]
    assert groups["linear"] in reached, f"the linear group did not reach 90% of the baseline: {summary}"
    for group in reached:
        means = {p["d"]: p["mean"] for p in group["points"]}
        assert group["d_int90"] == min(d for d, mean in means.items() if mean >= summary["threshold"])
        lo, hi = group["d_int90_interval"]
        assert lo <= group["d_int90_interpolated"] and (hi is None or group["d_int90_interpolated"] <= hi)


def test_cancel_stops_a_running_run_within_seconds_and_keeps_its_points_then_retry_completes_it(lab):
    run_id = lab.create_run(**LONG)
    wait_for(lambda: lab.run(run_id).status == RUNNING and lab.point_count(run_id) >= 20, 60,
             "the long run to be running with points")

    with lab.sessions() as session:
        lifecycle.request_cancel(session, session.get(Run, run_id))
        session.commit()
    asked = time.monotonic()
    run = lab.wait_finished(run_id, timeout=10)
    took = time.monotonic() - asked

    assert run.status == CANCELLED, lab.describe(run_id)
    assert took < 5, f"cancel took {took:.1f} s"
    kept = lab.point_count(run_id)
    assert 20 <= kept < len(expected_point_keys(RunConfig.model_validate({**TINY, **LONG})))

    with lab.sessions() as session:  # retry: the same points again, and the rest, each once
        lifecycle.retry(session, session.get(Run, run_id))
        session.commit()
    lab.send(run_id)
    run = lab.wait_finished(run_id, timeout=90)

    assert run.status == SUCCEEDED and run.attempt == 1, lab.describe(run_id)   # a retry starts a fresh budget
    assert_points_complete(lab, run_id, LONG)


def test_a_failed_run_is_retried_without_duplicating_its_points(lab):
    run_id = lab.create_run()
    assert lab.wait_finished(run_id).status == SUCCEEDED
    before = lab.point_count(run_id)
    with lab.sessions() as session:  # as if it had failed after writing all its points
        lifecycle.fail(session.get(Run, run_id), "failed by the test")
        session.commit()
        lifecycle.retry(session, session.get(Run, run_id))
        session.commit()
    lab.send(run_id)

    run = lab.wait_finished(run_id)

    assert run.status == SUCCEEDED and run.attempt == 1 and run.error is None, lab.describe(run_id)
    assert lab.point_count(run_id) == before
    assert_points_complete(lab, run_id, {})


def test_p_init_from_a_missing_run_fails_with_the_reason_and_from_a_finished_run_succeeds(lab):
    missing = lab.create_run(projection="dense", p_init="from_run:987654")
    run = lab.wait_finished(missing)
    assert run.status == FAILED
    assert "run 987654 has no stored statistics" in run.error and "Traceback" not in run.error

    source = lab.create_run(projection="dense")
    assert lab.wait_finished(source).status == SUCCEEDED
    derived = lab.create_run(projection="dense", p_init=f"from_run:{source}")
    assert lab.wait_finished(derived).status == SUCCEEDED, lab.describe(derived)


def test_a_run_delivered_twice_executes_once(lab):
    run_id = lab.create_run(send=False)
    lab.send(run_id)
    lab.send(run_id)

    run = lab.wait_finished(run_id)
    wait_for(lambda: lab.queue_length("cpu") == 0, 30, "the second message to be consumed")
    # The worker logs the drop once its child has tried to claim the run a second time.
    wait_for(lambda: "message dropped" in lab.worker.output(), 30, "the second delivery to be dropped")

    run = lab.run(run_id)
    assert run.status == SUCCEEDED and run.attempt == 1, lab.describe(run_id)
    assert_points_complete(lab, run_id, {})


def test_remote_control_reaches_the_worker(lab):
    replies = lab.celery.control.ping(destination=[lab.worker.name], timeout=5)
    assert replies == [{lab.worker.name: {"ok": "pong"}}]


def test_a_run_cancelled_in_a_batch_stops_alone_and_its_batchmates_finish(lab):
    batch = [lab.create_run(send=False, **LONG, seed=seed) for seed in range(3)]
    for run_id in batch:  # all queued before the worker takes the first: it trains the others beside it
        lab.send(run_id)

    def training_together() -> bool:
        runs = [lab.run(run_id) for run_id in batch]
        return (all(run.status == RUNNING for run in runs) and runs[0].batch_id is not None
                and len({run.batch_id for run in runs}) == 1 and min(map(lab.point_count, batch)) >= 20)

    wait_for(training_together, 90, "the three runs to train in one batch")
    cancelled = batch[1]
    with lab.sessions() as session:
        lifecycle.request_cancel(session, session.get(Run, cancelled))
        session.commit()
    asked = time.monotonic()
    run = lab.wait_finished(cancelled, timeout=10)
    took = time.monotonic() - asked

    assert run.status == CANCELLED and took < 5, (lab.describe(cancelled), took)
    assert all(lab.run(run_id).status == RUNNING for run_id in (batch[0], batch[2]))  # they train on
    for run_id in (batch[0], batch[2]):
        run = lab.wait_finished(run_id, timeout=180)
        assert run.status == SUCCEEDED and run.attempt == 1, lab.describe(run_id)
        assert_points_complete(lab, run_id, LONG)
    assert lab.executions(cancelled) == 1 and lab.worker.claimed(cancelled) == 1
