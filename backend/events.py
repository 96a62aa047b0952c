"""Server-Sent Events: a run's new metric points and status changes, as they reach the database.

Workers write to the database, not to the API, so the stream polls: every
`settings.sse_poll_seconds` it reads the run's status, then its points with
id > the last one sent (the index (run_id, id) makes that cheap). Reading the
status first matters: once it says "finished", the points read after it are all
there are, and the stream can end.

Each poll uses a fresh session in a worker thread, closed before sleeping, so an
idle stream holds no connection. A client that disconnects is noticed by
sse-starlette, which cancels the generator at its next await. When the server shuts
down (a restart, `docker compose stop`), each stream ends at once, cleanly: the
browser reconnects to the next server with its Last-Event-ID and misses nothing.

Events of a run stream:
    event: status   data: {"id", "status", "attempt", "progress", "final_metrics", "error", …}
    event: points   id: <largest point id in it>   data: [{"id", "key", "step", "epoch", "value"}, …]
    event: end      data: {"status": …}   — finished and every point sent; the client should close
A reconnecting EventSource sends Last-Event-ID and resumes after that point.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import anyio
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request

from backend.analysis.search import SEARCHING
from backend.models import FINISHED, Run, SearchGroup
from backend.points import points_after
from backend.schemas.common import json_safe

POINTS_PER_EVENT = 5000
RECONNECT_MS = 1000
#: How long a stream may take to end once the server shuts down (it ends at its next pause).
SHUTDOWN_GRACE_SECONDS = 2.0
STATUS_COLUMNS = (Run.id, Run.status, Run.attempt, Run.cancel_requested, Run.worker, Run.progress,
                  Run.final_metrics, Run.error, Run.started_at, Run.finished_at)


def event_stream(request: Request, events: Callable[[anyio.Event], AsyncIterator[ServerSentEvent]],
                 ping_seconds: float) -> EventSourceResponse:
    """The response for `events(shutdown)`, a generator that returns once `shutdown` is set."""
    shutdown = anyio.Event()
    return EventSourceResponse(request.app.state.open_streams.track(events(shutdown)), ping=ping_seconds,
                               shutdown_event=shutdown, shutdown_grace_period=SHUTDOWN_GRACE_SECONDS)


async def _pause(seconds: float, shutdown: anyio.Event) -> bool:
    """Sleep `seconds`, or until the server shuts down; True if it does."""
    with anyio.move_on_after(seconds):
        await shutdown.wait()
    return shutdown.is_set()


async def run_events(sessions: sessionmaker[Session], run_id: int, after_id: int, poll_seconds: float,
                     shutdown: anyio.Event) -> AsyncIterator[ServerSentEvent]:
    sent_status = None
    first = True
    while True:
        status, points = await anyio.to_thread.run_sync(_poll_run, sessions, run_id, after_id)
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


async def experiment_events(sessions: sessionmaker[Session], experiment_id: int, poll_seconds: float,
                            shutdown: anyio.Event) -> AsyncIterator[ServerSentEvent]:
    """`event: status` with the list of the experiment's runs whose status or progress changed
    (all of them in the first event); `event: end` once every run has finished (and, for a
    search, no group is still searching: its next round is about to be queued)."""
    sent: dict[int, dict] = {}
    while True:
        runs, searching = await anyio.to_thread.run_sync(_poll_experiment, sessions, experiment_id)
        changed = [run for run in runs if sent.get(run["id"]) != run]
        if changed:
            yield _event("status", changed, retry=RECONNECT_MS if not sent else None)
            sent.update((run["id"], run) for run in changed)
        if not searching and all(run["status"] in FINISHED for run in runs):
            yield _event("end", {"runs": len(runs)})
            return
        if await _pause(poll_seconds, shutdown):
            return


class OpenStreams:
    """How many event streams are open (reported by /api/health): a stream whose client went away
    must not keep polling the database."""

    def __init__(self) -> None:
        self.count = 0

    async def track(self, events: AsyncIterator[ServerSentEvent]) -> AsyncIterator[ServerSentEvent]:
        self.count += 1   # one event loop: no lock needed
        try:
            async for event in events:
                yield event
        finally:
            self.count -= 1
            with anyio.CancelScope(shield=True):   # a disconnect cancels us: close the poller anyway
                await events.aclose()


# ---- the polls (blocking; run in a worker thread) -----------------------------------------------


def _poll_run(sessions: sessionmaker[Session], run_id: int, after_id: int) -> tuple[dict | None, list[dict]]:
    with sessions() as session:
        row = session.execute(select(*STATUS_COLUMNS).where(Run.id == run_id)).one_or_none()
        if row is None:
            return None, []
        points = points_after(session, run_id, after_id, POINTS_PER_EVENT)
    return _status(row), [{"id": p.id, "key": p.key, "step": p.step, "epoch": p.epoch, "value": p.value}
                          for p in points]


def _poll_experiment(sessions: sessionmaker[Session], experiment_id: int) -> tuple[list[dict], bool]:
    """The experiment's runs, and whether a group of its search is still searching."""
    with sessions() as session:
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
