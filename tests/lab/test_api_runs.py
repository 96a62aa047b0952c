"""/api/runs: creating, validating, listing, cancelling and retrying runs; curves; distributions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from backend.domain import lifecycle
from backend.domain.models import FAILED, RUNNING, SUCCEEDED, MetricPoint, Run, RunArtifact, utcnow
from backend.domain.points import ENVELOPE_STEPS, ENVELOPES, RAW_LIMIT, rebuild_envelopes, write_points
from idlab import metrics as M
from idlab.config import RunConfig
from tests.lab.conftest import REPO, queued_run_ids

SMALL = {"dataset": "synthetic", "d": 50, "epochs": 1}


def make_run(client, **config) -> dict:
    response = client.post("/api/runs", json={**SMALL, **config})
    assert response.status_code == 201, response.text
    return response.json()


def finish(sessions, run_id: int, status: str = SUCCEEDED, metrics: dict | None = None, error: str | None = None):
    """What a worker does: claim the run, then end it."""
    with sessions() as session:
        token = lifecycle.claim(session, run_id, "test-worker")
        assert token is not None
        if status != RUNNING:
            assert lifecycle.finish(session, run_id, token, status, metrics=metrics, error=error)


# ---- creating ------------------------------------------------------------------------------------


def test_create_run_stores_the_full_config_and_queues_it(client, settings, sessions):
    run = make_run(client, projection="sparse")
    assert run["status"] == "queued" and run["attempt"] == 0 and run["cancel_requested"] is False
    assert run["config"] == RunConfig(**SMALL, projection="sparse").model_dump(mode="json")  # defaults filled
    assert run["config"]["lr"] == 1e-3 and run["config"]["normalize_p"] == "unit_columns"
    assert (run["D"], run["k"], run["d"]) == (199_210, 50, 50)
    assert run["experiment_id"] is None and run["role"] == "member"
    with sessions() as session:
        assert session.get(Run, run["id"]).config == run["config"]
    assert queued_run_ids(settings) == [run["id"]]                  # the message carries only the id
    assert client.get(f"/api/runs/{run['id']}").json() == run


def test_direct_runs_train_all_weights(client):
    run = make_run(client, method="direct")
    assert run["k"] == run["d"] == run["D"] == 199_210


def test_block_sum_is_accepted_with_a_warning(client):
    assert "block_sum" in make_run(client, normalize_p="block_sum")["warnings"][0]


@pytest.mark.parametrize("config, field, words", [
    ({"d": 0}, "d", "greater than 0"),
    ({"d": -5}, "d", "greater than 0"),
    ({"projection": "gaussian"}, "projection", "'dense', 'sparse' or 'fastfood'"),
    ({"train_p": True, "projection": "fastfood"}, "train_p", "needs projection 'dense'"),
    ({"projection": "dense", "p_init": "orthogonal", "model": "lenet", "d": 50_000}, "p_init", "k ≤ D"),
    ({"projection": "dense", "d": 20_000}, "projection", "use projection 'sparse' or 'fastfood'"),
    ({"colour": "blue"}, "colour", "Extra inputs"),
    ({"p_init": "from_run:../../etc"}, "p_init", "unknown p_init"),
    ({"p_scale": float("inf")}, "p_scale", "finite"),
    ({"adam_betas": [0.9]}, "adam_betas", ""),
])
def test_invalid_configs_are_422_naming_the_field(client, settings, sessions, config, field, words):
    # json.dumps writes Infinity as Python's JSON parser (FastAPI's) reads it.
    response = client.post("/api/runs", content=json.dumps({**SMALL, **config}),
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    mine = [e for e in detail if e["loc"][:2] == ["body", field]]
    assert mine, detail
    assert words in mine[0]["msg"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0
    assert queued_run_ids(settings) == []


def test_dense_budget_comes_from_the_settings(client, settings):
    # 199,210 × 1,000 floats = 760 MiB: within the default 2 GiB, over a 100 MiB budget.
    assert client.post("/api/runs", json={**SMALL, "projection": "dense", "d": 1000}).status_code == 201
    settings.dense_p_budget_mb = 100
    response = client.post("/api/runs", json={**SMALL, "projection": "dense", "d": 1000})
    assert response.status_code == 422 and "budget of 100 MiB" in response.json()["detail"][0]["msg"]


def test_a_body_that_is_not_a_config_is_422(client):
    assert client.post("/api/runs", json=[1, 2]).status_code == 422
    not_json = client.post("/api/runs", content=b"{not json", headers={"content-type": "application/json"})
    assert not_json.status_code == 422


# ---- reading and listing -------------------------------------------------------------------------


def test_unknown_ids_are_404_with_a_message(client):
    for path in ("/api/runs/987654", "/api/runs/987654/metrics", "/api/runs/987654/distributions",
                 "/api/runs/987654/events"):
        response = client.get(path)
        assert response.status_code == 404 and "987654" in response.json()["detail"], path
    for path in ("/api/runs/987654/cancel", "/api/runs/987654/retry"):
        assert client.post(path).status_code == 404
    assert client.get("/api/runs/0").status_code == 422
    assert client.get(f"/api/runs/{2**70}").status_code == 422


def test_list_filters_and_paginates(client, sessions):
    ids = {}
    for projection in ("dense", "sparse", "fastfood"):
        for d in (10, 20):
            ids[(projection, d)] = make_run(client, projection=projection, d=d)["id"]
    finish(sessions, ids[("sparse", 10)], FAILED, error="boom")
    finish(sessions, ids[("dense", 20)], RUNNING)

    page = client.get("/api/runs", params={"limit": 4}).json()
    assert page["total"] == 6 and page["limit"] == 4 and page["offset"] == 0
    assert [r["id"] for r in page["items"]] == sorted(ids.values(), reverse=True)[:4]      # newest first
    rest = client.get("/api/runs", params={"limit": 4, "offset": 4}).json()
    assert [r["id"] for r in rest["items"]] == sorted(ids.values(), reverse=True)[4:]
    oldest_first = client.get("/api/runs", params={"sort": "id"}).json()["items"]
    assert [r["id"] for r in oldest_first] == sorted(ids.values())

    def listed(**params):
        return sorted(r["id"] for r in client.get("/api/runs", params=params).json()["items"])

    assert listed(**{"config.projection": "fastfood"}) == sorted([ids[("fastfood", 10)], ids[("fastfood", 20)]])
    assert listed(**{"config.projection": "fastfood", "config.d": "20"}) == [ids[("fastfood", 20)]]
    assert listed(**{"config.d": ["10", "20"], "config.projection": "dense"}) == sorted(
        [ids[("dense", 10)], ids[("dense", 20)]])
    assert listed(**{"config.train_p": "false", "config.lr": "0.001"}) == sorted(ids.values())
    assert listed(**{"config.rff_features": "null"}) == sorted(ids.values())
    assert listed(**{"config.d": "30"}) == []
    assert listed(status=["failed", "running"]) == sorted([ids[("sparse", 10)], ids[("dense", 20)]])
    assert listed(status="queued", **{"config.d": "10"}) == sorted([ids[("dense", 10)], ids[("fastfood", 10)]])
    assert listed(role="baseline") == []
    assert listed(experiment_id=12345) == []

    trimmed = client.get("/api/runs", params={"config_fields": ["d", "projection", "d"], "config.d": "20"}).json()
    assert {r["id"]: r["config"] for r in trimmed["items"]} == {
        ids[(projection, 20)]: {"d": 20, "projection": projection} for projection in ("dense", "sparse", "fastfood")}
    assert all(r["D"] and r["status"] for r in trimmed["items"])        # only the config is trimmed
    full = client.get("/api/runs", params={"limit": 1}).json()["items"][0]["config"]
    assert full == client.get(f"/api/runs/{max(ids.values())}").json()["config"] and len(full) > 20


def test_list_sorts_across_pages_by_metrics_config_and_status(client, sessions):
    accuracy = {"linear": 0.9, "power": 0.7, "rff": None}      # rff: queued, no value yet
    ids = {aug: make_run(client, augmentation=aug, seed=seed)["id"]
           for aug, seed in (("power", 3), ("linear", 1), ("rff", 2))}
    finish(sessions, ids["linear"], metrics={M.TEST_ACC: accuracy["linear"]})
    finish(sessions, ids["power"], RUNNING)
    with sessions() as session:                                 # a running run: its latest value
        session.get(Run, ids["power"]).progress = {"step": 3, M.TEST_ACC: accuracy["power"]}
        session.commit()

    def order(sort: str, limit: int = 10) -> list[int]:
        response = client.get("/api/runs", params={"sort": sort, "limit": limit})
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["items"]]

    assert order("-metrics.test_acc") == [ids["linear"], ids["power"], ids["rff"]]
    assert order("metrics.test_acc") == [ids["power"], ids["linear"], ids["rff"]]    # no value: last
    assert order("-metrics.test_acc", limit=1) == [ids["linear"]]                  # the best of all, not of a page
    assert order("config.seed") == [ids["linear"], ids["rff"], ids["power"]]
    assert order("-config.augmentation") == [ids["rff"], ids["power"], ids["linear"]]
    assert order("status") == [ids["rff"], ids["power"], ids["linear"]]             # queued, running, succeeded
    assert order("-created_at") == order("-id") == sorted(ids.values(), reverse=True)

    now = utcnow()                   # linear: 30 s; power: running for 100 s so far; rff: not started
    with sessions() as session:
        linear, power = session.get(Run, ids["linear"]), session.get(Run, ids["power"])
        linear.started_at, linear.finished_at = now - timedelta(seconds=200), now - timedelta(seconds=170)
        power.started_at = now - timedelta(seconds=100)
        session.commit()
    assert order("-duration") == [ids["power"], ids["linear"], ids["rff"]]
    assert order("duration") == [ids["linear"], ids["power"], ids["rff"]]
    listed = {r["id"]: r["duration_seconds"] for r in client.get("/api/runs").json()["items"]}
    assert listed[ids["linear"]] == pytest.approx(30) and listed[ids["power"]] == pytest.approx(100, abs=5)


@pytest.mark.parametrize("params, name", [
    ({"config.colour": "blue"}, "config.colour"),
    ({"config.d": "many"}, "config.d"),
    ({"config.d": str(2**80)}, "config.d"),
    ({"config.fc_widths": "200"}, "config.fc_widths"),
    ({"config.p_init": "a\x00b"}, "config.p_init"),
    ({"status": "sleeping"}, "status"),
    ({"limit": "0"}, "limit"),
    ({"config_fields": ["d", "colour"]}, "config_fields"),
    ({"sort": "speed"}, "sort"),
    ({"sort": "-metrics.colour"}, "sort"),
    ({"sort": "config.fc_widths"}, "sort"),
])
def test_bad_list_parameters_are_422_naming_them(client, params, name):
    response = client.get("/api/runs", params=params)
    assert response.status_code == 422
    assert any(e["loc"][:2] == ["query", name] for e in response.json()["detail"]), response.json()


# ---- cancel and retry ----------------------------------------------------------------------------


def test_cancel_and_retry_follow_the_lifecycle(client, settings, sessions):
    queued = make_run(client)
    cancelled = client.post(f"/api/runs/{queued['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
    again = client.post(f"/api/runs/{queued['id']}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]

    retried = client.post(f"/api/runs/{queued['id']}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    assert retried.json()["cancel_requested"] is False
    assert queued_run_ids(settings) == [queued["id"], queued["id"]]       # queued again
    assert client.post(f"/api/runs/{queued['id']}/retry").status_code == 409   # queued: nothing to retry

    running = make_run(client)
    finish(sessions, running["id"], RUNNING)
    flagged = client.post(f"/api/runs/{running['id']}/cancel").json()
    assert flagged["status"] == "running" and flagged["cancel_requested"] is True   # cooperative
    assert client.post(f"/api/runs/{running['id']}/retry").status_code == 409

    done = make_run(client)
    finish(sessions, done["id"], SUCCEEDED, metrics={"test_acc": 0.9})
    response = client.post(f"/api/runs/{done['id']}/cancel")
    assert response.status_code == 409 and "succeeded" in response.json()["detail"]
    assert client.post(f"/api/runs/{done['id']}/retry").status_code == 409
    finished = client.get(f"/api/runs/{done['id']}").json()
    assert finished["final_metrics"] == {"test_acc": 0.9} and finished["duration_seconds"] >= 0


# ---- metrics -------------------------------------------------------------------------------------


def test_metrics_downsample_keeps_spikes_and_zooms(client, sessions):
    run = make_run(client)
    n = 20_000
    points = [("train_loss", step, step // 1000, 1.0 + 0.001 * (step % 10)) for step in range(n)]
    points[12_345] = ("train_loss", 12_345, 12, 1000.0)      # one spike
    points[7_777] = ("train_loss", 7_777, 7, -50.0)          # one dip
    with sessions() as session:
        write_points(session, run["id"], points)
        write_points(session, run["id"], [("test_acc", e * 1000 + 999, e, 0.5 + e / 100) for e in range(20)])
        session.commit()

    body = client.get(f"/api/runs/{run['id']}/metrics", params={"max_points": 200}).json()
    loss = body["series"]["train_loss"]
    assert loss["total"] == n and loss["downsampled"] is True
    assert len(loss["steps"]) <= 200 and loss["steps"] == sorted(loss["steps"])
    assert 1000.0 in loss["values"] and -50.0 in loss["values"]
    assert loss["steps"][loss["values"].index(1000.0)] == 12_345
    assert loss["steps"][0] == 0 and loss["steps"][-1] == n - 1
    assert body["series"]["test_acc"]["total"] == 20 and body["series"]["test_acc"]["downsampled"] is False
    assert body["last_event_id"] > 0

    zoom = client.get(f"/api/runs/{run['id']}/metrics",
                      params={"keys": "train_loss", "x_min": 12_300, "x_max": 12_400, "max_points": 200}).json()
    assert list(zoom["series"]) == ["train_loss"]
    zoomed = zoom["series"]["train_loss"]
    assert zoomed["steps"] == list(range(12_300, 12_401))          # full resolution inside the range
    assert zoomed["downsampled"] is False and 1000.0 in zoomed["values"]

    lttb = client.get(f"/api/runs/{run['id']}/metrics",
                      params={"keys": ["train_loss", "test_acc"], "method": "lttb", "max_points": 100}).json()
    assert len(lttb["series"]["train_loss"]["steps"]) == 100 and 1000.0 in lttb["series"]["train_loss"]["values"]

    assert client.get(f"/api/runs/{run['id']}/metrics", params={"keys": "nothing_here"}).json()["series"] == {
        "nothing_here": {"steps": [], "values": [], "epochs": [], "total": 0, "downsampled": False}}
    bad = client.get(f"/api/runs/{run['id']}/metrics", params={"x_min": 10, "x_max": 5})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "x_min"]
    assert client.get(f"/api/runs/{run['id']}/metrics", params={"keys": "a;drop table"}).status_code == 422


def stored_envelopes(sessions, run_id: int) -> list[tuple]:
    with sessions() as session:
        return [tuple(row) for row in session.execute(
            select(*[c for c in ENVELOPES.c if c.name != "id"]).where(ENVELOPES.c.run_id == run_id)
            .order_by(ENVELOPES.c.key, ENVELOPES.c.bucket)).all()]


def test_long_series_are_drawn_from_envelopes_that_keep_every_extreme(client, sessions):
    run = make_run(client)
    n = 3 * RAW_LIMIT
    points = [("train_loss", step, step // 1000, 1.0 + 0.001 * (step % 10)) for step in range(n)]
    points[41_234] = ("train_loss", 41_234, 41, 1000.0)      # one spike
    points[5_555] = ("train_loss", 5_555, 5, -50.0)          # one dip
    with sessions() as session:
        for start in range(0, n, 777):                       # batches that split buckets
            write_points(session, run["id"], points[start:start + 777])
            session.commit()
    written = stored_envelopes(sessions, run["id"])
    with sessions() as session:
        rebuild_envelopes(session.connection(), run["id"])   # from the points themselves
        session.commit()
    assert stored_envelopes(sessions, run["id"]) == written == sorted(written)
    assert len(written) == -(-n // ENVELOPE_STEPS)

    loss = client.get(f"/api/runs/{run['id']}/metrics", params={"max_points": 1000}).json()["series"]["train_loss"]
    assert loss["total"] == n and loss["downsampled"] is True
    assert len(loss["steps"]) <= 1000 and loss["steps"] == sorted(loss["steps"])
    assert loss["steps"][loss["values"].index(1000.0)] == 41_234
    assert loss["steps"][loss["values"].index(-50.0)] == 5_555
    assert loss["steps"][0] == 0 and loss["steps"][-1] == n - 1

    zoom = client.get(f"/api/runs/{run['id']}/metrics",
                      params={"keys": "train_loss", "x_min": 41_200, "x_max": 41_300, "max_points": 200}).json()
    assert zoom["series"]["train_loss"]["steps"] == list(range(41_200, 41_301))   # full resolution


def test_a_re_executed_run_rebuilds_envelopes_that_lost_an_extreme(client, sessions):
    run = make_run(client)
    first = [("train_loss", step, 0, 1.0) for step in range(200)]
    first[70] = ("train_loss", 70, 0, 999.0)                 # a spike the re-execution does not repeat
    with sessions() as session:
        token = lifecycle.claim(session, run["id"], "test-worker")
        write_points(session, run["id"], first)
        session.commit()
        assert lifecycle.finish(session, run["id"], token, FAILED, error="lost")
        lifecycle.retry(session, session.get(Run, run["id"]))
        session.commit()
        token = lifecycle.claim(session, run["id"], "test-worker")
        write_points(session, run["id"], [("train_loss", step, 0, 1.0) for step in range(200)])
        session.commit()
        merged = max(row[-2] for row in stored_envelopes(sessions, run["id"]))   # max_value
        assert merged == 999.0                               # merged as written: the old extreme stays …
        assert lifecycle.finish(session, run["id"], token, SUCCEEDED)
    assert max(row[-2] for row in stored_envelopes(sessions, run["id"])) == 1.0   # … until the finish rebuilds


def test_metrics_see_points_written_after_a_first_read(client, sessions):
    run = make_run(client)
    with sessions() as session:
        write_points(session, run["id"], [("train_loss", s, 0, 1.0) for s in range(10)])
        session.commit()
    assert client.get(f"/api/runs/{run['id']}/metrics").json()["series"]["train_loss"]["total"] == 10
    with sessions() as session:
        write_points(session, run["id"], [("train_loss", 3, 0, 7.0), ("train_loss", 10, 0, 2.0)])
        session.commit()
    series = client.get(f"/api/runs/{run['id']}/metrics").json()["series"]["train_loss"]
    assert series["total"] == 11 and series["values"][3] == 7.0     # overwritten in place, not cached stale


def test_write_points_upserts_and_gives_changed_points_fresh_ids(client, sessions):
    run = make_run(client)
    with sessions() as session:
        write_points(session, run["id"], [("lr", 0, 0, 0.1), ("lr", 1, 0, 0.1), ("lr", 2, 0, float("nan"))])
        session.commit()
        before = dict(session.execute(
            select(MetricPoint.step, MetricPoint.id).where(MetricPoint.run_id == run["id"])).all())
        assert sorted(before) == [0, 1]                               # NaN skipped
        write_points(session, run["id"], [("lr", 0, 0, 0.1), ("lr", 1, 1, 0.01), ("lr", 1, 1, 0.02)])
        session.commit()
        after = {row.step: row
                 for row in session.execute(select(MetricPoint).where(MetricPoint.run_id == run["id"])).scalars()}
    assert len(after) == 2
    assert after[0].id == before[0]                                   # unchanged: same id
    assert after[1].value == 0.02 and after[1].epoch == 1             # last one of the batch wins
    assert after[1].id > max(before.values())                         # changed: a fresh, larger id


def test_written_points_keep_their_exact_keys_and_values(client, sessions):
    """Postgres receives new points through COPY's text format: nothing may be lost in the escaping."""
    run = make_run(client)
    odd_key = "a\tb\\c\nd"
    values = [0.1, 1e-300, -2.5e17, 1 / 3, 0.0, 7.0]
    with sessions() as session:
        write_points(session, run["id"], [(odd_key, step, 2, value) for step, value in enumerate(values)])
        session.commit()
        stored = session.execute(select(MetricPoint.key, MetricPoint.step, MetricPoint.epoch, MetricPoint.value)
                                 .where(MetricPoint.run_id == run["id"]).order_by(MetricPoint.step)).all()
    assert [tuple(row) for row in stored] == [(odd_key, step, 2, value) for step, value in enumerate(values)]


# ---- distributions -------------------------------------------------------------------------------


def test_distributions(client, sessions):
    run = make_run(client)
    missing = client.get(f"/api/runs/{run['id']}/distributions")
    assert missing.status_code == 404 and "no distributions" in missing.json()["detail"]
    block = {"edges": [0.0, 0.5, 1.0], "initial": {"counts": [3, 1], "n": 4, "mean": 0.3, "std": 0.2, "min": 0.0,
                                                   "max": 0.9, "abs_mean": 0.3}, "trained": None}
    with sessions() as session:
        session.add(RunArtifact(run_id=run["id"], name="statistics",
                                data={"P": {"linear": block}, "theta_d": {"theta_d": block}}))
        session.commit()
    body = client.get(f"/api/runs/{run['id']}/distributions").json()
    assert body["run_id"] == run["id"] and body["P"] == {"linear": block} and body["theta_d"] == {"theta_d": block}


# ---- the backend stays free of torch ---------------------------------------------------------------


def test_the_backend_never_imports_torch(tmp_path):
    code = ("import sys, backend.api.app, backend.api.routers.runs, backend.api.routers.experiments, "
            "backend.domain.analysis.summary, "
            "backend.api.events, backend.domain.points; backend.api.app.create_app; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    env = {**os.environ, "PYTHONPATH": str(REPO), "IDLAB_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
