"""/api/health: is the database up, does the broker answer, which workers are alive."""

from __future__ import annotations

import os
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from kombu import Connection
from sqlalchemy import select, text

from backend.api.deps import CeleryDep, SessionDep, SettingsDep
from backend.api.schemas.health import Check, HealthOut, WorkerOut
from backend.domain.lifecycle import database_now
from backend.domain.models import Worker, utcnow
from backend.domain.settings import Settings

router = APIRouter(tags=["health"])

BROKER_TIMEOUT_SECONDS = 2.0


@router.get("/health", response_model=HealthOut, summary="Database, broker and workers",
            responses={503: {"model": HealthOut, "description": "The database does not answer."}})
def health(request: Request, session: SessionDep, settings: SettingsDep, celery: CeleryDep,
           response: Response) -> HealthOut:
    database, workers = _database(session, settings)
    broker = _broker(settings, celery)
    if not database.ok:
        response.status_code = 503
    return HealthOut(status="ok" if database.ok and broker.ok else "degraded", database=database, broker=broker,
                     workers=workers, workers_alive=sum(w.alive for w in workers),
                     open_streams=request.app.state.open_streams.count, time=utcnow())


def _database(session, settings: Settings) -> tuple[Check, list[WorkerOut]]:
    try:
        session.execute(text("SELECT 1"))
        rows = session.scalars(select(Worker).order_by(Worker.name)).all()
    except Exception as exc:  # noqa: BLE001 - reported, not raised: health must answer
        return Check(ok=False, detail=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"), []
    # last_seen is on the database's clock (worker.presence): judged by it, not by this machine's.
    cutoff = database_now(session) - timedelta(seconds=settings.stale_after_seconds)
    workers = [WorkerOut(name=w.name, hostname=w.hostname, device=w.device, queues=list(w.queues or []),
                         current_run_id=w.current_run_id, current_batch=w.current_batch, started_at=w.started_at,
                         last_seen=w.last_seen,
                         alive=w.last_seen >= cutoff) for w in rows]
    return Check(ok=True), workers


def _broker(settings: Settings, celery) -> Check:
    """One connection attempt with a short timeout (no retries): cheap enough for every poll."""
    if settings.broker.startswith("filesystem"):
        queue = settings.embedded_broker_dir / "queue"
        if not (queue.is_dir() and os.access(queue, os.W_OK)):
            return Check(ok=False, detail=f"the embedded queue folder {queue} is missing or not writable")
        return Check(ok=True, detail=f"embedded filesystem queue in {queue.parent}")
    try:
        with Connection(settings.broker, connect_timeout=BROKER_TIMEOUT_SECONDS,
                        transport_options=dict(celery.conf.broker_transport_options or {})) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                                         timeout=BROKER_TIMEOUT_SECONDS)
            where = connection.as_uri()   # the password masked
    except Exception as exc:  # noqa: BLE001 - any transport error means "unreachable"
        return Check(ok=False, detail=f"{type(exc).__name__}: {str(exc)[:200]}")
    return Check(ok=True, detail=where)
