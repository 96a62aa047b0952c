"""The layers of the lab (.importlinter): imports only go down, checked statically and at run time.

    launchers > HTTP API | worker > domain > contracts; the engine under the worker, on the contracts
    only; the notebook client on the contracts only.

`lint-imports` reads every import of every module (lazy ones inside functions included);
the checks at run time import a process's entry modules in a fresh interpreter and look at
what it loaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("idlab", "backend", "worker")
LAYERS = "Layers: launchers > HTTP API | worker > domain > contracts"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the packages under `root`, with its contracts (root/.importlinter)."""
    command = Path(sys.executable).with_name("lint-imports")
    environment = {**os.environ, "PYTHONPATH": str(root)}   # the packages under root come first
    return subprocess.run([str(command), "--config", str(root / ".importlinter"), "--no-cache"], cwd=root,
                          env=environment, capture_output=True, text=True, timeout=120)


def test_imports_only_go_down():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def lab_copy(tmp_path: Path) -> Path:
    """The lab's packages and contracts, copied to be broken on purpose."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


@pytest.mark.parametrize(("module", "bad_import", "broken"), [
    ("backend/domain/points.py", "import fastapi", "The domain speaks no HTTP and runs no torch"),
    ("backend/domain/lifecycle.py", "import torch", "The domain speaks no HTTP and runs no torch"),
    ("backend/domain/search_rounds.py", "from backend.api.errors import reject", LAYERS),
    ("backend/domain/grid.py", "from backend.api.schemas.experiments import ExperimentCreate", LAYERS),
    ("backend/api/routers/runs.py", "from worker.execution import execute", LAYERS),
    ("worker/reaper.py", "from backend.api.events import OpenStreams", "A worker process imports no HTTP"),
    ("worker/subspace/data.py", "from backend.domain.settings import get_settings",
     "The engine imports the contracts only"),
    ("worker/subspace/training.py", "from worker.recorder import RunRecorder",
     "The engine (worker.subspace) sits under the worker's modules"),
    ("backend/api/app.py", "import torch", "The HTTP API never imports torch"),
    ("idlab/config.py", "from backend.domain.settings import Settings",
     "The contracts import no other part of the lab"),
    ("idlab/client.py", "from backend.domain.models import Run", "The notebook client talks HTTP only"),
])
def test_a_bad_import_breaks_a_contract(lab_copy: Path, module: str, bad_import: str, broken: str):
    with open(lab_copy / module, "a") as source:
        source.write(f"\n\ndef _bad():\n    {bad_import}\n")      # even a lazy import counts
    result = lint_imports(lab_copy)
    assert result.returncode != 0, result.stdout
    report = " ".join(result.stdout.split())           # the report wraps long contract names
    assert f"{' '.join(broken.split())}" in report and "BROKEN" in report, report
    dotted = module.removesuffix(".py").replace("/", ".")
    assert dotted in report, report                     # the report names the offending module


def loaded(code: str, *roots: str) -> list[str]:
    """The top-level packages among `roots` that a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport sys; print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(roots)!r}))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "IDLAB_DATA_DIR": os.environ.get("IDLAB_DATA_DIR", "idlab-data")})
    assert result.returncode == 0, result.stderr
    return eval(result.stdout.strip().splitlines()[-1])


def test_a_worker_process_imports_no_http():
    # What `idlab worker` loads: the Celery app's tasks module and its signal handlers, the reaper.
    assert loaded("import worker.tasks, worker.signals, worker.reaper, worker.maintenance",
                  "fastapi", "starlette", "sse_starlette", "uvicorn") == []


def test_the_domain_imports_no_http_and_no_torch():
    assert loaded("import backend.domain.search_rounds, backend.domain.grid, backend.domain.analysis.summary, "
                  "backend.domain.queue, backend.domain.migrate, backend.domain.analysis.export",
                  "fastapi", "starlette", "torch") == []


def test_the_api_imports_no_torch():
    assert loaded("from backend.api.app import create_app", "torch", "worker") == []


def test_importing_idlab_imports_nothing_heavy():
    assert loaded("import idlab, idlab.config, idlab.metrics, idlab.statuses, idlab.presets",
                  "torch", "numpy", "fastapi", "sqlalchemy", "celery", "httpx", "pandas", "backend", "worker") == []
