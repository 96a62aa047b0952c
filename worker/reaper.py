"""The reaper: no run stays "running" without a live worker, and no queued run waits for a lost message.

Two repairs, both decided by the database, never by the broker:

1. A running run whose heartbeat is older than `stale_after_seconds` lost its
   worker (killed, machine gone). It is requeued and its message sent again while
   it has attempts left (`max_attempts`), failed with the reason otherwise, and
   cancelled if a cancel had been asked for.
2. A run queued for longer than `stale_after_seconds` while a live worker of its
   queue has been idle all that time has no message left: the worker that held it
   was killed (the filesystem broker never redelivers; Redis only after its
   visibility timeout). Its message is sent again.

3. A search experiment whose round has finished gets its next round
   (`backend.domain.search_rounds.advance_pending`): the worker that finished the round's
   last run queues it, unless it died first.

(4. At its shutdown a worker sends again the messages of the runs it handed back:
   `resend_handed_back`.)

5. Model evaluations (`POST /api/models/evaluate`) get the first two repairs too: one
   running on a vanished worker is failed, a lost message is sent again
   (`backend.domain.evaluations`).

Several reapers may run at once (`idlab serve` and every `idlab worker`): each
change is a conditional UPDATE that only one of them wins, and only the winner
sends the message. A message sent twice is harmless: a run is claimed once.

Every age is judged by the database's clock: heartbeats, last_seen and the times
of claims are stamped with it (`backend.domain.lifecycle.db_now`), and each pass reads it
once (`database_now`). A reaper or a worker whose own clock is minutes off takes
over nothing healthy, and loses nothing of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy import ColumnElement, exists, false, or_, select
from sqlalchemy.orm import Session

from backend.domain import evaluations, lifecycle, search_rounds
from backend.domain.models import CANCELLED, FAILED, QUEUED, RUNNING, Run, Worker
from backend.domain.queue import enqueue_run
from backend.domain.settings import Settings

log = logging.getLogger(__name__)

#: Lost messages re-sent per pass at most (the next pass continues).
RESEND_BATCH = 200


@dataclass
class ReapSummary:
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)
    searched: list[int] = field(default_factory=list)    # runs of search rounds it queued
    evaluations_failed: list[int] = field(default_factory=list)   # model evaluations whose worker vanished
    evaluations_resent: list[int] = field(default_factory=list)   # model evaluations whose message was lost

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed or self.cancelled or self.resent or self.searched
                    or self.evaluations_failed or self.evaluations_resent)


def reap(session: Session, settings: Settings, celery: Celery, now: datetime | None = None) -> ReapSummary:
    """One pass of the three repairs; returns the ids it changed. `now` is the database's clock
    unless given (on that clock: a test's moment)."""
    now = now or lifecycle.database_now(session)
    session.commit()  # end the read transaction (SQLite would otherwise pin a snapshot)
    stale_before = now - timedelta(seconds=settings.stale_after_seconds)
    summary = ReapSummary()
    reap_vanished(session, settings, celery, stale_before, summary)
    resend_lost(session, celery, stale_before, summary)
    summary.searched = search_rounds.advance_pending(session, settings, celery)
    reap_evaluations(session, celery, stale_before, summary)
    return summary


def reap_evaluations(session: Session, celery: Celery, stale_before: datetime, summary: ReapSummary) -> None:
    """The same two repairs for model evaluations (backend.domain.evaluations)."""
    summary.evaluations_failed = evaluations.fail_abandoned(session, stale_before)
    for evaluation_id in summary.evaluations_failed:
        log.warning("model evaluation %s: its worker stopped answering; failed", evaluation_id)
    try:
        summary.evaluations_resent = evaluations.resend_lost(session, celery, stale_before,
                                                             idle_queues(session, stale_before))
    except Exception:  # the broker is down: they stay queued, and a later pass sends them again
        session.rollback()
        log.exception("reaper: could not send model evaluations to the broker")


def reap_vanished(session: Session, settings: Settings, celery: Celery, stale_before: datetime,
                  summary: ReapSummary) -> None:
    stale = session.execute(
        select(Run.id, Run.claim_token, Run.worker, Run.heartbeat_at, Run.started_at, Run.attempt,
               Run.cancel_requested, Run.config)
        .where(Run.status == RUNNING, or_(Run.heartbeat_at.is_(None), Run.heartbeat_at < stale_before))
    ).all()
    session.commit()  # end the read transaction: on SQLite it would otherwise pin a snapshot
    for run in stale:
        last = run.heartbeat_at or run.started_at
        vanished = (f"worker {run.worker or '(unknown)'} stopped heartbeating at "
                    f"{last:%Y-%m-%d %H:%M:%S} UTC" if last else f"worker {run.worker or '(unknown)'} never heartbeat")
        if run.cancel_requested:
            reason = f"{vanished}; cancelled as requested"
            if lifecycle.end_stale(session, run.id, run.claim_token, stale_before, CANCELLED, reason):
                summary.cancelled.append(run.id)
                log.warning("run %s: %s", run.id, reason)
        elif run.attempt < settings.max_attempts:
            reason = f"{vanished}; requeued (attempt {run.attempt + 1} of {settings.max_attempts})"
            if lifecycle.requeue_stale(session, run.id, run.claim_token, stale_before, reason):
                summary.requeued.append(run.id)
                log.warning("run %s: %s", run.id, reason)
                _send(celery, run.id, run.config)
        else:
            reason = f"{vanished}; failed after {run.attempt} attempts (max_attempts = {settings.max_attempts})"
            if lifecycle.end_stale(session, run.id, run.claim_token, stale_before, FAILED, reason):
                summary.failed.append(run.id)
                log.warning("run %s: %s", run.id, reason)


def idle_queues(session: Session, since: datetime) -> set[str]:
    """Queues consumed by a worker that is alive, was up all along, and neither started nor finished a run
    since `since`.

    Idle for that long, it would have taken any message of its queues that existed. `since` is on the
    database's clock, like every time compared with it (last_seen, the workers' and runs' starts, finishes).
    """
    active = exists().where(Run.worker == Worker.name, or_(Run.started_at >= since, Run.finished_at >= since))
    rows = session.execute(select(Worker.queues).where(Worker.last_seen >= since, Worker.started_at < since,
                                                       Worker.current_run_id.is_(None), ~active)).all()
    session.commit()
    return {queue for (queues,) in rows for queue in queues or ()}


def in_queues(queues: set[str]) -> ColumnElement[bool]:
    """The SQL twin of `queue_for`: runs whose queue is one of `queues` ("cpu": device cpu; "gpu": any other)."""
    device = Run.config["device"].as_string()
    conditions = ([device == "cpu"] if "cpu" in queues else []) + (
        [or_(device.is_(None), device != "cpu")] if "gpu" in queues else [])
    return or_(*conditions) if conditions else false()


def resend_lost(session: Session, celery: Celery, stale_before: datetime, summary: ReapSummary) -> None:
    queues = idle_queues(session, stale_before)
    if not queues:
        return
    # Filtered by queue in SQL before the batch is cut: a queue nobody idles on (its runs waiting for a
    # busy worker) must not fill the batch and starve the queues whose workers sit idle.
    waiting = session.execute(select(Run.id, Run.config).where(
        Run.status == QUEUED, Run.queued_at < stale_before, in_queues(queues),
    ).order_by(Run.id).limit(RESEND_BATCH)).all()
    session.commit()
    for run in waiting:
        if lifecycle.mark_resent(session, run.id, stale_before):
            summary.resent.append(run.id)
            log.warning("run %s: queued since before %s while a worker of its queue sat idle: its message "
                        "was lost, sent again", run.id, f"{stale_before:%H:%M:%S} UTC")
            _send(celery, run.id, run.config)


def resend_handed_back(session: Session, celery: Celery, worker_name: str) -> list[int]:
    """Send again the messages of the runs `worker_name` handed back while shutting down.

    Called by the worker once it has stopped consuming, so that it cannot take them back itself.
    """
    from worker.execution import handed_back_reason

    runs = session.execute(select(Run.id, Run.config).where(
        Run.status == QUEUED, Run.error.startswith(handed_back_reason(worker_name), autoescape=True))).all()
    session.commit()
    for run in runs:
        _send(celery, run.id, run.config)
    return [run.id for run in runs]


def _send(celery: Celery, run_id: int, config: dict) -> None:
    try:
        enqueue_run(run_id, config, app=celery)
    except Exception:  # the broker is down: the run stays queued, and a later pass re-sends it as lost
        log.exception("reaper: could not send run %s to the broker", run_id)
