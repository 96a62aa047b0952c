"""Deleting and archiving runs and experiments (DELETE and PATCH /api/runs/{id}, /api/experiments/{id},
`archived` on the lists), on SQLite and Postgres: what goes with a deletion, when it is refused,
and what archiving hides."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from backend.domain import lifecycle
from backend.domain.models import (
    CANCELLED,
    FAILED,
    RUNNING,
    Experiment,
    MetricEnvelope,
    MetricPoint,
    Run,
    RunArtifact,
    SearchGroup,
)
from backend.domain.points import write_points
from tests.lab.test_api_runs import SMALL, finish, make_run

TOKEN = "s3cret-token"


def with_curves(sessions, run_id: int, points: int = 300) -> None:
    """What a worker leaves behind: points (and with them envelopes) and a statistics artifact."""
    with sessions() as session:
        write_points(session, run_id, [("train_loss", step, 0, 1.0 / (step + 1)) for step in range(points)])
        session.add(RunArtifact(run_id=run_id, name="statistics", data={"P": {"linear": {"initial": {"std": 0.05}}}}))
        session.commit()


def rows_of(sessions, run_id: int) -> dict[str, int]:
    with sessions() as session:
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model)
                                                    .where(model.run_id == run_id))
                for model in (MetricPoint, MetricEnvelope, RunArtifact)} | {
            "runs": session.scalar(select(func.count()).select_from(Run).where(Run.id == run_id))}


def listed(client, path: str, **params) -> list[int]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def experiment(client, **request) -> dict:
    body = {"name": "sweep", "base": {**SMALL}, "grid": {"d": [10, 20]}, "seeds": [0, 1], **request}
    response = client.post("/api/experiments", json=body)
    assert response.status_code == 201, response.text
    return response.json()


# ---- deleting a run ------------------------------------------------------------------------------


def test_deleting_a_finished_run_removes_its_points_envelopes_and_artifacts(client, sessions):
    run, other = make_run(client)["id"], make_run(client)["id"]
    for run_id in (run, other):
        finish(sessions, run_id)
        with_curves(sessions, run_id)
    before = rows_of(sessions, run)
    assert all(before.values()), before     # there was something of each kind to delete
    response = client.delete(f"/api/runs/{run}")
    assert response.status_code == 204 and response.content == b""
    assert rows_of(sessions, run) == {"metric_points": 0, "metric_envelopes": 0, "run_artifacts": 0, "runs": 0}
    assert rows_of(sessions, other) == before           # another run's rows are untouched
    assert client.get(f"/api/runs/{run}").status_code == 404
    assert listed(client, "/api/runs") == [other]
    again = client.delete(f"/api/runs/{run}")
    assert again.status_code == 404 and str(run) in again.json()["detail"]


@pytest.mark.parametrize("status", [FAILED, CANCELLED, "diverged"])
def test_any_finished_run_can_be_deleted(client, sessions, status):
    run = make_run(client)["id"]
    finish(sessions, run, status)
    assert client.delete(f"/api/runs/{run}").status_code == 204


def test_a_queued_run_is_refused_until_cancelled_which_is_at_once(client, sessions):
    run = make_run(client)["id"]
    refused = client.delete(f"/api/runs/{run}")
    assert refused.status_code == 409
    assert "queued" in refused.json()["detail"] and "cancel it first" in refused.json()["detail"]
    assert rows_of(sessions, run)["runs"] == 1
    assert client.post(f"/api/runs/{run}/cancel").json()["status"] == CANCELLED
    assert client.delete(f"/api/runs/{run}").status_code == 204


def test_a_running_run_is_refused_and_still_after_cancel_until_its_worker_stops(client, sessions):
    run = make_run(client)["id"]
    finish(sessions, run, RUNNING)
    with_curves(sessions, run)
    refused = client.delete(f"/api/runs/{run}")
    assert refused.status_code == 409 and "running: cancel it first" in refused.json()["detail"]
    assert client.post(f"/api/runs/{run}/cancel").json()["status"] == RUNNING     # cancel requested
    still = client.delete(f"/api/runs/{run}")
    assert still.status_code == 409 and "cancel was requested" in still.json()["detail"]
    assert all(rows_of(sessions, run).values())                                # nothing was removed
    with sessions() as session:          # the worker sees the flag and ends the run
        token = session.get(Run, run).claim_token
        assert lifecycle.finish(session, run, token, CANCELLED)
    assert client.delete(f"/api/runs/{run}").status_code == 204
    assert not any(rows_of(sessions, run).values())


def test_a_run_whose_p_a_queued_run_samples_is_kept_until_that_run_starts(client, sessions):
    source = make_run(client, projection="dense")["id"]
    finish(sessions, source)
    with_curves(sessions, source)
    reader = make_run(client, projection="dense", p_init=f"from_run:{source}")["id"]
    refused = client.delete(f"/api/runs/{source}")
    assert refused.status_code == 409
    assert f"from_run:{source}" in refused.json()["detail"] and str(reader) in refused.json()["detail"]
    finish(sessions, reader)             # it has read the statistics and finished: the source may go
    assert client.delete(f"/api/runs/{source}").status_code == 204
    kept = client.get(f"/api/runs/{reader}").json()
    assert kept["config"]["p_init"] == f"from_run:{source}"      # its config still says where P came from


def test_deleting_needs_the_token_when_one_is_set(client, settings, sessions):
    run = make_run(client)["id"]
    finish(sessions, run)
    settings.api_token = TOKEN
    assert client.delete(f"/api/runs/{run}").status_code == 401
    assert client.delete(f"/api/runs/{run}", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.patch(f"/api/runs/{run}", json={"archived": True}).status_code == 401
    assert rows_of(sessions, run)["runs"] == 1
    assert client.delete(f"/api/runs/{run}", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 204


def test_unknown_and_invalid_ids(client):
    for path in ("/api/runs/987654", "/api/experiments/987654"):
        response = client.delete(path)
        assert response.status_code == 404 and "987654" in response.json()["detail"], path
        assert client.patch(path, json={"archived": True}).status_code == 404, path
    assert client.delete("/api/runs/0").status_code == 422
    assert client.delete(f"/api/experiments/{2**70}").status_code == 422


# ---- deleting an experiment ----------------------------------------------------------------------


def test_deleting_an_experiment_deletes_its_runs_and_their_rows(client, sessions):
    sweep = experiment(client)
    alone = make_run(client)["id"]
    for run_id in [*sweep["run_ids"], alone]:
        finish(sessions, run_id)
        with_curves(sessions, run_id, points=20)
    assert client.delete(f"/api/experiments/{sweep['id']}").status_code == 204
    assert client.get(f"/api/experiments/{sweep['id']}").status_code == 404
    for run_id in sweep["run_ids"]:
        assert not any(rows_of(sessions, run_id).values()), run_id
    assert all(rows_of(sessions, alone).values())
    assert listed(client, "/api/runs", archived="all") == [alone]


def test_deleting_a_search_experiment_deletes_its_search_groups(client, sessions):
    base = {k: v for k, v in SMALL.items() if k != "d"}
    search = experiment(client, base=base, grid={"augmentation": ["linear", "rff"]}, baseline=1.0,
                        search={"d_start": 8})
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(SearchGroup)) == 2
    for run_id in search["run_ids"]:
        client.post(f"/api/runs/{run_id}/cancel")
    assert client.delete(f"/api/experiments/{search['id']}").status_code == 204
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(SearchGroup)) == 0
        assert session.scalar(select(func.count()).select_from(Run)) == 0


def test_an_experiment_with_queued_or_running_runs_is_refused(client, sessions):
    sweep = experiment(client)
    first, *rest = sweep["run_ids"]
    finish(sessions, first, RUNNING)
    refused = client.delete(f"/api/experiments/{sweep['id']}")
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "1 running" in detail and "3 queued" in detail and "cancel them first" in detail
    for run_id in sweep["run_ids"]:
        client.post(f"/api/runs/{run_id}/cancel")
    still = client.delete(f"/api/experiments/{sweep['id']}")                # the running one has not stopped
    assert still.status_code == 409 and "1 running" in still.json()["detail"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 4
        assert lifecycle.finish(session, first, session.get(Run, first).claim_token, CANCELLED)
    assert client.delete(f"/api/experiments/{sweep['id']}").status_code == 204


def test_deleting_an_experiment_needs_the_token(client, settings, sessions):
    sweep = experiment(client, grid={"d": [10]}, seeds=[0])
    finish(sessions, sweep["run_ids"][0])
    settings.api_token = TOKEN
    assert client.delete(f"/api/experiments/{sweep['id']}").status_code == 401
    assert client.patch(f"/api/experiments/{sweep['id']}", json={"archived": True}).status_code == 401
    with sessions() as session:
        assert session.get(Experiment, sweep["id"]) is not None
    assert client.delete(f"/api/experiments/{sweep['id']}",
                         headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 204


# ---- archiving -----------------------------------------------------------------------------------


def test_an_archived_run_is_hidden_from_the_list_unless_asked_for(client, sessions):
    kept, archived = make_run(client)["id"], make_run(client)["id"]
    response = client.patch(f"/api/runs/{archived}", json={"archived": True})
    assert response.status_code == 200 and response.json()["archived"] is True
    assert response.json()["status"] == "queued"                    # archiving changes nothing else
    assert listed(client, "/api/runs") == [kept]
    assert listed(client, "/api/runs", archived="false") == [kept]
    assert listed(client, "/api/runs", archived="true") == [archived]
    assert listed(client, "/api/runs", archived="all") == [archived, kept]
    assert client.get("/api/runs").json()["total"] == 1
    assert client.get(f"/api/runs/{archived}").json()["archived"] is True      # still readable by id
    assert client.patch(f"/api/runs/{archived}", json={"archived": False}).json()["archived"] is False
    assert listed(client, "/api/runs") == [archived, kept]


def test_archiving_an_experiment_hides_it_and_its_runs(client):
    sweep, other = experiment(client), experiment(client, name="other")
    alone = make_run(client)["id"]
    response = client.patch(f"/api/experiments/{sweep['id']}", json={"archived": True})
    assert response.status_code == 200 and response.json()["archived"] is True
    assert response.json()["run_count"] == 4
    assert listed(client, "/api/experiments") == [other["id"]]
    assert listed(client, "/api/experiments", archived="true") == [sweep["id"]]
    assert listed(client, "/api/experiments", archived="all") == [other["id"], sweep["id"]]
    assert set(listed(client, "/api/runs")) == {alone, *other["run_ids"]}
    assert set(listed(client, "/api/runs", archived="true")) == set(sweep["run_ids"])
    assert len(listed(client, "/api/runs", archived="all")) == 9
    # Asking for its runs by experiment still hides them unless archived is said: one rule everywhere.
    assert listed(client, "/api/runs", experiment_id=sweep["id"]) == []
    assert len(listed(client, "/api/runs", experiment_id=sweep["id"], archived="all")) == 4
    assert client.get(f"/api/experiments/{sweep['id']}").json()["archived"] is True
    client.patch(f"/api/experiments/{sweep['id']}", json={"archived": False})
    assert len(listed(client, "/api/runs")) == 9


def test_archive_requests_are_checked(client, sessions):
    run = make_run(client)["id"]
    for body, words in [({}, "at least one of archived, tags, notes"), ({"archived": "yes"}, "valid boolean"),
                        ({"archived": 1}, "valid boolean"), ({"archived": True, "status": "succeeded"}, "Extra")]:
        response = client.patch(f"/api/runs/{run}", json=body)
        assert response.status_code == 422, (body, response.text)
        assert any(words in e["msg"] for e in response.json()["detail"]), (body, response.text)
    bad = client.get("/api/runs", params={"archived": "maybe"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "archived"]
    with sessions() as session:
        assert session.get(Run, run).archived is False
