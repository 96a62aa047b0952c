"""A model file's evaluation by a worker: queued → running → succeeded | failed.

The API checks the file without torch (`idlab.model_file.read_header`: format, checksum)
and its config (`RunConfig`), stores both and sends the evaluation's id to the queue of the
device asked for (`EVALUATE_TASK`). A worker claims it (one conditional UPDATE, so a message
delivered twice evaluates once), rebuilds the network from the seed and the trained tensors,
and records the test accuracy, or the reason it refused the file.

The reaper (worker.reaper) repairs what a vanished worker leaves: a running evaluation whose
worker has not been seen for `stale_after_seconds` is failed (`fail_abandoned`; evaluating
again is one more POST of the same file), and a queued one whose message was lost while a
worker of its queue sat idle is sent again (`resend_lost`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from celery import Celery
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from backend.domain.lifecycle import db_now
from backend.domain.models import FAILED, QUEUED, RUNNING, SUCCEEDED, ModelEvaluation, Worker, utcnow
from backend.domain.queue import EVALUATE_TASK, queue_for
from idlab.config import RunConfig
from idlab.model_file import ModelFileError, read_header

STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED)
#: Lost messages sent again per reaper pass at most.
RESEND_BATCH = 100


def new_evaluation(data: bytes, device: str | None) -> ModelEvaluation:
    """A queued evaluation of a model file, or ModelFileError saying why the file cannot be evaluated."""
    header, _ = read_header(data)
    try:
        config = RunConfig.model_validate(header.get("config"))
    except ValueError as error:
        raise ModelFileError(f"the model file's config is not valid in this lab version: {error}") from error
    recorded = (header.get("metrics") or {}).get("test_acc")
    return ModelEvaluation(status=QUEUED, device=device or config.device, file=data,
                           sha256=hashlib.sha256(data).hexdigest(), config=config.model_dump(mode="json"),
                           recorded_test_acc=recorded if isinstance(recorded, (int, float)) else None,
                           queued_at=utcnow())


def enqueue(evaluation: ModelEvaluation, app: Celery) -> None:
    """Send the evaluation's id to the queue of its device (after it was committed)."""
    app.send_task(EVALUATE_TASK, args=[evaluation.id], queue=queue_for({"device": evaluation.device}))


def claim(session: Session, evaluation_id: int, worker: str) -> bool:
    """queued → running for this worker; False when it was not queued (a duplicate message)."""
    claimed = session.execute(
        update(ModelEvaluation).where(ModelEvaluation.id == evaluation_id, ModelEvaluation.status == QUEUED)
        .values(status=RUNNING, worker=worker, started_at=db_now())).rowcount
    session.commit()
    return bool(claimed)


def finish(session: Session, evaluation_id: int, *, result: dict | None = None, error: str | None = None) -> None:
    """running → succeeded with its result, or → failed with the reason."""
    session.execute(
        update(ModelEvaluation).where(ModelEvaluation.id == evaluation_id, ModelEvaluation.status == RUNNING)
        .values(status=FAILED if error else SUCCEEDED, result=result, error=error, finished_at=db_now()))
    session.commit()


def fail_abandoned(session: Session, stale_before: datetime) -> list[int]:
    """Fail the running evaluations whose worker has not been seen since `stale_before`."""
    seen = select(Worker.last_seen).where(Worker.name == ModelEvaluation.worker).scalar_subquery()
    abandoned = list(session.scalars(select(ModelEvaluation.id).where(
        ModelEvaluation.status == RUNNING, ModelEvaluation.started_at < stale_before,
        or_(seen.is_(None), seen < stale_before))))
    for evaluation_id in abandoned:
        session.execute(
            update(ModelEvaluation).where(ModelEvaluation.id == evaluation_id, ModelEvaluation.status == RUNNING)
            .values(status=FAILED, finished_at=db_now(),
                    error="the worker evaluating it stopped answering; send the file again to evaluate it"))
    session.commit()
    return abandoned



def resend_lost(session: Session, app: Celery, stale_before: datetime, idle_queues: set[str]) -> list[int]:
    """Send again the evaluations queued since before `stale_before` for a queue a worker sat idle on."""
    waiting = session.execute(select(ModelEvaluation.id, ModelEvaluation.device).where(
        ModelEvaluation.status == QUEUED, ModelEvaluation.queued_at < stale_before)
        .order_by(ModelEvaluation.id).limit(RESEND_BATCH)).all()
    resent = []
    for evaluation_id, device in waiting:
        if queue_for({"device": device}) not in idle_queues:
            continue
        marked = session.execute(update(ModelEvaluation).where(
            ModelEvaluation.id == evaluation_id, ModelEvaluation.status == QUEUED,
            ModelEvaluation.queued_at < stale_before).values(queued_at=db_now())).rowcount
        session.commit()
        if marked:
            app.send_task(EVALUATE_TASK, args=[evaluation_id], queue=queue_for({"device": device}))
            resent.append(evaluation_id)
    session.commit()
    return resent
