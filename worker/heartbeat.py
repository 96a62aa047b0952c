"""The heartbeat of one execution: a thread that tells the database the run and its worker are alive.

Every `heartbeat_seconds` it stamps the run's heartbeat_at with its latest progress
(step, epoch, losses, accuracies) and the worker's last_seen. It beats from its own
thread so a long step or evaluation never makes a live run look dead; the reaper
takes a run over only after `stale_after_seconds` without a beat. When a beat finds
that the run is no longer this execution's, training is told to stop.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from sqlalchemy.orm import Session, sessionmaker

from backend import lifecycle
from worker import presence

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    def __init__(self, sessions: sessionmaker[Session], run_id: int, token: str, worker_name: str, interval: float,
                 progress: Callable[[], dict], on_lost: Callable[[], None]):
        super().__init__(name=f"heartbeat-run-{run_id}", daemon=True)
        self.sessions, self.run_id, self.token, self.worker_name = sessions, run_id, token, worker_name
        self.interval, self.progress, self.on_lost = interval, progress, on_lost
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.beat()

    def beat(self) -> bool:
        """One beat; False when the run is no longer this execution's."""
        try:
            with self.sessions() as session:
                alive = lifecycle.heartbeat(session, self.run_id, self.token, self.progress())
                presence.busy(session, self.worker_name, self.run_id)
        except Exception:  # a database hiccup: the next beat tries again, well within stale_after_seconds
            log.exception("heartbeat of run %s failed", self.run_id)
            return True
        if not alive:
            log.warning("run %s is no longer this execution's (reaped or requeued): stopping it", self.run_id)
            self.on_lost()
            self.stopping.set()
        return alive

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=self.interval + 10)
