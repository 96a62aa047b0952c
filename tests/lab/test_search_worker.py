"""A search experiment end to end: created through the HTTP API, trained by real `idlab worker`
processes on synthetic data, its rounds queued by the workers as the previous ones finish.

Embedded mode (SQLite, the filesystem queue) with two workers, so that the two seeds of a round
finish at about the same time and both workers try to queue the next round; deployed mode
(PostgreSQL, Redis) with one. Tiny runs: fc 784-16-10 on 256 examples, a few tenths of a second
of training each; with the individual baseline (direct training, ≈ 0.92 test accuracy) the
threshold ≈ 0.83 is crossed between d = 1024 and 2048, so from d_start = 512 the search takes
about four rounds.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.api.app import create_app
from backend.domain.models import SUCCEEDED, Run
from tests.lab.lab_processes import (
    REDIS_URL,
    Lab,
    create_database,
    drop_database,
    flush_redis,
    postgres_reachable,
    redis_reachable,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)

#: A Redis database of this module's own: other tests flush theirs.
SEARCH_REDIS = os.environ.get("IDLAB_TEST_SEARCH_REDIS", REDIS_URL.rsplit("/", 1)[0] + "/9")
BASE = dict(dataset="synthetic", model="fc", fc_widths=[16], train_size=256, test_size=128, epochs=10, batch_size=16,
            lr=0.01, projection="sparse", log_every=5, device="cpu")
SEARCH = {"d_start": 512, "tolerance": 0.5, "d_max": 8192, "max_rounds": 8}   # D = 12,730
SEEDS = [0, 1]


@contextlib.contextmanager
def search_lab(mode: str, folder) -> Iterator[Lab]:
    if mode == "embedded":
        lab = Lab(mode, folder)
        try:
            lab.start_worker("search-a", ready=False)
            lab.start_worker("search-b")
            lab.wait_until_registered(lab.workers[0])
            yield lab
        finally:
            lab.close()
        return
    if not (postgres_reachable() and redis_reachable()):
        pytest.fail(f"the deployed mode needs PostgreSQL and Redis ({SEARCH_REDIS}): start them")
    flush_redis(SEARCH_REDIS)
    url = create_database()
    lab = None
    try:
        lab = Lab(mode, folder, database_url=url, broker_url=SEARCH_REDIS)
        lab.start_worker("search-pg")
        yield lab
    finally:
        if lab is not None:
            lab.close()
        drop_database(url)
        flush_redis(SEARCH_REDIS)


@pytest.mark.parametrize("mode", ["embedded", "deployed"])
def test_a_search_runs_its_rounds_on_real_workers_and_finds_d_int90(mode, tmp_path):
    with search_lab(mode, tmp_path) as lab, TestClient(create_app(lab.settings)) as client:
        created = client.post("/api/experiments", json={
            "name": "search end to end", "base": BASE, "seeds": SEEDS, "baseline": True, "search": SEARCH})
        assert created.status_code == 201, created.text
        experiment = created.json()
        assert experiment["kind"] == "search" and len(experiment["run_ids"]) == 2 * len(SEEDS)   # round 1 + baselines

        def finished():
            summary = client.get(f"/api/experiments/{experiment['id']}/summary").json()
            return summary if summary["groups"][0]["search"]["status"] != "searching" else None
        try:
            summary = wait_for(finished, 240, f"the search to end ({mode})", interval=0.5)
        except AssertionError:
            raise AssertionError("\n".join(lab.describe(run_id) for run_id in experiment["run_ids"][:1])) from None
        with lab.sessions() as session:
            runs = {run.id: run for run in session.scalars(select(Run).where(Run.experiment_id == experiment["id"]))}

    group = summary["groups"][0]
    search = group["search"]
    assert search["status"] == "decided", (search, [lab.describe(i) for i in list(runs)[:1]])
    rounds = search["rounds"]
    # Rounds after the first were queued by the workers, each once its predecessor had finished.
    assert len(rounds) >= 3 and len(runs) == len(SEEDS) * (len(rounds) + 1)
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1))
    baselines = [run for run in runs.values() if run.role == "baseline"]
    for before, after in zip(rounds, rounds[1:], strict=False):
        done = max(runs[i].finished_at for i in before["run_ids"] + [b.id for b in baselines])
        assert all(runs[i].created_at >= done for i in after["run_ids"])
        assert len(after["run_ids"]) == len(SEEDS) and {runs[i].config["seed"] for i in after["run_ids"]} == set(SEEDS)
        assert all(runs[i].config["d"] == after["d"] for i in after["run_ids"])
    assert all(run.status == SUCCEEDED for run in runs.values()), {r.id: (r.status, r.error) for r in runs.values()}
    assert all(run.attempt == 1 for run in runs.values()), "every run executed once"

    # The bracket narrowed to the tolerance, and holds the summary's d_int90.
    lo, hi = search["bracket"]
    assert lo is not None and hi is not None and (hi / lo <= 1 + SEARCH["tolerance"] or hi - lo <= 1)
    assert all(r["reached"] == (r["d"] >= hi) for r in rounds)
    doublings = {SEARCH["d_start"] * 2**k for k in range(8)}
    assert rounds[-1]["d"] not in doublings, "a doubling bracket (ratio 2) is wider than 1.5: it was bisected"
    baseline = sum(b.final_metrics["test_acc"] for b in baselines) / len(baselines)
    assert summary["baseline"] == pytest.approx(baseline) and search["threshold"] == pytest.approx(0.9 * baseline)
    assert group["d_int90"] == hi
    assert lo <= group["d_int90_interpolated"] <= hi
    interval = group["d_int90_interval"]
    assert interval is not None and interval[0] is not None and interval[0] <= group["d_int90_interpolated"]
    assert interval[1] is None or group["d_int90_interpolated"] <= interval[1]
    assert [(p["d"], p["n"]) for p in group["points"]] == sorted((r["d"], len(SEEDS)) for r in rounds)
