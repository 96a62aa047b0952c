"""Runs go to the queue of their device class, and a worker executes only the queues it consumes:
a CPU-only worker (`idlab worker --queues cpu`) leaves a device-auto run for a GPU worker, and a
second worker that joins with `--queues gpu` against the same PostgreSQL and Redis takes it.
/api/health lists both, with their queues, device and the run each one executes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.domain.models import SUCCEEDED
from backend.domain.queue import queue_for
from tests.lab.lab_processes import LONG, open_lab, wait_for

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("device, queue", [("cpu", "cpu"), ("auto", "gpu"), ("cuda", "gpu"), ("cuda:1", "gpu")])
def test_a_run_is_routed_by_its_device(device, queue):
    assert queue_for({"device": device}) == queue


def test_workers_take_only_their_queues_and_a_joining_gpu_worker_takes_the_gpu_run(tmp_path):
    with open_lab("deployed", tmp_path) as lab, TestClient(create_app(lab.settings)) as api:
        def health_of(name: str) -> dict | None:
            return next((w for w in api.get("/api/health").json()["workers"] if w["name"] == name), None)

        cpu_worker = lab.start_worker("cpu-box", queues="cpu")
        gpu_run = lab.create_run(**dict(LONG, device="auto"))   # sent first, to the gpu queue
        cpu_run = lab.create_run(device="cpu")

        assert lab.wait_finished(cpu_run).status == SUCCEEDED, lab.describe(cpu_run)
        assert lab.run(cpu_run).worker == cpu_worker.name
        assert lab.run(gpu_run).status == "queued" and lab.queue_length("gpu") == 1
        listed = health_of(cpu_worker.name)
        assert listed["queues"] == ["cpu"] and listed["device"] == "cpu" and listed["alive"]
        assert listed["current_run_id"] is None

        gpu_worker = lab.start_worker("gpu-box", queues="gpu")       # a second machine joins
        executing = wait_for(lambda: (w := health_of(gpu_worker.name)) and w["current_run_id"] == gpu_run and w,
                             120, "the joining worker to execute the gpu run")
        assert executing["queues"] == ["gpu"] and executing["alive"]
        assert api.get("/api/health").json()["workers_alive"] == 2

        run = lab.wait_finished(gpu_run, timeout=120)
        assert run.status == SUCCEEDED and run.worker == gpu_worker.name, lab.describe(gpu_run)
        assert lab.queue_length("gpu") == 0
