"""Every core busy in a sweep: a CPU worker trains one run (or batch) per core, each a training process at a
lower priority than the API, and each batch takes its share of the queue.

The process test starts a real `idlab worker` with its own defaults on this machine; it needs two cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.domain import lifecycle
from backend.domain.models import RUNNING, Run
from tests.lab.lab_processes import LONG, open_lab, wait_for
from worker.batching import fair_share
from worker.devices import training_processes, usable_cores

pytestmark = pytest.mark.timeout(300)


def test_a_batch_takes_its_share_of_the_runs_for_each_training_process():
    assert [fair_share(21, processes) for processes in (1, 2, 3, 4)] == [21, 11, 7, 6]
    assert fair_share(1, 8) == 1 and fair_share(0, 2) == 1


def test_a_cpu_machine_trains_one_process_per_core_and_a_gpu_machine_one():
    assert training_processes(cuda=False) == usable_cores()
    assert training_processes(cuda=True) == 1


def _process_group(leader: int) -> list[tuple[int, int]]:
    """(pid, niceness) of every process in the process group led by `leader` (Linux /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == leader:                      # field 5 of stat: the process group
            members.append((int(stat.parent.name), int(fields[16])))   # field 19: nice
    return members


@pytest.mark.skipif(usable_cores() < 2 or not Path("/proc/self/stat").exists(), reason="needs two cores and /proc")
def test_a_default_cpu_worker_trains_as_many_runs_side_by_side_as_it_has_cores(tmp_path):
    with open_lab("embedded", tmp_path) as lab:
        worker = lab.start_worker(concurrency=None, batch_runs=1)
        runs = [lab.create_run(**dict(LONG, seed=seed, epochs=400)) for seed in range(2)]

        def both_running():
            return all(lab.run(run_id).status == RUNNING for run_id in runs)

        wait_for(both_running, 120, "two runs training at once on a two-core machine")
        assert {lab.run(run_id).worker for run_id in runs} == {worker.name}
        trainers = [nice for pid, nice in _process_group(worker.pid) if pid != worker.pid]
        assert trainers.count(10) >= 2, f"the training processes' niceness: {trainers}"   # train_niceness
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == 0                     # the worker's own loop
        with lab.sessions() as session:
            for run_id in runs:
                lifecycle.request_cancel(session, session.get(Run, run_id))
            session.commit()
        for run_id in runs:
            assert lab.wait_finished(run_id, timeout=120).status == "cancelled"
