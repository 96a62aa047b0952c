"""Fixtures of the lab's service tests: real databases (SQLite and Postgres), apps, live servers.

Every API test runs twice, on SQLite (a file) and on Postgres (a database created
for this test session and dropped at its end; the server is at $IDLAB_TEST_POSTGRES,
default postgresql+psycopg2://postgres@127.0.0.1:5432). An unreachable Postgres is
a failure, not a skip: both backends are supported, so both are tested. Each test
starts from empty tables; the migrations ran once per session.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, delete, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from backend.api.app import create_app
from backend.domain import migrate
from backend.domain.db import make_engine
from backend.domain.models import Base
from backend.domain.settings import Settings
from tests.lab.lab_processes import TESTCLIENT_HOSTS, sse_blocks

POSTGRES_SERVER = os.environ.get("IDLAB_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")
DATABASES = ("sqlite", "postgresql")
_engines: dict[str, Engine] = {}


# ---- databases ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'idlab.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    admin = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"idlab_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        pytest.fail(f"Postgres is not reachable at {POSTGRES_SERVER} ({exc.orig}); start it, or point "
                    "IDLAB_TEST_POSTGRES at a server where the user may create databases")
    url = f"{POSTGRES_SERVER}/{name}"
    try:
        migrate.upgrade(url)
        yield url
    finally:
        engine = _engines.pop(url, None)
        if engine is not None:
            engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def engine_of(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


@pytest.fixture(params=DATABASES)
def database_url(request) -> str:
    """A migrated database with empty tables, SQLite then Postgres."""
    url = request.getfixturevalue(f"{request.param}_url")
    with engine_of(url).begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(delete(table))
    return url


@pytest.fixture
def sessions(database_url) -> sessionmaker[Session]:
    """Sessions on the test database, for what a worker would write (points, statuses, artefacts)."""
    return sessionmaker(bind=engine_of(database_url), expire_on_commit=False)


# ---- apps ----------------------------------------------------------------------------------------


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    """The embedded broker (a filesystem queue under tmp_path) so runs can be queued without a worker.
    TestClient's requests say `Host: testserver`: that name is allowed (the live servers use 127.0.0.1)."""
    return Settings(_env_file=None, data_dir=tmp_path / "lab", database_url=database_url, broker_url=None,
                    api_token=None, cors_origins=[], allowed_hosts=TESTCLIENT_HOSTS, sse_poll_seconds=0.1,
                    sse_ping_seconds=1.0)


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def queued_messages(settings: Settings) -> list[dict]:
    """The task messages waiting in the filesystem broker (kombu's JSON envelopes)."""
    folder = settings.embedded_broker_dir / "queue"
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.msg"))]


def queued_run_ids(settings: Settings) -> list[int]:
    import base64

    ids = []
    for message in queued_messages(settings):
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        ids.append(json.loads(body)[0][0])
    return ids


# ---- a live server (for event streams) -----------------------------------------------------------


@contextmanager
def serve(app) -> Iterator[str]:
    """Run `app` on uvicorn in a thread on a free port of 127.0.0.1; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=2, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live_server(settings) -> Iterator[str]:
    with serve(create_app(settings)) as url:
        yield url


class EventReader:
    """Reads Server-Sent Events from a streaming httpx response, one event at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self._blocks = sse_blocks(response.iter_lines())

    def next(self) -> dict:
        """The next event as {"event", "data" (parsed JSON), "id", "retry"} (those it has); blocks
        without data skipped."""
        for block in self._blocks:
            if "data" in block:
                return {"event": "message", **block, "data": json.loads(block["data"])}
        raise EOFError("the stream ended")

    def until(self, name: str) -> list[dict]:
        """Events up to and including the first one called `name`."""
        seen = []
        while True:
            seen.append(self.next())
            if seen[-1]["event"] == name:
                return seen


REPO = Path(__file__).resolve().parents[2]
