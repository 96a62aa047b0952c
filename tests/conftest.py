"""Shared test fixtures: where the real datasets lie, and no download from outside.

The tests, and the labs and workers they start, keep their databases and queues in a data
directory. So that none of them ever writes into the shared one, the session runs with a
private data directory (IDLAB_DATA_DIR) that sees the shared MNIST through a link.

A missing dataset is downloaded on first use by default; the tests' only mirror is a closed local
port (IDLAB_DATASET_MIRRORS, passed on to the labs and workers they start), so nothing is ever
fetched from outside. A test of downloads serves its own files and points the setting at them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


#: The data directory of development and CI: $IDLAB_DATA_DIR, else ../shared/data beside the repo.
SHARED_DATA = Path(os.environ.get("IDLAB_DATA_DIR") or REPO.parent / "shared" / "data")
PRIVATE_DATA = Path(tempfile.mkdtemp(prefix="idlab-test-data-"))
if (SHARED_DATA / "MNIST").is_dir():
    (PRIVATE_DATA / "MNIST").symlink_to((SHARED_DATA / "MNIST").resolve())
os.environ["IDLAB_DATA_DIR"] = str(PRIVATE_DATA)
#: Port 9 (discard) on loopback: refused at once, never the internet.
UNREACHABLE_MIRROR = "http://127.0.0.1:9/"
os.environ["IDLAB_DATASET_MIRRORS"] = UNREACHABLE_MIRROR


def pytest_sessionfinish(session, exitstatus) -> None:
    shutil.rmtree(PRIVATE_DATA, ignore_errors=True)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """A data directory holding MNIST/raw/ (the shared files, linked), free to write into."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.fail(f"MNIST not found under {SHARED_DATA}: set IDLAB_DATA_DIR to the folder that holds MNIST/raw/")
    return PRIVATE_DATA
