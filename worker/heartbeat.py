"""The heartbeat of one execution: a thread that tells the database its runs and their worker are alive.

Every `heartbeat_seconds` it stamps each run it holds (one, or the runs of a batch) with
its latest progress (step, epoch, losses, accuracies), and the worker's last_seen. It
beats from its own thread so a long step or evaluation never makes a live run look
dead; the reaper takes a run over only after `stale_after_seconds` without a beat.
When a beat finds that a run is no longer this execution's, that run is told to stop.
A run that ends is dropped first (`drop`), so no beat races its final status.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from backend.domain import lifecycle
from worker import presence

log = logging.getLogger(__name__)


@dataclass
class Beating:
    """A run the heartbeat holds: its claim, where its progress comes from, whom to tell when it is lost."""

    run_id: int
    token: str
    progress: Callable[[], dict]
    on_lost: Callable[[], None]


class Heartbeat(threading.Thread):
    def __init__(self, sessions: sessionmaker[Session], worker_name: str, interval: float,
                 batch: list[int] | None = None):
        super().__init__(name=f"heartbeat-{worker_name}", daemon=True)
        self.sessions, self.worker_name, self.interval, self.batch = sessions, worker_name, interval, batch
        self.runs: dict[int, Beating] = {}
        self.stopping = threading.Event()
        self._lock = threading.Lock()   # held by a beat: `drop` waits for the beat in flight
        self._busy_with: int | None = None

    def add(self, run_id: int, token: str, progress: Callable[[], dict], on_lost: Callable[[], None]) -> None:
        with self._lock:
            self.runs[run_id] = Beating(run_id, token, progress, on_lost)
            if self._busy_with is None:
                self._busy_with = run_id   # the workers table names the execution by its first run

    def drop(self, run_id: int) -> None:
        """Beat `run_id` no more; returns once no beat of it is in flight."""
        with self._lock:
            self.runs.pop(run_id, None)

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.beat()

    def beat(self) -> bool:
        """One beat of every run held; False when one of them is no longer this execution's."""
        with self._lock:
            runs = list(self.runs.values())
            if not runs:
                return True
            try:
                with self.sessions() as session:
                    lost = [run for run in runs if not lifecycle.heartbeat(session, run.run_id, run.token,
                                                                           run.progress())]
                    presence.busy(session, self.worker_name, self._busy_with, batch=self.batch)
            except Exception:  # a database hiccup: the next beat tries again, well within stale_after_seconds
                log.exception("heartbeat of run(s) %s failed", ", ".join(str(run.run_id) for run in runs))
                return True
            for run in lost:
                log.warning("run %s is no longer this execution's (reaped or requeued): stopping it", run.run_id)
                self.runs.pop(run.run_id, None)
                run.on_lost()
        return not lost

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=self.interval + 10)
