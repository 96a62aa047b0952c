"""The service as a whole: auth, health, OpenAPI, CORS, the UI mount, and a fuzz of the whole spec."""

from __future__ import annotations

from datetime import timedelta

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode

import backend.api.frontend
from backend.api.app import create_app
from backend.api.auth import MUTATING_METHODS
from backend.domain.models import Worker, utcnow
from backend.domain.settings import Settings
from tests.lab.lab_processes import TESTCLIENT_HOSTS

SMALL = {"dataset": "synthetic", "d": 20, "epochs": 1}


# ---- auth ----------------------------------------------------------------------------------------


def test_with_a_token_writes_need_it_and_reads_stay_open(client, settings):
    settings.api_token = "s3cret-token"
    missing = client.post("/api/runs", json=SMALL)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in missing.json()["detail"]
    wrong = client.post("/api/runs", json=SMALL, headers={"Authorization": "Bearer s3cret-tokem"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong API token"
    assert client.post("/api/runs", json=SMALL, headers={"Authorization": "Basic s3cret-token"}).status_code == 401
    created = client.post("/api/runs", json=SMALL, headers={"Authorization": "Bearer s3cret-token"})
    assert created.status_code == 201
    assert client.get("/api/runs").status_code == 200
    assert client.get(f"/api/runs/{created.json()['id']}").status_code == 200


def test_every_mutating_route_is_guarded(client, settings):
    settings.api_token = "s3cret-token"
    operations = [(method.upper(), path) for path, item in client.get("/openapi.json").json()["paths"].items()
                  for method in item if method.upper() in MUTATING_METHODS]
    assert len(operations) >= 4
    for method, path in operations:
        path = path.replace("{run_id}", "1").replace("{experiment_id}", "1")
        assert client.request(method, path, json={}).status_code == 401, (method, path)


def test_without_a_token_writes_are_open(client):
    assert client.post("/api/runs", json=SMALL).status_code == 201


# ---- health --------------------------------------------------------------------------------------


def test_health_reports_database_broker_and_workers(client, sessions, settings):
    with sessions() as session:
        session.add_all([
            Worker(name="gpu0@box", hostname="box", device="cuda:0", queues=["gpu"], current_run_id=7,
                   last_seen=utcnow()),
            Worker(name="old@box", hostname="box", device="cpu", queues=["cpu"],
                   last_seen=utcnow() - timedelta(seconds=settings.stale_after_seconds + 60)),
        ])
        session.commit()
    health = client.get("/api/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["database"]["ok"] and body["broker"]["ok"]
    workers = {w["name"]: w for w in body["workers"]}
    assert workers["gpu0@box"]["alive"] is True and workers["gpu0@box"]["device"] == "cuda:0"
    assert workers["gpu0@box"]["current_run_id"] == 7
    assert workers["old@box"]["alive"] is False and body["workers_alive"] == 1


def test_health_with_an_unreachable_broker_answers_quickly(database_url, tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=database_url, allowed_hosts=TESTCLIENT_HOSTS,
                        broker_url="redis://127.0.0.1:9/0")   # nothing listens on the discard port
    with TestClient(create_app(settings)) as client:
        health = client.get("/api/health")
    body = health.json()
    assert health.status_code == 200 and body["status"] == "degraded"
    assert body["database"]["ok"] is True and body["broker"]["ok"] is False and body["broker"]["detail"]


# ---- OpenAPI, CORS, the UI -----------------------------------------------------------------------


def test_openapi_documents_the_run_config(client):
    spec = client.get("/openapi.json").json()
    run_config = spec["components"]["schemas"]["RunConfig"]
    assert run_config["properties"]["projection"]["default"] == "fastfood"
    assert "Intrinsic dimension" in run_config["properties"]["d"]["description"]
    body = spec["paths"]["/api/runs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["allOf"] == [{"$ref": "#/components/schemas/RunConfig"}]
    experiment = spec["components"]["schemas"]["ExperimentCreate"]["properties"]
    assert set(experiment) == {"name", "base", "grid", "seeds", "baseline", "search"}
    assert client.get("/docs").status_code == 200
    assert client.get("/api/config/schema").json()["schema"]["properties"]["d"]["default"] == 750


def test_the_schema_lists_the_statuses_from_their_one_source(client):
    """The dashboard reads run and search-group statuses here, never from a list of its own."""
    from backend.domain import models
    from backend.domain.analysis import search
    from backend.domain.lifecycle import RETRYABLE

    schema = client.get("/api/config/schema").json()
    assert schema["run_statuses"] == list(models.STATUSES) == [
        "queued", "running", "succeeded", "failed", "cancelled", "diverged"]       # the lifecycle's order
    assert schema["finished_statuses"] == list(models.FINISHED)
    assert set(schema["finished_statuses"]) == set(schema["run_statuses"]) - {"queued", "running"}
    assert schema["retryable_statuses"] == list(RETRYABLE)
    assert set(schema["retryable_statuses"]) <= set(schema["finished_statuses"])
    assert schema["search_statuses"] == list(search.STATUSES)


def test_cors_is_closed_unless_configured(client, database_url, tmp_path):
    origin = {"Origin": "http://lab.example"}
    assert "access-control-allow-origin" not in client.get("/api/health", headers=origin).headers
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=database_url, allowed_hosts=TESTCLIENT_HOSTS,
                        cors_origins=["http://lab.example"])
    with TestClient(create_app(settings)) as allowed:
        assert allowed.get("/api/health", headers=origin).headers["access-control-allow-origin"] == "http://lab.example"


def test_the_frontend_is_served_when_present(settings, tmp_path, monkeypatch):
    frontend = tmp_path / "frontend"
    frontend.mkdir()
    (frontend / "index.html").write_text("<h1>idlab</h1>")
    monkeypatch.setattr(backend.api.frontend, "FRONTEND_DIR", frontend)
    with TestClient(create_app(settings)) as client:
        assert client.get("/").text == "<h1>idlab</h1>"
        assert client.get("/api/health").status_code == 200
        missing = client.get("/api/nothing")
        assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}


# ---- fuzzing the spec ----------------------------------------------------------------------------


def test_no_input_makes_a_server_error(settings):
    """Schemathesis draws requests from the OpenAPI spec — valid ones and deliberately invalid
    ones — and none may make a 5xx. Event streams are left out: a live run's stream never ends
    by design (they have their own tests)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings)).exclude(path_regex=r".*/events$")
    requests = (schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(GenerationMode.NEGATIVE))
    failures = []

    @given(case=requests)
    @hypothesis_settings(max_examples=200, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    def call(case):
        response = case.call()
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} {case.query} {str(case.body)[:300]}: "
                            f"{response.status_code} {response.text[:300]}")

    call()
    assert not failures, "\n".join(failures[:10])
