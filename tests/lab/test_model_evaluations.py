"""`POST /api/models/evaluate`: a model file checked by the API without torch, rebuilt and evaluated by a
worker on the lab's own data, its result (or the reason it was refused) read back from the API."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.domain import evaluations
from backend.domain.models import ModelEvaluation, Run, utcnow
from idlab.client import Lab as LabClient
from idlab.client import LabValidationError
from idlab.model_file import MAGIC, digest, read_header
from tests.lab import worker_fixtures
from tests.lab.lab_processes import TESTCLIENT_HOSTS, open_lab
from tests.lab.worker_fixtures import SentMessages, add_run, add_worker
from worker.evaluation import evaluate_stored
from worker.execution import execute
from worker.reaper import reap

database = worker_fixtures.database
sessions = worker_fixtures.sessions
settings = worker_fixtures.settings

pytestmark = pytest.mark.timeout(300)


def trained_model(sessions, settings, **config) -> tuple[bytes, dict]:
    """A succeeded subspace run's model file and final metrics."""
    run = add_run(sessions, **config)
    assert execute(run.id, "w1@host", settings, threading.Event()) == "succeeded"
    with TestClient(create_app(settings)) as client:
        data = client.get(f"/api/runs/{run.id}/model").content
    with sessions() as session:
        return data, session.get(Run, run.id).final_metrics


def rewritten(data: bytes, change) -> bytes:
    """The file with its header changed by `change` and its checksum made to match again."""
    header, payload = read_header(data)
    change(header)
    header["sha256"] = digest(header, payload)
    return MAGIC + json.dumps(header).encode() + b"\n" + payload


@pytest.fixture
def api(settings):
    settings.batch_runs, settings.allowed_hosts = 1, TESTCLIENT_HOSTS
    with TestClient(create_app(settings)) as client:
        yield client


def post(client, data: bytes, **params):
    return client.post("/api/models/evaluate", content=data, params=params,
                       headers={"Content-Type": "application/octet-stream"})


def test_a_worker_reproduces_the_recorded_test_accuracy_exactly(sessions, settings, api):
    data, final = trained_model(sessions, settings, d=24, seed=3)

    queued = post(api, data)
    assert queued.status_code == 202, queued.text
    evaluation = queued.json()
    assert evaluation["status"] == "queued" and evaluation["device"] == "cpu"
    assert evaluation["recorded_test_acc"] == final["test_acc"] and evaluation["config"]["d"] == 24

    assert evaluate_stored(evaluation["id"], "w1@host", settings) == "succeeded"
    assert evaluate_stored(evaluation["id"], "w2@host", settings) == "dropped"     # a duplicate message

    done = api.get(evaluation["url"]).json()
    assert done["status"] == "succeeded" and done["worker"] == "w1@host" and done["error"] is None
    result = done["result"]
    assert result["test_acc"] == final["test_acc"] == result["recorded_test_acc"]
    assert result["model_bytes"] == len(data) == final["model_bytes"] and result["compression"] > 1
    assert result["dataset"] == "synthetic" and result["test_examples"] > 0


def test_a_changed_or_foreign_file_is_refused_at_once_and_nothing_is_queued(sessions, settings, api):
    data, _ = trained_model(sessions, settings, d=16)
    changed = bytearray(data)
    changed[-1] ^= 0x01

    answers = {"changed": post(api, bytes(changed)), "zip": post(api, b"PK\x03\x04 a zip"),
               "format 2": post(api, rewritten(data, lambda header: header.update(format=2))),
               "bad config": post(api, rewritten(data, lambda header: header["config"].update(d=0)))}

    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(answers, 422)
    messages = {name: answer.json()["detail"][0]["msg"] for name, answer in answers.items()}
    assert "checksum does not match" in messages["changed"] and "not an idlab model file" in messages["zip"]
    assert "format 2, but this lab reads format 1" in messages["format 2"]
    assert "config is not valid" in messages["bad config"]
    assert all(answer.json()["detail"][0]["loc"] == ["body"] for answer in answers.values())
    with sessions() as session:
        assert session.query(ModelEvaluation).count() == 0
    assert post(api, data, device="tpu").status_code == 422


def test_an_engine_that_draws_another_network_fails_the_evaluation_with_the_reason(sessions, settings, api):
    data, _ = trained_model(sessions, settings, d=16, seed=1)
    other_seed = rewritten(data, lambda header: header["config"].update(seed=2))   # θ_0 and P drawn differently

    evaluation = post(api, other_seed).json()
    assert evaluate_stored(evaluation["id"], "w1@host", settings) == "failed"

    failed = api.get(evaluation["url"]).json()
    assert failed["status"] == "failed" and failed["result"] is None
    assert "differs from the exported network" in failed["error"]


def test_the_reaper_fails_an_evaluation_whose_worker_vanished_and_resends_a_lost_one(sessions, settings, api):
    data, _ = trained_model(sessions, settings, d=16)
    abandoned, lost = post(api, data).json()["id"], post(api, data).json()["id"]
    assert evaluations_claim(sessions, abandoned, "gone@host")
    add_worker(sessions, "gone@host", seen_ago=600)
    add_worker(sessions, "idle@host", seen_ago=-120, started_ago=3600)   # seen at the reaper's moment
    celery = SentMessages()

    with sessions() as session:
        summary = reap(session, settings, celery, now=utcnow() + timedelta(seconds=120))

    assert summary.evaluations_failed == [abandoned] and summary.evaluations_resent == [lost]
    assert celery.sent == [("idlab.evaluate_model", [lost], "cpu")]
    with sessions() as session:
        failed = session.get(ModelEvaluation, abandoned)
        assert failed.status == "failed" and "stopped answering" in failed.error
        assert session.get(ModelEvaluation, lost).status == "queued"


def evaluations_claim(sessions, evaluation_id: int, worker: str) -> bool:
    with sessions() as session:
        return evaluations.claim(session, evaluation_id, worker)


def test_through_a_real_worker_and_the_client(tmp_path):
    """The deployed shape: the API and `idlab worker` as their own processes, the file sent by the client."""
    with open_lab("embedded", tmp_path) as lab:
        lab.start_worker("evaluator")
        api = lab.start_api()
        run_id = lab.create_run(d=20, seed=5)
        run = lab.wait_finished(run_id)
        assert run.status == "succeeded", lab.describe(run_id)

        with LabClient(api.url) as client:
            data = client.model_file(run_id)
            evaluation = client.evaluate_model(data, device="cpu", timeout=120)
            with pytest.raises(LabValidationError, match="checksum does not match"):
                client.evaluate_model(data[:-1] + bytes([data[-1] ^ 1]))

        assert evaluation["status"] == "succeeded", evaluation
        assert evaluation["worker"].startswith("evaluator")
        assert evaluation["result"]["test_acc"] == run.final_metrics["test_acc"]
