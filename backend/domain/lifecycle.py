"""A run's life: queued → running → succeeded | failed | cancelled | diverged.

Every change of a run's status goes through this module, so the rules live in
one place. Transitions that race (two workers claiming one run, a cancel while
a worker finishes) are single conditional UPDATEs: the database decides, and
the loser sees that it lost. Callers commit; enqueueing a message happens after
the commit (`backend.domain.queue.enqueue_run`), so a worker never receives the id
of a run it cannot see yet.

Clocks. Workers and reapers run on different machines whose clocks may disagree
by minutes; a heartbeat stamped by the worker's clock and judged by the reaper's
would make a reaper take over a healthy run. So every time that decides whether
an execution is alive (a run's started_at, heartbeat_at and finished_at, its
queued_at when a worker hands it back or a reaper requeues it, a worker's
started_at and last_seen) is the database's clock, `db_now()`, and reapers judge
by the same clock (`database_now`). Only one clock then matters, and it is the
same for everyone. (The API stamps a new or retried run's queued_at with its own
clock: at worst a lost message is sent again a little early or late.)

Claims. `claim` gives an execution a token; every write of that execution is
conditional on it (heartbeat, finish, release in their UPDATE; points and
artefacts after `holds_claim`), so an execution that lost its run — a reaper
requeued it while the worker was unreachable — writes nothing more.

Attempts. `attempt` counts the executions the reaper charges to a run: a
vanished worker's execution counts, and after `max_attempts` of them the reaper
fails the run. A graceful hand-back (`release`, the worker shutting down) gives
its attempt back, and a user's `retry` starts the run with a fresh budget.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from backend.domain.models import (
    CANCELLED,
    DIVERGED,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    MetricEnvelope,
    MetricPoint,
    Run,
    UTCDateTime,
    utcnow,
)
from backend.domain.points import Point, rebuild_envelopes, write_points
from idlab.config import RunConfig

RETRYABLE = (FAILED, CANCELLED, DIVERGED)


class db_now(FunctionElement):
    """The database's current time, as a SQL expression: `values(heartbeat_at=db_now())`.

    PostgreSQL: statement_timestamp() (the statement's start; now() would be the transaction's,
    stale in a long one). SQLite: its 'now', UTC, in the very text SQLAlchemy stores a datetime as
    ('YYYY-MM-DD HH:MM:SS.ffffff'), so that stored times compare as text correctly and read back as
    UTCDateTime; CURRENT_TIMESTAMP would lose the fraction of the second. (SQLite runs in the calling
    process, so its clock is that machine's: the embedded lab keeps every process on one machine.)
    """

    type = UTCDateTime()
    inherit_cache = True
    name = "db_now"


@compiles(db_now)
def _db_now_default(element, compiler, **kw) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(db_now, "postgresql")
def _db_now_postgresql(element, compiler, **kw) -> str:
    return "statement_timestamp()"


@compiles(db_now, "sqlite")
def _db_now_sqlite(element, compiler, **kw) -> str:
    # %f is SS.SSS (milliseconds); three zeros make microseconds, the width SQLAlchemy writes.
    return "(STRFTIME('%Y-%m-%d %H:%M:%f', 'now') || '000')"


def database_now(session: Session) -> datetime:
    """The database's clock, read once (timezone-aware UTC): what reapers judge staleness by."""
    return session.scalar(select(db_now()))


class TransitionError(ValueError):
    """The run is not in a state that allows this change (the API answers 409)."""


def new_run(config: RunConfig, experiment_id: int | None = None, role: str = "member") -> Run:
    """A queued run of a validated config, with its sizes recorded."""
    subspace = config.method == "subspace"
    return Run(config=config.model_dump(mode="json"), experiment_id=experiment_id, role=role, status=QUEUED,
               D=config.D, k=config.k if subspace else config.D, d=config.d if subspace else config.D,
               progress={}, final_metrics={}, queued_at=utcnow())


def claim(session: Session, run_id: int, worker: str) -> str | None:
    """queued → running for this worker; returns the claim token, or None if the run was not queued.

    A message delivered twice reaches here twice: only one UPDATE matches status = queued.
    """
    token = uuid.uuid4().hex
    now = db_now()
    claimed = session.execute(
        update(Run).where(Run.id == run_id, Run.status == QUEUED, Run.cancel_requested.is_(False))
        .values(status=RUNNING, attempt=Run.attempt + 1, claim_token=token, worker=worker, started_at=now,
                heartbeat_at=now, finished_at=None, error=None, updated_at=now)
    ).rowcount
    session.commit()
    return token if claimed else None


def heartbeat(session: Session, run_id: int, token: str, progress: dict | None = None) -> bool:
    """Record that the claimed execution is alive; False when it no longer owns the run."""
    values: dict = {"heartbeat_at": db_now(), "updated_at": db_now()}
    if progress is not None:
        values["progress"] = progress
    alive = session.execute(update(Run).where(Run.id == run_id, Run.claim_token == token, Run.status == RUNNING)
                            .values(**values)).rowcount
    session.commit()
    return bool(alive)


def holds_claim(session: Session, run_id: int, token: str) -> bool:
    """Whether the execution holding `token` still owns run `run_id` (running, with this claim),
    in a transaction that keeps it so until the caller commits.

    Call it first, then write (points, the statistics artefact) and commit: the write is then
    fenced. It commits what the session held, so that the check begins the transaction. On
    PostgreSQL it locks the run's row (SELECT … FOR UPDATE): a reaper's requeue waits for the
    commit, and the write lands before the run changes hands, never after. On SQLite it takes
    the database's write lock first (BEGIN IMMEDIATE), which serialises every writer the same way.
    False: the run is no longer this execution's; the transaction is rolled back, nothing written.
    """
    session.commit()
    owned = (Run.id == run_id, Run.status == RUNNING, Run.claim_token == token)
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))
        held = session.scalar(select(Run.id).where(*owned)) is not None
    else:
        held = session.scalar(select(Run.id).where(*owned).with_for_update()) is not None
    if not held:
        session.rollback()
    return held


def write_claimed_points(session: Session, run_id: int, token: str, points: list[Point]) -> bool:
    """Store the points of the execution holding `token`, and commit; False (nothing stored) when
    the run is no longer its own."""
    if not holds_claim(session, run_id, token):
        return False
    write_points(session, run_id, points)
    session.commit()
    return True


def finish(session: Session, run_id: int, token: str, status: str, *, metrics: dict | None = None,
           error: str | None = None) -> bool:
    """running → a final status, only for the execution that holds the claim."""
    assert status in FINISHED, status
    values: dict = {"status": status, "finished_at": db_now(), "updated_at": db_now(), "error": error}
    if metrics is not None:
        values["final_metrics"] = metrics
    done = session.execute(update(Run).where(Run.id == run_id, Run.claim_token == token, Run.status == RUNNING)
                           .values(**values)).rowcount
    if done and _overwritten(session, run_id):
        # Points were written again (a re-execution, a restart at a lower lr): envelopes merged as
        # they came may keep an extreme that is gone, so rebuild them from the points now stored.
        rebuild_envelopes(session.connection(), run_id)
    session.commit()
    return bool(done)


def _overwritten(session: Session, run_id: int) -> bool:
    """Whether some point of the run was written more than once: every write adds one to its
    bucket's envelope count `n`, so the counts then exceed the points stored."""
    writes = session.scalar(select(func.coalesce(func.sum(MetricEnvelope.n), 0)).where(MetricEnvelope.run_id == run_id))
    if not writes:
        return False
    return writes > session.scalar(select(func.count()).select_from(MetricPoint).where(MetricPoint.run_id == run_id))


def release(session: Session, run_id: int, token: str, reason: str) -> bool:
    """running → queued by the execution that holds the claim, when its worker shuts down mid-run.

    A graceful hand-back is not a failure: the attempt the claim counted is given back, so a run
    handed back by worker after worker (a rolling restart) is never failed for it. The caller sends
    a new message after this commits; the next execution starts the run over, and its points
    overwrite the same (key, step) rows.
    """
    released = session.execute(
        update(Run).where(Run.id == run_id, Run.claim_token == token, Run.status == RUNNING)
        .values(attempt=Run.attempt - 1, **_queued_values(reason))).rowcount
    session.commit()
    return bool(released)


def _stale(run_id: int, token: str | None, stale_before: datetime):
    """The conditions that make a reaper's change safe against the worker and other reapers.

    `stale_before` is on the database's clock (`database_now` − stale_after), as heartbeat_at is."""
    return (Run.id == run_id, Run.status == RUNNING,
            Run.claim_token.is_(None) if token is None else Run.claim_token == token,
            or_(Run.heartbeat_at.is_(None), Run.heartbeat_at < stale_before))


def requeue_stale(session: Session, run_id: int, token: str | None, stale_before: datetime, reason: str) -> bool:
    """running → queued for a run whose heartbeat stopped before `stale_before` (its worker vanished).

    False when the worker beat again, finished, or another reaper got there first.
    """
    done = session.execute(update(Run).where(*_stale(run_id, token, stale_before))
                           .values(**_queued_values(reason))).rowcount
    session.commit()
    return bool(done)


def end_stale(session: Session, run_id: int, token: str | None, stale_before: datetime, status: str,
              reason: str) -> bool:
    """running → failed (out of attempts) or cancelled (cancel was asked) for a run whose worker vanished."""
    assert status in FINISHED, status
    now = db_now()
    done = session.execute(update(Run).where(*_stale(run_id, token, stale_before))
                           .values(status=status, error=reason, claim_token=None, finished_at=now,
                                   updated_at=now)).rowcount
    session.commit()
    return bool(done)


def mark_resent(session: Session, run_id: int, queued_before: datetime) -> bool:
    """Restart the queued clock of a run whose message is presumed lost, so one reaper re-sends it once.

    True for the one caller that should send the message again (concurrent reapers race on this UPDATE).
    `queued_before` is on the database's clock.
    """
    now = db_now()
    done = session.execute(update(Run).where(Run.id == run_id, Run.status == QUEUED, Run.queued_at < queued_before)
                           .values(queued_at=now)).rowcount
    session.commit()
    return bool(done)


def _queued_values(reason: str | None) -> dict:
    now = db_now()
    return {"status": QUEUED, "claim_token": None, "worker": None, "finished_at": None, "error": reason,
            "queued_at": now, "updated_at": now}


def request_cancel(session: Session, run: Run) -> Run:
    """A queued run is cancelled at once; a running one is flagged and stops at its next check."""
    if run.status == QUEUED:
        run.status, run.finished_at, run.cancel_requested = CANCELLED, utcnow(), True
    elif run.status == RUNNING:
        run.cancel_requested = True
    else:
        raise TransitionError(f"run {run.id} is {run.status}: only queued or running runs can be cancelled")
    run.updated_at = utcnow()
    return run


def requeue(session: Session, run: Run, reason: str | None = None) -> Run:
    """Back to queued, for a retry or after its worker vanished; its metric points are kept."""
    run.status, run.claim_token, run.worker = QUEUED, None, None
    run.cancel_requested, run.finished_at, run.error = False, None, reason
    run.queued_at = run.updated_at = utcnow()
    return run


def retry(session: Session, run: Run) -> Run:
    """A finished run back to queued, by the user: with a fresh budget of `max_attempts` executions."""
    if run.status not in RETRYABLE:
        raise TransitionError(f"run {run.id} is {run.status}: only failed, cancelled or diverged runs can be retried")
    run.attempt = 0
    return requeue(session, run)


def fail(run: Run, reason: str) -> Run:
    run.status, run.error, run.claim_token = FAILED, reason, None
    run.finished_at = run.updated_at = utcnow()
    return run


def duration_seconds(run: Run, now: datetime | None = None) -> float | None:
    if run.started_at is None:
        return None
    end = run.finished_at or now or utcnow()
    return (end - run.started_at).total_seconds()

