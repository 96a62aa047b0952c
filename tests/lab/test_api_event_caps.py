"""Caps on open event streams, on a real uvicorn server: per client address (429) and in all (503),
each slot given back when its stream closes; and a stream's database reads happen off the event loop."""

from __future__ import annotations

import contextlib
import threading
import time

import anyio
import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from backend.api.events import Database, OpenStreams

TIMEOUT = httpx.Timeout(10.0)
SMALL = {"dataset": "synthetic", "d": 20, "epochs": 1}
PER_CLIENT, IN_ALL = 2, 3


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"sse_max_streams_per_client": PER_CLIENT, "sse_max_streams": IN_ALL})


def client(base_url: str, address: str = "127.0.0.1") -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z reaches the server on 127.0.0.1)."""
    return httpx.Client(base_url=base_url, timeout=TIMEOUT, transport=httpx.HTTPTransport(local_address=address))


def open_streams(http: httpx.Client) -> int:
    return http.get("/api/health").json()["open_streams"]


def wait_open_streams(http: httpx.Client, count: int) -> None:
    deadline = time.monotonic() + 10
    while open_streams(http) != count:
        assert time.monotonic() < deadline, f"open streams stayed {open_streams(http)}, not {count}"
        time.sleep(0.05)


def test_streams_are_capped_per_client_and_in_all_and_a_closed_one_frees_its_slot(live_server):
    with client(live_server) as first, client(live_server, "127.0.0.2") as second, \
            contextlib.ExitStack() as streams:
        run_id = first.post("/api/runs", json=SMALL).json()["id"]     # queued: its stream stays open
        experiment = first.post("/api/experiments", json={"name": "e", "base": SMALL, "grid": {"d": [10]}}).json()
        paths = [f"/api/runs/{run_id}/events", f"/api/experiments/{experiment['id']}/events"]

        held = [streams.enter_context(first.stream("GET", path)) for path in paths]   # both kinds count
        assert [response.status_code for response in held] == [200, 200]

        refused = first.get(paths[0])
        assert refused.status_code == 429
        detail = refused.json()["detail"]
        assert "sse_max_streams_per_client" in detail and f"at most {PER_CLIENT}" in detail

        other = streams.enter_context(second.stream("GET", paths[0]))   # another client still may …
        assert other.status_code == 200
        full = second.get(paths[0])                                      # … until the server is full
        assert full.status_code == 503
        assert "sse_max_streams" in full.json()["detail"] and f"at most {IN_ALL}" in full.json()["detail"]
        assert open_streams(first) == IN_ALL

        held[0].close()                                                  # a client leaves: its slot is free
        wait_open_streams(first, IN_ALL - 1)
        with second.stream("GET", paths[0]) as again:
            assert again.status_code == 200
            assert next(again.iter_lines()) is not None                  # it streams
        wait_open_streams(first, IN_ALL - 1)

    with client(live_server) as http:
        wait_open_streams(http, 0)
        assert http.get("/api/runs/987654/events").status_code == 404    # refused streams hold no slot
        assert http.get("/api/experiments/987654/events").status_code == 404
        assert open_streams(http) == 0
        for _ in range(PER_CLIENT):
            with http.stream("GET", f"/api/runs/{run_id}/events") as response:
                assert response.status_code == 200


def test_a_streams_reads_run_in_a_worker_thread_with_their_own_session(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    limiter_size = engine.pool.size()
    seen = []

    def read(session, tag):
        seen.append((tag, threading.get_ident(), session.connection() is not None))
        return tag

    async def main():
        streams = OpenStreams()
        db = Database(sessionmaker(bind=engine), streams.limiter(engine))
        assert streams.limiter(engine).total_tokens == limiter_size         # the pool's size
        assert await db(read, "a") == "a"
        return threading.get_ident()

    loop_thread = anyio.run(main)
    engine.dispose()
    assert [(tag, ok) for tag, _, ok in seen] == [("a", True)] and seen[0][1] != loop_thread
