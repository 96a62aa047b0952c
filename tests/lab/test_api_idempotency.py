"""The Idempotency-Key header of POST /api/runs and POST /api/experiments, on SQLite and Postgres: a
repeat gets the first answer and creates nothing, a key reused for another request is refused, keys
expire, and concurrent duplicates create one run."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from backend.api.routers.replay import Idempotent
from backend.domain.models import Experiment, IdempotencyKey, Run, utcnow
from tests.lab.conftest import queued_run_ids
from tests.lab.test_api_runs import SMALL

EXPERIMENT = {"name": "sweep", "base": SMALL, "grid": {"d": [10, 20]}, "seeds": [0, 1]}


def count(sessions, model) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def keyed(key: str) -> dict:
    return {"Idempotency-Key": key}


def test_a_repeated_run_request_gets_the_same_run_and_queues_nothing(client, settings, sessions):
    key = str(uuid.uuid4())
    first = client.post("/api/runs", json=SMALL, headers=keyed(key))
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    # The same request in another spelling: key order and number formats do not matter.
    again = client.post("/api/runs", json={"epochs": 1, "d": 50, "dataset": "synthetic"},
                        headers=keyed(key))
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert count(sessions, Run) == 1
    assert queued_run_ids(settings) == [first.json()["id"]]
    # Without the key, or with another, it is a new request.
    assert client.post("/api/runs", json=SMALL).json()["id"] != first.json()["id"]
    assert client.post("/api/runs", json=SMALL, headers=keyed(key + "-2")).json()["id"] != first.json()["id"]
    assert count(sessions, Run) == 3


def test_a_repeated_experiment_request_gets_the_same_ids(client, settings, sessions):
    key = "sweep-2024-01-01"
    first = client.post("/api/experiments", json=EXPERIMENT, headers=keyed(key))
    assert first.status_code == 201, first.text
    again = client.post("/api/experiments", json=EXPERIMENT, headers=keyed(key))
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() and len(again.json()["run_ids"]) == 4
    assert (count(sessions, Experiment), count(sessions, Run)) == (1, 4)
    assert sorted(queued_run_ids(settings)) == sorted(first.json()["run_ids"])
    # A key belongs to its endpoint: the same key on POST /api/runs is a new request.
    assert client.post("/api/runs", json=SMALL, headers=keyed(key)).status_code == 201
    # A dry run stores nothing, so its key means nothing.
    dry = client.post("/api/experiments", json=EXPERIMENT, params={"dry_run": "true"}, headers=keyed(key))
    assert dry.status_code == 200 and dry.json()["run_count"] == 4


@pytest.mark.parametrize("path, body, other", [
    ("/api/runs", SMALL, {**SMALL, "d": 60}),
    ("/api/experiments", EXPERIMENT, {**EXPERIMENT, "seeds": [0, 1, 2]}),
])
def test_the_same_key_with_another_body_is_refused_and_creates_nothing(client, sessions, path, body, other):
    key = str(uuid.uuid4())
    first = client.post(path, json=body, headers=keyed(key))
    assert first.status_code == 201
    before = (count(sessions, Experiment), count(sessions, Run))
    refused = client.post(path, json=other, headers=keyed(key))
    assert refused.status_code == 422
    error = refused.json()["detail"][0]
    assert error["loc"] == ["header", "Idempotency-Key"] and "different request" in error["msg"]
    assert (count(sessions, Experiment), count(sessions, Run)) == before
    # The first request can still be retried.
    assert client.post(path, json=body, headers=keyed(key)).json() == first.json()


@pytest.mark.parametrize("key", ["k" * 201, "has space", "tab\there", "naïve", ""])
def test_a_malformed_key_is_refused_naming_the_header(client, sessions, key):
    response = client.post("/api/runs", json=SMALL, headers={"Idempotency-Key": key.encode("utf-8")})
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["header", "Idempotency-Key"] and "200 visible ASCII" in error["msg"]
    assert count(sessions, Run) == 0


def test_a_key_of_200_characters_is_accepted(client):
    assert client.post("/api/runs", json=SMALL, headers=keyed("k" * 200)).status_code == 201


def test_a_refused_request_is_not_kept_so_the_key_serves_the_corrected_one(client, sessions):
    key = str(uuid.uuid4())
    refused = client.post("/api/runs", json={**SMALL, "d": 0}, headers=keyed(key))
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "d"]
    assert count(sessions, IdempotencyKey) == 0
    assert client.post("/api/runs", json=SMALL, headers=keyed(key)).status_code == 201


def test_keys_expire(client, settings, sessions):
    key = str(uuid.uuid4())
    first = client.post("/api/runs", json=SMALL, headers=keyed(key)).json()
    assert settings.idempotency_key_hours == 24
    with sessions() as session:      # 23 hours later: still kept
        session.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=23)))
        session.commit()
    assert client.post("/api/runs", json=SMALL, headers=keyed(key)).json()["id"] == first["id"]
    with sessions() as session:      # 25 hours later: gone, and the key is new again
        session.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25)))
        session.commit()
    second = client.post("/api/runs", json={**SMALL, "d": 60}, headers=keyed(key))
    assert second.status_code == 201 and second.json()["id"] != first["id"]
    assert count(sessions, IdempotencyKey) == 1 and count(sessions, Run) == 2


def test_the_loser_of_a_race_rolls_back_and_answers_the_winners_response(client, sessions, monkeypatch):
    """A duplicate that looked before the first one committed: its commit fails on the unique key,
    and nothing it created is kept."""
    key = str(uuid.uuid4())
    first = client.post("/api/experiments", json=EXPERIMENT, headers=keyed(key)).json()
    monkeypatch.setattr(Idempotent, "earlier", lambda self: None)      # as if it had looked earlier
    late = client.post("/api/experiments", json=EXPERIMENT, headers=keyed(key))
    assert late.status_code == 201 and late.headers["idempotent-replayed"] == "true"
    assert late.json() == first
    assert (count(sessions, Experiment), count(sessions, Run)) == (1, 4)
    other = client.post("/api/experiments", json={**EXPERIMENT, "name": "other"}, headers=keyed(key))
    assert other.status_code == 422 and count(sessions, Experiment) == 1


def test_concurrent_duplicates_create_one_run(live_server, sessions):
    key, answers = str(uuid.uuid4()), []
    start = threading.Barrier(6)

    def post():
        with httpx.Client(base_url=live_server, timeout=60) as http:
            start.wait()
            answers.append(http.post("/api/runs", json=SMALL, headers=keyed(key)))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert len(answers) == 6 and {a.status_code for a in answers} == {201}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert count(sessions, Run) == 1 and count(sessions, IdempotencyKey) == 1
