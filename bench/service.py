"""How fast the service is where a researcher feels it.

    python -m bench.service                              # SQLite (a temporary file), then Postgres
    python -m bench.service --database-url URL           # one database (it gets idlab's tables)
    python -m bench.service --json

For each database it measures

    points_per_s      metric points written per second through backend.domain.points.write_points
                      (the worker's bulk upsert), in batches of --batch points, one commit each
    series_ms         GET /api/runs/{id}/metrics of a 100,000-point series downsampled to 1,000
                      points: the first request (cold: read from the database) and the median of
                      later ones (warm: the series cache), over HTTP (Starlette's TestClient)
    list_500          median GET /api/runs?limit=500 and its size: every field of every config
                      (a client's list), and only the fields the dashboard's runs table shows
                      (`config_fields`, what it polls every 2 s)
    summary_ms        median GET /api/experiments/{id}/summary of a finished sweep of 300 runs
                      (3 augmentations × 20 d × 5 seeds): accuracy vs d and d_int90 with its
                      interval (1,000 replicates of the Student-t draw) per augmentation
    sse_delay_s       median and largest delay from a point committed to the database to its
                      event received by an httpx client streaming /api/runs/{id}/events from a
                      real uvicorn server on 127.0.0.1 (settings.sse_poll_seconds = 0.3)

Targets: ≥ 20,000 points/s; ≤ 100 ms; ≤ 100 ms; ≤ 100 ms; ≤ 1.5 s.
Without --database-url, Postgres is the server at $IDLAB_TEST_POSTGRES (default
postgresql+psycopg2://postgres@127.0.0.1:5432): a temporary database is created and dropped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import sessionmaker

from backend.api.app import create_app
from backend.domain import lifecycle, migrate
from backend.domain.db import make_engine
from backend.domain.models import SUCCEEDED, Run
from backend.domain.points import write_points
from backend.domain.settings import Settings
from idlab.config import RunConfig

POSTGRES_SERVER = os.environ.get("IDLAB_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")
SERIES_POINTS = 100_000
SERIES_SHOWN = 1_000
LISTED_RUNS = 500
SSE_SAMPLES = 12
TARGETS = {"points_per_s": 20_000, "series_ms": 100, "list_500_ms": 100, "summary_ms": 100, "sse_delay_s": 1.5}
SWEEP = {"augmentation": ["linear", "power", "rff"], "d": list(range(100, 2001, 100))}
SWEEP_SEEDS = 5
#: The fields the runs table asks for, read from the table itself.
TABLE_CONFIG_FIELDS = json.loads(re.search(
    r"const CONFIG_FIELDS = (\[.*?\]);",
    (Path(__file__).parents[1] / "frontend/js/panels/runs-table.js").read_text()).group(1))


def bench(url: str, data_dir: Path, batch: int) -> dict:
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    # TestClient's requests say `Host: testserver`, a name the lab serves only when told to.
    settings = Settings(_env_file=None, data_dir=data_dir, database_url=url, api_token=None, sse_poll_seconds=0.3,
                        allowed_hosts=["testserver"])
    config = RunConfig(dataset="synthetic", d=100)
    with sessions() as session:
        run = lifecycle.new_run(config)
        session.add(run)
        session.commit()
        run_id = run.id

    result = {"database": engine.dialect.name, "points_per_s": _write_rate(sessions, run_id, batch)}
    with TestClient(create_app(settings)) as client:
        result["series_ms"] = _series_ms(client, run_id)
        result["list_500"] = _list(client, sessions, config)
        result["summary_ms"] = _summary_ms(client, sessions)
    with _serve(create_app(settings)) as base_url:
        result["sse_delay_s"] = _sse_delay(base_url, sessions, run_id)
    engine.dispose()
    return result


def _write_rate(sessions, run_id: int, batch: int) -> float:
    """Points per second: train_loss and train_acc at every step, committed every `batch` points."""
    points = [(key, step, step // 1000, 1.0 / (step + 1)) for step in range(SERIES_POINTS // 2)
              for key in ("train_acc", "train_loss")]
    started = time.perf_counter()
    with sessions() as session:
        for start in range(0, len(points), batch):
            write_points(session, run_id, points[start:start + batch])
            session.commit()
    rate = len(points) / (time.perf_counter() - started)
    with sessions() as session:   # the series to serve: 100,000 points of one key
        for start in range(0, SERIES_POINTS, 10_000):
            write_points(session, run_id, [("test_loss", s, 0, (s % 97) / 97) for s in range(start, start + 10_000)])
        session.commit()
    return round(rate)


def _series_ms(client: TestClient, run_id: int) -> dict:
    def timed() -> float:
        started = time.perf_counter()
        response = client.get(f"/api/runs/{run_id}/metrics", params={"keys": "test_loss", "max_points": SERIES_SHOWN})
        elapsed = (time.perf_counter() - started) * 1000
        series = response.json()["series"]["test_loss"]
        assert series["total"] == SERIES_POINTS and len(series["steps"]) <= SERIES_SHOWN, series["total"]
        return elapsed

    client.get("/api/health")          # the server's first request pays for its warm-up, not the series
    cold = timed()
    warm = [timed() for _ in range(20)]
    return {"cold": round(cold, 1), "warm_median": round(statistics.median(warm), 1)}


def _list(client: TestClient, sessions, config: RunConfig) -> dict:
    with sessions() as session:
        session.add_all([lifecycle.new_run(config) for _ in range(LISTED_RUNS)])
        session.commit()

    def measured(params: dict) -> dict:
        times = []
        for _ in range(10):
            started = time.perf_counter()
            response = client.get("/api/runs", params={"limit": LISTED_RUNS, **params})
            times.append((time.perf_counter() - started) * 1000)
            assert len(response.json()["items"]) == LISTED_RUNS
        return {"ms": round(statistics.median(times), 1), "kb": round(len(response.content) / 1000)}

    return {"full": measured({}), "table": measured({"config_fields": TABLE_CONFIG_FIELDS})}


def _summary_ms(client: TestClient, sessions) -> float:
    """A finished sweep whose accuracy follows a(d) = 1 − exp(−d / 300) plus noise, then its summary."""
    created = client.post("/api/experiments", json={
        "name": "bench", "base": {"dataset": "synthetic"}, "grid": SWEEP, "seeds": list(range(SWEEP_SEEDS)),
        "baseline": 1.0})
    assert created.status_code == 201, created.text
    experiment_id = created.json()["id"]
    noise = random.Random(0)
    with sessions() as session:
        for run in session.scalars(select(Run).where(Run.experiment_id == experiment_id)):
            accuracy = 1 - math.exp(-run.config["d"] / 300) + noise.gauss(0, 0.01)
            run.status, run.final_metrics = SUCCEEDED, {"test_acc": accuracy}
        session.commit()
    times = []
    for _ in range(10):
        started = time.perf_counter()
        summary = client.get(f"/api/experiments/{experiment_id}/summary").json()
        times.append((time.perf_counter() - started) * 1000)
        assert all(group["d_int90_interval"] for group in summary["groups"]), summary
    return round(statistics.median(times), 1)


def _sse_delay(base_url: str, sessions, run_id: int) -> dict:
    """Write one point every 0.4 s from another thread; time each until its event arrives."""
    committed: dict[int, float] = {}
    delays: list[float] = []
    first_step = 10_000_000

    def writer() -> None:
        for i in range(SSE_SAMPLES):
            time.sleep(0.4)
            with sessions() as session:
                write_points(session, run_id, [("live", first_step + i, 0, float(i))])
                session.commit()
            committed[first_step + i] = time.perf_counter()

    with httpx.Client(base_url=base_url, timeout=10) as http:
        last = http.get(f"/api/runs/{run_id}/metrics", params={"keys": "test_loss", "max_points": 10}).json()
        with http.stream("GET", f"/api/runs/{run_id}/events",
                         params={"last_event_id": last["last_event_id"]}) as response:
            thread = threading.Thread(target=writer, daemon=True)
            thread.start()
            event = None
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "points":
                    received = time.perf_counter()
                    for point in json.loads(line[5:]):
                        # The writer stamps the commit just after it returns: wait for the stamp.
                        while point["step"] not in committed:
                            time.sleep(0.001)
                        delays.append(max(0.0, received - committed[point["step"]]))
                    if len(delays) >= SSE_SAMPLES:
                        break
            thread.join()
    return {"median": round(statistics.median(delays), 3), "max": round(max(delays), 3)}


@contextmanager
def _serve(app):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def _temporary_postgres():
    admin = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"idlab_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _report(result: dict) -> str:
    ok = {
        "points_per_s": result["points_per_s"] >= TARGETS["points_per_s"],
        "series_ms": result["series_ms"]["cold"] <= TARGETS["series_ms"],
        "list_500_ms": result["list_500"]["table"]["ms"] <= TARGETS["list_500_ms"],
        "summary_ms": result["summary_ms"] <= TARGETS["summary_ms"],
        "sse_delay_s": result["sse_delay_s"]["max"] <= TARGETS["sse_delay_s"],
    }
    mark = {True: "ok", False: "MISSED"}
    return "\n".join([
        f"[{result['database']}]",
        f"  points written        {result['points_per_s']:>10,} /s     target ≥ 20,000 /s   {mark[ok['points_per_s']]}",
        f"  100k → 1k series      {result['series_ms']['cold']:>10} ms cold, "
        f"{result['series_ms']['warm_median']} ms warm"
        f"   target ≤ 100 ms   {mark[ok['series_ms']]}",
        f"  list 500 runs (table) {result['list_500']['table']['ms']:>10} ms, {result['list_500']['table']['kb']} kB"
        f"   target ≤ 100 ms   {mark[ok['list_500_ms']]}",
        f"  list 500 runs (full)  {result['list_500']['full']['ms']:>10} ms, {result['list_500']['full']['kb']} kB",
        f"  summary of 300 runs   {result['summary_ms']:>10} ms     target ≤ 100 ms      {mark[ok['summary_ms']]}",
        f"  point → SSE event     {result['sse_delay_s']['median']:>10} s median, {result['sse_delay_s']['max']} s max"
        f"   target ≤ 1.5 s   {mark[ok['sse_delay_s']]}",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="benchmark this database only (it gets idlab's tables)")
    parser.add_argument("--batch", type=int, default=500, help="points per write_points call and commit")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    results = []
    with tempfile.TemporaryDirectory(prefix="idlab-bench-") as folder:
        folder = Path(folder)
        if args.database_url:
            results.append(bench(args.database_url, folder / "given", args.batch))
        else:
            results.append(bench(f"sqlite:///{folder / 'bench.db'}", folder / "sqlite", args.batch))
            with _temporary_postgres() as url:
                results.append(bench(url, folder / "postgres", args.batch))
    print(json.dumps(results, indent=2) if args.json else "\n".join(_report(r) for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
