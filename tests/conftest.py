"""Shared test fixtures: where the real datasets lie."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The data directory of development and CI: $IDLAB_DATA_DIR, else ../shared/data beside the repo."""
    return Path(os.environ.get("IDLAB_DATA_DIR") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = data_dir()
    if not (path / "MNIST" / "raw").is_dir():
        pytest.fail(f"MNIST not found under {path}: set IDLAB_DATA_DIR to the folder that holds MNIST/raw/")
    return path
