"""A real lab for the client tests: `idlab serve` (SQLite, the filesystem queue, one worker) in a
temporary data dir on a free port, with an API token, one per test module."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.lab.lab_processes import free_port

REPO = Path(__file__).resolve().parents[2]
TOKEN = "client-test-token"
START_SECONDS = 180


class ServedLab:
    """`idlab serve --data-dir DIR --port PORT` with IDLAB_API_TOKEN set; its output in DIR/serve.log."""

    def __init__(self, data_dir: Path, token: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.token = token
        self.log_path = data_dir / "serve.log"
        env = {key: value for key, value in os.environ.items() if not key.startswith("IDLAB_")}
        # Frequent heartbeats: a running run's progress reaches the API within half a second.
        env.update(IDLAB_API_TOKEN=token, IDLAB_HEARTBEAT_SECONDS="0.5", IDLAB_TORCH_THREADS="1",
                   PYTHONUNBUFFERED="1")
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "idlab.cli", "serve", "--data-dir", str(data_dir), "--port", self.url.rsplit(":", 1)[1]],
            cwd=data_dir, env={**env, "PYTHONPATH": str(REPO)}, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_ready(self) -> None:
        """Until the API answers and the worker has registered."""
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"`idlab serve` exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=5).json().get("workers_alive", 0) >= 1:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        pytest.fail(f"the lab did not start within {START_SECONDS} s:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)   # serve stops its API and its worker
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def served_lab(tmp_path_factory) -> Iterator[ServedLab]:
    lab = ServedLab(tmp_path_factory.mktemp("client-lab"), TOKEN)
    try:
        lab.wait_ready()
        yield lab
    finally:
        lab.stop()
