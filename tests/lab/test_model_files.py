"""A succeeded run's model file, end to end: the worker stores it with the run, the API serves it,
`idlab evaluate` rebuilds the network from it and reproduces the run's test accuracy exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.domain.models import Run
from tests.lab import worker_fixtures
from tests.lab.lab_processes import TESTCLIENT_HOSTS
from tests.lab.worker_fixtures import add_run
from worker.execution import execute

# The in-process worker fixtures (a migrated SQLite database per module) over tests/lab/conftest.py's.
database = worker_fixtures.database
sessions = worker_fixtures.sessions
settings = worker_fixtures.settings

pytestmark = pytest.mark.timeout(300)


def evaluate(path, data_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "idlab.launchers.cli", "evaluate", str(path), "--json",
                           "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=240)


def test_a_runs_model_file_reproduces_its_test_accuracy_and_a_changed_one_is_refused(sessions, settings, tmp_path):
    settings.batch_runs, settings.allowed_hosts = 1, TESTCLIENT_HOSTS
    run = add_run(sessions, d=24, seed=4)
    direct = add_run(sessions, method="direct")
    assert execute(run.id, "w1@host", settings, threading.Event()) == "succeeded"
    assert execute(direct.id, "w1@host", settings, threading.Event()) == "succeeded"
    with sessions() as session:
        final = session.get(Run, run.id).final_metrics

    with TestClient(create_app(settings)) as client:
        answer = client.get(f"/api/runs/{run.id}/model")
        none_for_direct = client.get(f"/api/runs/{direct.id}/model")

    assert answer.status_code == 200 and answer.headers["content-type"] == "application/octet-stream"
    assert f'filename="idlab-run-{run.id}-d24.idlab-model"' in answer.headers["content-disposition"]
    assert final["model_bytes"] == len(answer.content) and final["compression"] > 1
    assert none_for_direct.status_code == 404 and "only succeeded subspace runs" in none_for_direct.json()["detail"]

    model = tmp_path / "run.idlab-model"
    model.write_bytes(answer.content)
    evaluated = evaluate(model, settings.data_dir)
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["test_acc"] == final["test_acc"] == result["recorded_test_acc"]

    changed = bytearray(answer.content)
    changed[-1] ^= 0x10
    model.write_bytes(bytes(changed))
    refused = evaluate(model, settings.data_dir)
    assert refused.returncode == 1 and "checksum does not match" in refused.stderr
