"""The engine's callback for one execution of a run: store its points, and tell it when to stop.

The engine calls it after every step (with points every `log_every` steps) and
between evaluation batches, and tells it the phase it enters. It buffers the
points and writes them in batches (when `FLUSH_SECONDS` have passed since the last
write, or `BATCH_POINTS` are waiting): a point reaches the database, and so an open
browser, within about a second, without a transaction per step. Writes are upserts
keyed by (run, key, step), so an execution that starts the run over rewrites the
same rows instead of adding new ones. Each write is fenced by the execution's
claim (`backend.domain.lifecycle.write_claimed_points`): once the run is no longer this
execution's, its points are dropped, not stored, and the run is stopped (LOST).

It asks the database at most every `CHECK_SECONDS` whether to stop: a cancel was
requested, or the run is no longer this execution's (the reaper requeued it while
this worker was unreachable). The worker's shutdown stops it too.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.domain.models import RUNNING, Run
from idlab import metrics as M

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.3
BATCH_POINTS = 500
CHECK_SECONDS = 0.5

CANCEL, LOST, SHUTDOWN = "cancel", "lost", "shutdown"


def write_points(session: Session, run_id: int, token: str, points: list[tuple[str, int, int, float]]) -> bool:
    """The backend's bulk upsert (ON CONFLICT (run_id, key, step)), committed only while the claim
    `token` holds the run; False when it no longer does (nothing stored). Imported late: it lives in
    the backend."""
    from backend.domain.lifecycle import write_claimed_points

    return write_claimed_points(session, run_id, token, points)


class RunRecorder:
    """Callable as the engine's callback: `recorder(points) -> True` to stop the run."""

    def __init__(self, sessions: sessionmaker[Session], run_id: int, token: str, shutdown: threading.Event,
                 clock: Callable[[], float] = time.monotonic):
        self.sessions, self.run_id, self.token, self.shutdown, self.clock = sessions, run_id, token, shutdown, clock
        self.pending: list[tuple[str, int, int, float]] = []
        self.flushed_at = self.checked_at = clock()
        self.stop_reason: str | None = None
        self.written = 0
        self.dropped = 0     # points not stored: the run was no longer this execution's
        self._latest: dict = {}
        self._lock = threading.Lock()

    def __call__(self, points: Sequence) -> bool:
        for point in points:
            # A non-finite value cannot be stored (SQLite has no NaN) nor sent as JSON; the engine
            # reports divergence itself, with the step, in the run's error.
            if math.isfinite(point.value):
                self.pending.append((point.key, int(point.step), int(point.epoch), float(point.value)))
        self._note(points)
        now = self.clock()
        if len(self.pending) >= BATCH_POINTS or (self.pending and now - self.flushed_at >= FLUSH_SECONDS):
            self.flush()
        if self.stop_reason is None and self.shutdown.is_set():
            self.stop_reason = SHUTDOWN
        if self.stop_reason is None and now - self.checked_at >= CHECK_SECONDS:
            self.checked_at = now
            self.stop_reason = self._ask_database()
        return self.stop_reason is not None

    def flush(self) -> None:
        """Write the buffered points (one transaction), if the run is still this execution's."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        self.flushed_at = self.clock()
        if self.stop_reason != LOST:
            with self.sessions() as session:
                if write_points(session, self.run_id, self.token, batch):
                    self.written += len(batch)
                    return
            log.warning("run %s is no longer this execution's (reaped or requeued): its points are dropped "
                        "and it stops", self.run_id)
            self.stop_reason = LOST
        self.dropped += len(batch)

    def lost(self) -> None:
        """The heartbeat found the run no longer ours: stop at the next callback."""
        self.stop_reason = LOST

    def enter_phase(self, phase: str) -> None:
        """The run now prepares, trains or evaluates (`idlab.metrics.PHASES`): its progress says so."""
        with self._lock:
            self._latest["phase"] = phase
            if phase != M.DOWNLOADING:
                self._latest.pop(M.DOWNLOAD, None)

    def download_progress(self, done: int, total: int | None) -> None:
        """`load_dataset`'s on_progress: the run is downloading its dataset, `done` of `total` bytes (None:
        unknown); the heartbeat carries it to the run page as "downloading 37 %". Once every byte is in, the
        run is preparing again (reading the files, building the network)."""
        with self._lock:
            finished = total is not None and done >= total
            self._latest["phase"] = M.PREPARING if finished else M.DOWNLOADING
            self._latest[M.DOWNLOAD] = {"done": int(done), "total": None if total is None else int(total)}

    def progress(self) -> dict:
        """The phase, the latest step and epoch, and the latest value of every key: the run's `progress`,
        sent with each heartbeat."""
        with self._lock:
            return dict(self._latest)

    def _note(self, points: Sequence) -> None:
        if not points:
            return
        with self._lock:
            for point in points:
                if point.step >= self._latest.get("step", -1):
                    self._latest["step"], self._latest["epoch"] = int(point.step), int(point.epoch)
                self._latest[point.key] = float(point.value) if math.isfinite(point.value) else None

    def _ask_database(self) -> str | None:
        with self.sessions() as session:
            row = session.execute(select(Run.status, Run.claim_token, Run.cancel_requested)
                                  .where(Run.id == self.run_id)).one_or_none()
        if row is None or row.status != RUNNING or row.claim_token != self.token:
            return LOST
        return CANCEL if row.cancel_requested else None
