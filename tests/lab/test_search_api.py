"""Search experiments through the API, on SQLite and Postgres: validation, the dry run, round 1,
and each next round as runs finish — finished here the way a worker finishes them, with accuracies
from a known curve, then advanced as the worker and the reaper advance them."""

from __future__ import annotations

import math
import threading

import httpx
import pytest
from sqlalchemy import select

from backend.domain import search_rounds
from backend.domain.analysis.search import Parameters, simulate
from backend.domain.models import DIVERGED, FAILED, QUEUED, SUCCEEDED, Experiment, Run, SearchGroup
from tests.lab.conftest import EventReader, queued_run_ids
from tests.lab.test_api_experiments import stored_counts
from tests.lab.test_api_runs import finish
from tests.lab.worker_fixtures import SentMessages
from worker.reaper import reap

pytestmark = pytest.mark.timeout(120)

BASE = {"dataset": "synthetic", "epochs": 1, "projection": "sparse"}
SEARCH = {"d_start": 8, "tolerance": 0.1, "d_max": 20_000, "max_rounds": 30}
#: Where each augmentation's accuracy crosses 0.9 (a logistic in log d; see accuracy()).
CENTRES = {"linear": 700.0, "rff": 90.0}


def accuracy(config: dict) -> float:
    """A known curve in place of training: 0.1 + 0.88 / (1 + (c / d)^2), with a small offset per seed."""
    centre = CENTRES.get(config.get("augmentation"), 700.0)
    return 0.1 + 0.88 / (1 + (centre / config["d"]) ** 2) + 0.002 * (config["seed"] - 0.5)


def create(client, **request) -> dict:
    body = {"name": "search", "base": BASE, "search": SEARCH, "baseline": 1.0, **request}
    response = client.post("/api/experiments", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def runs_of(sessions, experiment_id: int, status: str | None = None) -> list[Run]:
    with sessions() as session:
        query = select(Run).where(Run.experiment_id == experiment_id).order_by(Run.id)
        return session.scalars(query.where(Run.status == status) if status else query).all()


def groups_of(sessions, experiment_id: int) -> list[SearchGroup]:
    with sessions() as session:
        return session.scalars(select(SearchGroup).where(SearchGroup.experiment_id == experiment_id)
                               .order_by(SearchGroup.position)).all()


def complete(sessions, run: Run, outcome=None) -> None:
    """Finish a queued run as a worker would: succeeded with the curve's accuracy, or `outcome`."""
    if outcome is None:
        finish(sessions, run.id, SUCCEEDED, metrics={"test_acc": accuracy(run.config)})
    else:
        finish(sessions, run.id, outcome, error=f"{outcome} on purpose" if outcome != SUCCEEDED else None)


def advance(sessions, settings, experiment_id: int, celery=None) -> list[int]:
    """What the reaper's pass does for one experiment."""
    with sessions() as session:
        return search_rounds.advance(session, experiment_id, settings, celery or SentMessages())


def play(sessions, settings, experiment_id: int, celery=None, limit: int = 500) -> SentMessages:
    """Finish every queued run, advancing after each as the worker does, until nothing is queued."""
    celery = celery or SentMessages()
    for _ in range(limit):
        queued = runs_of(sessions, experiment_id, QUEUED)
        if not queued:
            return celery
        for run in queued:
            complete(sessions, run)
            search_rounds.advance_after_run(sessions, run.id, settings, celery)
    raise AssertionError("the search did not end")


# ---- creating ------------------------------------------------------------------------------------


def test_a_search_queues_its_first_round_and_the_baselines(client, settings, sessions):
    body = create(client, grid={"augmentation": ["linear", "rff"]}, seeds=[0, 1], baseline=True)

    assert body["kind"] == "search" and body["search"] == SEARCH and body["grid"] == {"augmentation": ["linear", "rff"]}
    runs = runs_of(sessions, body["id"])
    members = [r for r in runs if r.role == "member"]
    baselines = [r for r in runs if r.role == "baseline"]
    assert {(r.config["augmentation"], r.config["d"], r.config["seed"]) for r in members} == {
        (a, 8, s) for a in ("linear", "rff") for s in (0, 1)}
    assert sorted(r.config["seed"] for r in baselines) == [0, 1]
    assert all(r.config["method"] == "direct" for r in baselines)
    assert sorted(queued_run_ids(settings)) == sorted(body["run_ids"])
    groups = groups_of(sessions, body["id"])
    assert [(g.position, g.grid_values, g.status) for g in groups] == [
        (0, {"augmentation": "linear"}, "searching"), (1, {"augmentation": "rff"}, "searching")]
    assert [g.rounds for g in groups] == [
        [{"round": 1, "d": 8, "run_ids": [r.id for r in members if r.config["augmentation"] == a], "mean": None,
          "n": 0, "reached": None, "diverged": 0}] for a in ("linear", "rff")]

    detail = client.get(f"/api/experiments/{body['id']}").json()
    assert detail["kind"] == "search" and detail["search"] == SEARCH
    listed = client.get("/api/experiments").json()["items"][0]
    assert listed["kind"] == "search" and listed["search"]["d_start"] == 8
    grid = create(client, search=None, grid={"d": [10]})
    assert grid["kind"] == "grid" and grid["search"] is None


def test_defaults_of_the_search_parameters(client):
    body = create(client, search={}, base={**BASE, "augmentation": "rff"})
    assert body["search"] == {"d_start": 8, "tolerance": 0.1, "d_max": 20_000, "max_rounds": 30}
    # RFF's B (m×d with m = d/2) outgrows the memory budget before d = 100,000: said at once, with what to change.
    # (a fastfood P, whose memory does not grow with k·√D as a sparse P's does)
    detail = client.post("/api/experiments", json={"name": "rff", "base": {**BASE, "augmentation": "rff",
                                                                           "projection": "fastfood"},
                                                   "baseline": 1.0, "search": {"d_max": 100_000}}).json()["detail"]
    assert detail[0]["loc"] == ["body", "base", "rff_features"] and detail[0]["ctx"] == {"grid_point": {"d": 100_000}}
    assert "set rff_features lower" in detail[0]["msg"] and detail[0]["msg"].endswith(
        "(at search.d_max = 100000: or lower d_max)")


def test_the_dry_run_of_a_search_previews_its_first_round(client, settings, sessions):
    before = stored_counts(sessions)
    response = client.post("/api/experiments", params={"dry_run": "true"}, json={
        "name": "preview", "base": BASE, "grid": {"augmentation": ["linear", "power", "rff"]}, "seeds": [0, 1, 2],
        "baseline": True, "search": {"d_start": 16, "max_rounds": 12}})
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["kind"] == "search" and plan["search"]["d_start"] == 16 and plan["search"]["tolerance"] == 0.1
    assert plan["run_count"] == 3 * 3 + 3 and plan["baseline_count"] == 3
    assert {r["config"]["d"] for r in plan["runs"] if r["role"] == "member"} == {16}
    assert plan["group_count"] == 3 and plan["groups"] == [{"augmentation": a} for a in ("linear", "power", "rff")]
    # 16 → 20,000: 12 doublings, 3 bisections, + 1 = 16, capped at max_rounds = 12.
    assert plan["max_rounds_per_group"] == 12 and plan["max_run_count"] == 3 * 3 * 12 + 3
    wide = client.post("/api/experiments", params={"dry_run": "true"}, json={
        "name": "preview", "base": BASE, "baseline": 1.0, "search": {"d_start": 64, "d_max": 4096}}).json()
    assert wide["max_rounds_per_group"] == 7 + 3 + 1 and wide["max_run_count"] == 11
    assert stored_counts(sessions) == before and queued_run_ids(settings) == []


@pytest.mark.parametrize("request_, loc, words", [
    ({"grid": {"d": [10, 20]}}, ["body", "grid", "d"], "a search chooses d itself: remove d from the grid"),
    ({"base": {**BASE, "d": 50}}, ["body", "base", "d"], "remove d from the base"),
    ({"baseline": False}, ["body", "baseline"], "a search needs a baseline"),
    ({"search": {**SEARCH, "d_start": 200, "d_max": 100}}, ["body", "search", "d_max"], "at least d_start (200)"),
    ({"search": {**SEARCH, "d_start": 0}}, ["body", "search", "d_start"], "greater than or equal to 1"),
    ({"search": {**SEARCH, "tolerance": 0}}, ["body", "search", "tolerance"], "greater than 0"),
    ({"search": {**SEARCH, "max_rounds": 0}}, ["body", "search", "max_rounds"], "greater than or equal to 1"),
    ({"search": {**SEARCH, "max_rounds": 101}}, ["body", "search", "max_rounds"], "less than or equal to 100"),
    ({"search": {**SEARCH, "growth": 3}}, ["body", "search", "growth"], "Extra inputs"),
    ({"search": [8, 100]}, ["body", "search"], "valid dictionary"),
    # Every run is checked at d_max too: a later round must not be refused.
    ({"base": {**BASE, "projection": "dense"}, "search": {**SEARCH, "d_max": 100_000}}, ["body", "base", "projection"],
     "use projection 'sparse' or 'fastfood', or lower d (at search.d_max = 100000: or lower d_max)"),
    ({"base": {**BASE, "projection": "dense", "p_init": "orthogonal"}, "search": {**SEARCH, "d_max": 300_000}},
     ["body", "base", "p_init"], "needs k ≤ D"),
    # 8 → 20,000: 13 doublings, then 3 bisections (+ 1): at most 17 of the 30 rounds.
    ({"grid": {"augmentation": ["linear", "rff"]}, "seeds": list(range(30)), "search": {**SEARCH, "max_rounds": 30}},
     ["body", "search", "max_rounds"], "could queue up to 1020 runs (2 groups × 30 seeds × 17 rounds + 0 baselines)"),
])
def test_a_bad_search_is_refused_with_the_field_and_what_to_fix(client, settings, sessions, request_, loc, words):
    body = {"name": "bad", "base": BASE, "search": SEARCH, "baseline": 1.0, **request_}
    response = client.post("/api/experiments", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(e["loc"] == loc and words in e["msg"] for e in detail), detail
    assert stored_counts(sessions) == (0, 0) and queued_run_ids(settings) == []
    assert client.post("/api/experiments", params={"dry_run": "true"}, json=body).status_code == 422


def test_an_error_at_d_max_names_that_d(client):
    detail = client.post("/api/experiments", json={
        "name": "x", "base": {**BASE, "projection": "dense"}, "baseline": 1.0,
        "search": {**SEARCH, "d_max": 100_000}}).json()["detail"]
    assert detail[0]["ctx"] == {"grid_point": {"d": 100_000}}


# ---- advancing -----------------------------------------------------------------------------------


def test_rounds_double_then_bisect_per_group_and_the_summary_gives_d_int90(client, settings, sessions):
    body = create(client, grid={"augmentation": ["linear", "rff"]}, seeds=[0, 1])
    sent = play(sessions, settings, body["id"])

    summary = client.get(f"/api/experiments/{body['id']}/summary").json()
    assert summary["kind"] == "search" and summary["search"] == SEARCH and summary["fields"] == ["augmentation"]
    assert summary["threshold"] == pytest.approx(0.9)
    parameters = Parameters(**SEARCH)
    for group in summary["groups"]:
        mean_curve = lambda d, a=group["augmentation"]: (accuracy({"augmentation": a, "d": d, "seed": 0})  # noqa: E731
                                                          + accuracy({"augmentation": a, "d": d, "seed": 1})) / 2
        expected, rounds = simulate(parameters, mean_curve, 0.9)
        search = group["search"]
        assert [r["d"] for r in search["rounds"]] == [d for d, _, _ in rounds]
        assert [r["round"] for r in search["rounds"]] == list(range(1, len(rounds) + 1))
        assert [r["reached"] for r in search["rounds"]] == [reached for _, _, reached in rounds]
        assert [r["mean"] for r in search["rounds"]] == pytest.approx([mean for _, mean, _ in rounds])
        assert all(r["n"] == 2 and len(r["run_ids"]) == 2 for r in search["rounds"])
        assert search["status"] == "decided" and search["decided"] is True and search["threshold"] == pytest.approx(0.9)
        lo, hi = search["bracket"]
        assert (lo, hi) == expected.bracket and hi / lo <= 1.1
        centre = CENTRES[group["augmentation"]]
        crossing = centre * math.sqrt(0.88 / (0.9 - 0.1) - 1) ** -1       # where the mean curve reaches 0.9
        assert lo < crossing <= hi
        # The summary's estimator on the evaluated points agrees with the search.
        assert [p["d"] for p in group["points"]] == sorted(r["d"] for r in search["rounds"])
        assert group["d_int90"] == hi and lo <= group["d_int90_interpolated"] <= hi
        interval = group["d_int90_interval"]
        assert interval is not None and interval[0] is not None and interval[0] <= group["d_int90_interpolated"]
    linear, rff = summary["groups"]
    assert len(linear["search"]["rounds"]) != len(rff["search"]["rounds"]), "groups advance on their own"
    # Every run of every round was sent to the broker once, round after round.
    searched = [i for g in summary["groups"] for r in g["search"]["rounds"][1:] for i in r["run_ids"]]
    assert sorted(sent.run_ids) == sorted(searched)


def test_an_individual_baseline_is_waited_for_and_gives_the_threshold(client, settings, sessions):
    body = create(client, seeds=[0, 1], baseline=True)
    members = [r for r in runs_of(sessions, body["id"]) if r.role == "member"]
    baselines = [r for r in runs_of(sessions, body["id"]) if r.role == "baseline"]
    celery = SentMessages()
    for run in members:
        complete(sessions, run)
        search_rounds.advance_after_run(sessions, run.id, settings, celery)
    assert celery.sent == [] and groups_of(sessions, body["id"])[0].rounds[0]["reached"] is None

    for run, value in zip(baselines, (0.96, 0.98), strict=True):
        finish(sessions, run.id, SUCCEEDED, metrics={"test_acc": value})
        search_rounds.advance_after_run(sessions, run.id, settings, celery)
    group = groups_of(sessions, body["id"])[0]
    assert group.threshold == pytest.approx(0.9 * 0.97)
    assert [r["d"] for r in group.rounds] == [8, 16] and group.rounds[0]["reached"] is False
    assert len(celery.run_ids) == 2 and set(celery.run_ids) == set(group.rounds[1]["run_ids"])
    play(sessions, settings, body["id"])
    summary = client.get(f"/api/experiments/{body['id']}/summary").json()
    assert summary["baseline"] == pytest.approx(0.97) and summary["groups"][0]["search"]["status"] == "decided"
    assert summary["groups"][0]["d_int90"] == summary["groups"][0]["search"]["bracket"][1]


def test_a_diverged_seed_makes_its_d_fall_short(client, settings, sessions):
    body = create(client, seeds=[0, 1], search={**SEARCH, "d_start": 4096})     # 4096 reaches 0.9 on the curve
    first, second = runs_of(sessions, body["id"])
    complete(sessions, first)
    complete(sessions, second, DIVERGED)
    advance(sessions, settings, body["id"])
    group = groups_of(sessions, body["id"])[0]
    assert group.rounds[0]["reached"] is False and group.rounds[0]["diverged"] == 1 and group.rounds[0]["n"] == 1
    assert group.rounds[0]["mean"] == pytest.approx(accuracy(first.config))
    assert group.rounds[1]["d"] == 8192 and group.status == "searching"        # doubled: 4096 counted as short


def test_a_failed_run_blocks_its_group_until_retried(client, settings, sessions):
    body = create(client, grid={"augmentation": ["linear", "rff"]}, seeds=[0, 1])
    runs = runs_of(sessions, body["id"])
    broken = next(r for r in runs if r.config["augmentation"] == "linear")
    for run in runs:
        complete(sessions, run, FAILED if run.id == broken.id else None)
    celery = SentMessages()
    advance(sessions, settings, body["id"], celery)
    linear, rff = groups_of(sessions, body["id"])
    assert linear.status == "blocked"
    assert linear.reason == f"run #{broken.id} failed: failed on purpose; retry it to go on"
    assert len(linear.rounds) == 1 and len(rff.rounds) == 2, "the other group goes on"
    summary = client.get(f"/api/experiments/{body['id']}/summary").json()
    shown = summary["groups"][0]["search"]
    assert shown["status"] == "blocked" and "retry it" in shown["reason"]

    assert client.post(f"/api/runs/{broken.id}/retry").status_code == 200
    with sessions() as session:
        assert reap(session, settings, celery).searched == []           # nothing to queue: the retried run runs
    assert groups_of(sessions, body["id"])[0].status == "searching"    # … but the block is lifted
    complete(sessions, broken)
    search_rounds.advance_after_run(sessions, broken.id, settings, celery)
    linear = groups_of(sessions, body["id"])[0]
    assert linear.status == "searching" and [r["d"] for r in linear.rounds] == [8, 16]


def test_cancelling_the_runs_halts_the_search(client, settings, sessions):
    body = create(client, seeds=[0, 1])
    for run_id in body["run_ids"]:
        assert client.post(f"/api/runs/{run_id}/cancel").status_code == 200
    advance(sessions, settings, body["id"])
    group = groups_of(sessions, body["id"])[0]
    assert group.status == "blocked" and "cancelled" in group.reason and len(group.rounds) == 1


def test_a_search_that_never_reaches_the_threshold_stops_at_d_max(client, settings, sessions):
    body = create(client, baseline=1.0, search={"d_start": 8, "d_max": 100, "tolerance": 0.1})
    for _ in range(10):
        for run in runs_of(sessions, body["id"], QUEUED):
            finish(sessions, run.id, SUCCEEDED, metrics={"test_acc": 0.5})
        advance(sessions, settings, body["id"])
    group = groups_of(sessions, body["id"])[0]
    assert [r["d"] for r in group.rounds] == [8, 16, 32, 64, 100]
    assert group.status == "stopped" and group.reason == "the threshold was not reached up to d_max = 100"
    summary = client.get(f"/api/experiments/{body['id']}/summary").json()["groups"][0]
    assert summary["d_int90"] is None and summary["search"]["bracket"] == [100, None]


def test_two_advancers_at_once_queue_one_round(client, settings, sessions, database_url):
    """Two workers finish a round's last runs at the same moment: both find the round complete,
    one of them queues the next round (the experiment row's lock), the other nothing."""
    body = create(client, seeds=[0, 1, 2])
    from sqlalchemy.orm import sessionmaker

    from backend.domain.db import make_engine

    engines = [make_engine(database_url) for _ in range(4)]
    try:
        for round_number in (2, 3, 4):
            for run in runs_of(sessions, body["id"], QUEUED):
                complete(sessions, run)                 # finished, not advanced yet
            start = threading.Barrier(len(engines))
            queued: list[list[int]] = []

            def advancer(engine, start, queued):
                with sessionmaker(bind=engine, expire_on_commit=False)() as session:
                    start.wait()
                    queued.append(search_rounds.advance(session, body["id"], settings, SentMessages()))

            threads = [threading.Thread(target=advancer, args=(engine, start, queued)) for engine in engines]
            [t.start() for t in threads]
            [t.join(60) for t in threads]
            assert sorted(len(ids) for ids in queued) == [0, 0, 0, 3], queued
            group = groups_of(sessions, body["id"])[0]
            assert len(group.rounds) == round_number and len(runs_of(sessions, body["id"], QUEUED)) == 3
    finally:
        for engine in engines:
            engine.dispose()


def test_the_reaper_queues_the_round_a_dead_worker_left(client, settings, sessions):
    """A worker finishes a round's last run and dies before queueing the next one: the reaper does it."""
    body = create(client, seeds=[0, 1])
    for run in runs_of(sessions, body["id"]):
        complete(sessions, run)                         # finished; the worker never advanced the search
    celery = SentMessages()
    with sessions() as session:
        summary = reap(session, settings, celery)
    group = groups_of(sessions, body["id"])[0]
    assert len(group.rounds) == 2 and group.rounds[1]["d"] == 16
    assert summary.searched == group.rounds[1]["run_ids"] == celery.run_ids
    with sessions() as session:                         # the next pass finds nothing more to do
        assert reap(session, settings, celery).searched == []
    assert len(celery.run_ids) == 2


def test_the_experiment_event_stream_lasts_until_the_search_ends(settings, sessions, live_server):
    with httpx.Client(base_url=live_server, timeout=30) as http:
        body = http.post("/api/experiments", json={"name": "stream", "base": BASE, "baseline": 1.0, "seeds": [0],
                                                    "search": {"d_start": 512, "tolerance": 0.5}}).json()
        first = runs_of(sessions, body["id"])[0]
        complete(sessions, first)                       # round 1 done, round 2 not queued yet
        with http.stream("GET", f"/api/experiments/{body['id']}/events") as response:
            reader = EventReader(response)
            assert {run["id"] for run in reader.next()["data"]} == {first.id}
            advance(sessions, settings, body["id"])     # what the worker (or the reaper) does next
            play(sessions, settings, body["id"])
            events = reader.until("end")
    seen = {run["id"] for event in events if event["event"] == "status" for run in event["data"]}
    group = groups_of(sessions, body["id"])[0]
    assert group.status == "decided" and len(group.rounds) >= 3
    assert seen >= {i for r in group.rounds[1:] for i in r["run_ids"]}, "the stream ended before the search did"


def test_summary_and_experiment_of_a_grid_experiment_are_unchanged(client, sessions):
    body = client.post("/api/experiments", json={"name": "grid", "base": BASE, "grid": {"d": [10, 20]},
                                                 "baseline": 1.0}).json()
    summary = client.get(f"/api/experiments/{body['id']}/summary").json()
    assert summary["kind"] == "grid" and summary["search"] is None
    assert all(group.get("search") is None for group in summary["groups"])
    with sessions() as session:
        assert session.get(Experiment, body["id"]).kind == "grid" and not groups_of(sessions, body["id"])
