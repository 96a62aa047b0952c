"""The background duties of a long-lived lab process: say the worker is alive, reap, tidy the broker.

Runs as a daemon thread in every `idlab worker` main process (with its worker's
name) and in `idlab serve` (without one: reaper only, so reaping goes on while
the worker restarts). The worker's main process forks a pool process per run, so
each pass holds off forks while it runs (`worker.fork_guard`), and its engine keeps
no connection open between passes (`pooled=False`): a child inherits neither a lock
held mid-query nor a live connection.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import Celery
from sqlalchemy.orm import sessionmaker

from backend.domain.db import make_engine
from backend.domain.queue import prune_processed_messages
from backend.domain.settings import Settings
from worker import presence
from worker.fork_guard import guarded
from worker.reaper import reap

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 600.0


class Maintenance(threading.Thread):
    def __init__(self, settings: Settings, celery: Celery, worker_name: str | None = None):
        super().__init__(name="idlab-maintenance", daemon=True)
        self.settings, self.celery, self.worker_name = settings, celery, worker_name
        self.engine = make_engine(settings.database, pooled=False)
        self.sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        self.stopping = threading.Event()
        self.tick = min(settings.heartbeat_seconds, settings.reaper_seconds)

    def run(self) -> None:
        due = {"seen": 0.0, "reap": 0.0, "prune": 0.0}
        while not self.stopping.is_set():
            now = time.monotonic()
            if self.worker_name and now >= due["seen"]:
                due["seen"] = now + self.settings.heartbeat_seconds
                self._safely(lambda session: presence.seen(session, self.worker_name),
                             "record that the worker is alive")
            if now >= due["reap"]:
                due["reap"] = now + self.settings.reaper_seconds
                self._safely(lambda session: reap(session, self.settings, self.celery), "reap")
            if now >= due["prune"]:
                due["prune"] = now + PRUNE_EVERY_SECONDS
                try:
                    prune_processed_messages(self.settings)
                except OSError:
                    log.exception("could not prune the embedded broker's processed messages")
            self.stopping.wait(self.tick)

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
        self.engine.dispose()

    def _safely(self, action, what: str) -> None:
        # A database hiccup must not end the thread: the next tick tries again.
        try:
            with guarded(), self.sessions() as session:
                action(session)
        except Exception:
            log.exception("maintenance: could not %s", what)
