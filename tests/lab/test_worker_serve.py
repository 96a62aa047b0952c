"""`idlab serve`: one command starts the lab (API, worker, reaper) on SQLite and the filesystem
queue; a run posted to the API executes; a worker that dies is restarted; SIGTERM stops
everything, and even SIGKILL of serve leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.lab.lab_processes import TINY, free_port, wait_for

pytestmark = pytest.mark.timeout(240)


def children(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Serve:
    def __init__(self, data_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("IDLAB_")}
        env.update(IDLAB_HEARTBEAT_SECONDS="0.5", IDLAB_STALE_AFTER_SECONDS="3", IDLAB_REAPER_SECONDS="1",
                   IDLAB_TORCH_THREADS="1", PYTHONUNBUFFERED="1")
        env["IDLAB_DATASET_MIRRORS"] = os.environ["IDLAB_DATASET_MIRRORS"]   # tests/conftest.py's: never outside
        self.log_path = data_dir / "serve.log"
        with open(self.log_path, "ab") as log:   # the child writes to its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "idlab.launchers.cli", "serve", "--port", str(self.port),
                 "--data-dir", str(data_dir)],
                env=env, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def get(self, path: str):
        try:
            return httpx.get(self.url + path, timeout=5)
        except httpx.TransportError:
            return None

    def health(self) -> dict | None:
        response = self.get("/api/health")
        return response.json() if response is not None and response.status_code == 200 else None

    def worker_pid(self) -> int | None:
        return next((pid for pid in children(self.process.pid) if " worker " in command_of(pid)), None)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def close(self) -> None:
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def serve(tmp_path):
    lab = Serve(tmp_path)
    yield lab
    lab.close()


def test_serve_runs_the_lab_restarts_its_worker_and_stops_everything_on_sigterm(serve):
    health = wait_for(lambda: (h := serve.health()) and h["workers_alive"] >= 1 and h, 90,
                      "the API to answer and the worker to register")
    assert health["database"]["ok"] and health["broker"]["ok"], health
    first_worker = health["workers"][0]

    created = httpx.post(serve.url + "/api/runs", json=TINY, timeout=10)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    run = wait_for(lambda: (r := serve.get(f"/api/runs/{run_id}").json())["status"] in
                   ("succeeded", "failed", "cancelled", "diverged") and r, 60, "the run to finish")
    assert run["status"] == "succeeded", (run, serve.output())

    dead = serve.worker_pid()
    os.killpg(dead, signal.SIGKILL)
    restarted = wait_for(lambda: (pid := serve.worker_pid()) not in (None, dead) and pid, 30,
                         f"serve to restart the worker:\n{serve.output()}")
    wait_for(lambda: (h := serve.health()) and any(w["alive"] and w["started_at"] > first_worker["started_at"]
                                                   for w in h["workers"]), 60, "the restarted worker to register")

    family = [serve.process.pid, *descendants(serve.process.pid)]
    assert restarted in family and len(family) >= 4  # serve, the API, the worker and its pool process
    serve.process.send_signal(signal.SIGTERM)
    assert serve.process.wait(30) == 0, serve.output()
    wait_for(lambda: not any(alive(pid) for pid in family), 10, "every process of the lab to exit")


def test_killing_serve_outright_leaves_no_process_behind(serve):
    wait_for(lambda: serve.health(), 60, "the API to answer")
    family = descendants(serve.process.pid)
    assert len(family) >= 2

    serve.process.kill()
    serve.process.wait(10)

    wait_for(lambda: not any(alive(pid) for pid in family), 30,
             f"the API and the worker to exit with serve: {[command_of(pid) for pid in family if alive(pid)]}")
