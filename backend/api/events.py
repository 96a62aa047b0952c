"""Server-Sent Events: a run's new metric points and status changes, as they reach the database.

Workers write to the database, not to the API, so the stream polls: every
`settings.sse_poll_seconds` it reads the run's status, then its points with
id > the last one sent (the index (run_id, id) makes that cheap). Reading the
status first matters: once it says "finished", the points read after it are all
there are, and the stream can end.

Each poll runs in a worker thread and opens its session there, closed before
sleeping, so an idle stream holds no connection and the event loop never waits on
the database. The polls of all streams share a capacity limiter the size of the
database pool (`OpenStreams.limiter`): however many streams are open, they never
queue for connections inside the pool, and the API's other requests keep theirs.

Streams are capped (`settings.sse_max_streams_per_client` per client address, 429
past it; `settings.sse_max_streams` in all, 503): each open stream holds a slot,
taken before anything else is done and given back when the stream closes, however it
closes (end, client disconnect, server shutdown, an error).

A client that disconnects is noticed by sse-starlette, which cancels the generator
at its next await. When the server shuts down (a restart, `docker compose stop`),
each stream ends at once, cleanly: the browser reconnects to the next server with
its Last-Event-ID and misses nothing.

Events of a run stream:
    event: status   data: {"id", "status", "attempt", "progress", "final_metrics", "error", …}
    event: points   id: <largest point id in it>   data: [{"id", "key", "step", "epoch", "value"}, …]
    event: end      data: {"status": …}   — finished and every point sent; the client should close
A reconnecting EventSource sends Last-Event-ID and resumes after that point.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio
from fastapi import HTTPException
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from backend.domain.analysis.search import SEARCHING
from backend.domain.models import FINISHED, Run, SearchGroup
from backend.domain.points import points_after
from idlab.metrics import json_safe

POINTS_PER_EVENT = 5000
RECONNECT_MS = 1000
#: How long a stream may take to end once the server shuts down (it ends at its next pause).
SHUTDOWN_GRACE_SECONDS = 2.0
STATUS_COLUMNS = (Run.id, Run.status, Run.attempt, Run.cancel_requested, Run.worker, Run.progress,
                  Run.final_metrics, Run.error, Run.started_at, Run.finished_at)


#: Polls at once when the database pool's size is unknown (a pool that is not a QueuePool).
DEFAULT_POLL_THREADS = 5
T = TypeVar("T")


class Database:
    """How a stream reads the database: `await db(read, *args)` calls `read(session, *args)` in a
    worker thread, with a session made (and closed) in that thread, under the streams' limiter."""

    def __init__(self, sessions: sessionmaker[Session], limiter: anyio.CapacityLimiter):
        self.sessions, self.limiter = sessions, limiter

    async def __call__(self, read: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(self._read, read, *args, limiter=self.limiter)

    def _read(self, read: Callable[..., T], *args: Any) -> T:
        with self.sessions() as session:
            return read(session, *args)


async def event_stream(request: Request, events: Callable[[Database, anyio.Event], AsyncIterator[ServerSentEvent]],
                       check: Callable[[Session], object] | None = None) -> EventSourceResponse:
    """The response for `events(db, shutdown)`, a generator that returns once `shutdown` is set.

    First a slot (429 or 503 past the caps, before the database is touched), then `check(session)`
    in a thread (e.g. a 404 for an unknown run), then the stream, which gives the slot back when it closes.
    """
    app = request.app
    streams: OpenStreams = app.state.open_streams
    slot = streams.open(request.client.host if request.client else "unknown", app.state.settings)
    try:
        db = Database(app.state.sessionmaker, streams.limiter(app.state.engine))
        if check is not None:
            await db(check)
        shutdown = anyio.Event()
        return _Stream(slot, streams.track(events(db, shutdown)), ping=app.state.settings.sse_ping_seconds,
                       shutdown_event=shutdown, shutdown_grace_period=SHUTDOWN_GRACE_SECONDS)
    except BaseException:
        slot.release()
        raise


class _Stream(EventSourceResponse):
    """An event stream that gives its slot back when it is over, whatever ended it."""

    def __init__(self, slot: Slot, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()


async def _pause(seconds: float, shutdown: anyio.Event) -> bool:
    """Sleep `seconds`, or until the server shuts down; True if it does."""
    with anyio.move_on_after(seconds):
        await shutdown.wait()
    return shutdown.is_set()


async def run_events(db: Database, run_id: int, after_id: int, poll_seconds: float,
                     shutdown: anyio.Event) -> AsyncIterator[ServerSentEvent]:
    sent_status = None
    first = True
    while True:
        status, points = await db(_poll_run, run_id, after_id)
        if status is None:  # deleted meanwhile
            yield _event("end", {"status": None, "reason": f"run {run_id} no longer exists"})
            return
        if status != sent_status:
            yield _event("status", status, retry=RECONNECT_MS if first else None)
            sent_status, first = status, False
        if points:
            after_id = points[-1]["id"]
            yield _event("points", points, id=str(after_id))
            if len(points) == POINTS_PER_EVENT:
                continue                      # more are waiting: no sleep
        elif status["status"] in FINISHED:
            yield _event("end", {"status": status["status"]})
            return
        if await _pause(poll_seconds, shutdown):
            return


async def experiment_events(db: Database, experiment_id: int, poll_seconds: float,
                            shutdown: anyio.Event) -> AsyncIterator[ServerSentEvent]:
    """`event: status` with the list of the experiment's runs whose status or progress changed
    (all of them in the first event); `event: end` once every run has finished (and, for a
    search, no group is still searching: its next round is about to be queued)."""
    sent: dict[int, dict] = {}
    while True:
        runs, searching = await db(_poll_experiment, experiment_id)
        changed = [run for run in runs if sent.get(run["id"]) != run]
        if changed:
            yield _event("status", changed, retry=RECONNECT_MS if not sent else None)
            sent.update((run["id"], run) for run in changed)
        if not searching and all(run["status"] in FINISHED for run in runs):
            yield _event("end", {"runs": len(runs)})
            return
        if await _pause(poll_seconds, shutdown):
            return


class Slot:
    """One open stream's place under the caps; `release` is idempotent."""

    def __init__(self, streams: OpenStreams, client: str):
        self.streams, self.client, self.released = streams, client, False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.streams._close(self.client)


class OpenStreams:
    """The event streams this API process serves: how many (reported by /api/health), from whom
    (the caps), and the limiter their database reads share. One per app, used on its event loop
    only: no lock is needed."""

    def __init__(self) -> None:
        self.count = 0
        self.by_client: Counter[str] = Counter()
        self._limiter: anyio.CapacityLimiter | None = None

    def open(self, client: str, settings) -> Slot:
        """A slot for a new stream of `client`, or an HTTPException naming the cap that is reached."""
        if self.by_client[client] >= settings.sse_max_streams_per_client:
            raise HTTPException(429, detail=(
                f"too many open event streams from this client: {self.by_client[client]} of at most "
                f"{settings.sse_max_streams_per_client} (setting sse_max_streams_per_client, "
                "IDLAB_SSE_MAX_STREAMS_PER_CLIENT); close one and try again"))
        if self.count >= settings.sse_max_streams:
            raise HTTPException(503, detail=(
                f"too many open event streams on this server: {self.count} of at most {settings.sse_max_streams} "
                "(setting sse_max_streams, IDLAB_SSE_MAX_STREAMS); try again later"))
        self.count += 1
        self.by_client[client] += 1
        return Slot(self, client)

    def _close(self, client: str) -> None:
        self.count -= 1
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]

    def limiter(self, engine: Engine) -> anyio.CapacityLimiter:
        """Threads the streams' polls may use at once: the database pool's steady size (its overflow
        is left to the API's other requests). Made on first use, on the app's event loop."""
        if self._limiter is None:
            pool = engine.pool
            self._limiter = anyio.CapacityLimiter(pool.size() if isinstance(pool, QueuePool) else DEFAULT_POLL_THREADS)
        return self._limiter

    async def track(self, events: AsyncIterator[ServerSentEvent]) -> AsyncIterator[ServerSentEvent]:
        try:
            async for event in events:
                yield event
        finally:
            with anyio.CancelScope(shield=True):   # a disconnect cancels us: close the poller anyway
                await events.aclose()


# ---- the polls (blocking; run in a worker thread, each with its own session) ---------------------


def _poll_run(session: Session, run_id: int, after_id: int) -> tuple[dict | None, list[dict]]:
    row = session.execute(select(*STATUS_COLUMNS).where(Run.id == run_id)).one_or_none()
    if row is None:
        return None, []
    points = points_after(session, run_id, after_id, POINTS_PER_EVENT)
    return _status(row), [{"id": p.id, "key": p.key, "step": p.step, "epoch": p.epoch, "value": p.value}
                          for p in points]


def _poll_experiment(session: Session, experiment_id: int) -> tuple[list[dict], bool]:
    """The experiment's runs, and whether a group of its search is still searching."""
    rows = session.execute(select(*STATUS_COLUMNS).where(Run.experiment_id == experiment_id)
                           .order_by(Run.id)).all()
    searching = session.scalar(select(SearchGroup.id).where(SearchGroup.experiment_id == experiment_id,
                                                            SearchGroup.status == SEARCHING).limit(1))
    return [_status(row) for row in rows], searching is not None


def _status(row) -> dict:
    return {"id": row.id, "status": row.status, "attempt": row.attempt, "cancel_requested": row.cancel_requested,
            "worker": row.worker, "progress": row.progress or {}, "final_metrics": row.final_metrics or {},
            "error": row.error, "started_at": _time(row.started_at), "finished_at": _time(row.finished_at)}


def _event(name: str, data, id: str | None = None, retry: int | None = None) -> ServerSentEvent:
    # json_safe: a NaN in progress would make JSON that browsers refuse to parse.
    return ServerSentEvent(json.dumps(json_safe(data), separators=(",", ":"), allow_nan=False),
                           event=name, id=id, retry=retry)


def _time(value):
    return value.isoformat() if value is not None else None
