"""In-process fixtures for the worker's unit tests: a migrated SQLite database, runs in any state,
and a Celery stand-in that records the messages it is asked to send."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import sessionmaker

from backend.domain import lifecycle
from backend.domain.db import make_engine
from backend.domain.migrate import upgrade
from backend.domain.models import Base, Run, Worker, utcnow
from backend.domain.settings import Settings
from idlab.config import RunConfig
from tests.lab.lab_processes import TINY


class SentMessages:
    """Stands in for the Celery app: `send_task` records (task, args, queue)."""

    def __init__(self):
        self.sent: list[tuple[str, list, str]] = []

    def send_task(self, name, args=None, queue=None, **_):
        self.sent.append((name, list(args or []), queue))

    @property
    def run_ids(self) -> list[int]:
        return [args[0] for _, args, _ in self.sent]


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('worker-unit') / 'idlab.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield url, engine
    engine.dispose()


@pytest.fixture
def sessions(database):
    url, engine = database
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(delete(table))
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture
def settings(database, tmp_path):
    return Settings(_env_file=None, data_dir=tmp_path, database_url=database[0], stale_after_seconds=60,
                    heartbeat_seconds=5, max_attempts=3)


def add_run(sessions, *, status: str = "queued", age: float = 0.0, attempt: int = 0, worker: str | None = None,
            cancel_requested: bool = False, error: str | None = None, **config) -> Run:
    """A run in `status`, its last heartbeat (running) or its queueing `age` seconds ago."""
    when = utcnow() - timedelta(seconds=age)
    with sessions() as session:
        run = lifecycle.new_run(RunConfig.model_validate({**TINY, **config}))
        run.status, run.attempt, run.worker, run.cancel_requested, run.error = (status, attempt, worker,
                                                                              cancel_requested, error)
        run.queued_at = when
        if status == "running":
            run.claim_token, run.started_at, run.heartbeat_at = f"token-{worker}-{attempt}", when, when
        session.add(run)
        session.commit()
        return run


def add_worker(sessions, name: str = "w1@host", *, queues=("cpu", "gpu"), seen_ago: float = 0.0,
               started_ago: float = 3600.0, current_run_id: int | None = None) -> None:
    now = utcnow()
    with sessions() as session:
        session.add(Worker(name=name, hostname="host", device="cpu", queues=list(queues),
                           current_run_id=current_run_id, started_at=now - timedelta(seconds=started_ago),
                           last_seen=now - timedelta(seconds=seen_ago)))
        session.commit()


def reload(sessions, run_id: int) -> Run:
    with sessions() as session:
        return session.get(Run, run_id)
