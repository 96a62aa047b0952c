"""A real lab for the client tests: `idlab serve` (SQLite, the filesystem queue, one worker) in a
temporary data dir on a free port, with an API token, one per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ui.conftest import Lab

REPO = Path(__file__).resolve().parents[2]
TOKEN = "client-test-token"


@pytest.fixture(scope="module")
def served_lab(tmp_path_factory) -> Iterator[Lab]:
    # Frequent heartbeats: a running run's progress reaches the API within half a second.
    lab = Lab(tmp_path_factory.mktemp("client-lab"),
              env={"IDLAB_API_TOKEN": TOKEN, "IDLAB_HEARTBEAT_SECONDS": "0.5", "IDLAB_TORCH_THREADS": "1"})
    try:
        lab.wait_ready()
        yield lab
    finally:
        lab.stop()
