"""A run's life: queued → running → succeeded | failed | cancelled | diverged.

Every change of a run's status goes through this module, so the rules live in
one place. Transitions that race (two workers claiming one run, a cancel while
a worker finishes) are single conditional UPDATEs: the database decides, and
the loser sees that it lost. Callers commit; enqueueing a message happens after
the commit (`worker.celery_app.enqueue_run`), so a worker never receives the id
of a run it cannot see yet.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from backend.models import CANCELLED, DIVERGED, FAILED, FINISHED, QUEUED, RUNNING, Run, utcnow
from backend.points import rebuild_envelopes
from idlab.config import RunConfig

RETRYABLE = (FAILED, CANCELLED, DIVERGED)


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
    now = utcnow()
    claimed = session.execute(
        update(Run).where(Run.id == run_id, Run.status == QUEUED, Run.cancel_requested.is_(False))
        .values(status=RUNNING, attempt=Run.attempt + 1, claim_token=token, worker=worker, started_at=now,
                heartbeat_at=now, finished_at=None, error=None, updated_at=now)
    ).rowcount
    session.commit()
    return token if claimed else None


def heartbeat(session: Session, run_id: int, token: str, progress: dict | None = None) -> bool:
    """Record that the claimed execution is alive; False when it no longer owns the run."""
    values: dict = {"heartbeat_at": utcnow(), "updated_at": utcnow()}
    if progress is not None:
        values["progress"] = progress
    alive = session.execute(update(Run).where(Run.id == run_id, Run.claim_token == token, Run.status == RUNNING)
                            .values(**values)).rowcount
    session.commit()
    return bool(alive)


def finish(session: Session, run_id: int, token: str, status: str, *, metrics: dict | None = None,
           error: str | None = None) -> bool:
    """running → a final status, only for the execution that holds the claim."""
    assert status in FINISHED, status
    values: dict = {"status": status, "finished_at": utcnow(), "updated_at": utcnow(), "error": error}
    if metrics is not None:
        values["final_metrics"] = metrics
    done = session.execute(update(Run).where(Run.id == run_id, Run.claim_token == token, Run.status == RUNNING)
                           .values(**values)).rowcount
    if done and session.scalar(select(Run.attempt).where(Run.id == run_id)) > 1:
        # A re-execution overwrote earlier points: envelopes merged as they came may keep an
        # extreme that is gone, so rebuild them from the points now stored.
        rebuild_envelopes(session.connection(), run_id)
    session.commit()
    return bool(done)


def release(session: Session, run_id: int, token: str, reason: str) -> bool:
    """running → queued by the execution that holds the claim, when its worker shuts down mid-run.

    The caller sends a new message after this commits; the next execution starts the run
    over, and its points overwrite the same (key, step) rows.
    """
    released = session.execute(
        update(Run).where(Run.id == run_id, Run.claim_token == token, Run.status == RUNNING)
        .values(**_queued_values(reason))).rowcount
    session.commit()
    return bool(released)


def _stale(run_id: int, token: str | None, stale_before: datetime):
    """The conditions that make a reaper's change safe against the worker and other reapers."""
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
    now = utcnow()
    done = session.execute(update(Run).where(*_stale(run_id, token, stale_before))
                           .values(status=status, error=reason, claim_token=None, finished_at=now,
                                   updated_at=now)).rowcount
    session.commit()
    return bool(done)


def mark_resent(session: Session, run_id: int, queued_before: datetime) -> bool:
    """Restart the queued clock of a run whose message is presumed lost, so one reaper re-sends it once.

    True for the one caller that should send the message again (concurrent reapers race on this UPDATE).
    """
    now = utcnow()
    done = session.execute(update(Run).where(Run.id == run_id, Run.status == QUEUED, Run.queued_at < queued_before)
                           .values(queued_at=now)).rowcount
    session.commit()
    return bool(done)


def _queued_values(reason: str | None) -> dict:
    now = utcnow()
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
    if run.status not in RETRYABLE:
        raise TransitionError(f"run {run.id} is {run.status}: only failed, cancelled or diverged runs can be retried")
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

