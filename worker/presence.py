"""The workers table: who is alive (last_seen), on what device, consuming which queues, running what.

The reaper reads it to tell a lost message from a busy lab: a run queued for long
while a live worker of its queue sits idle was never delivered. Every write is a
plain UPDATE of one row (an INSERT only the first time a name is seen), so the
worker's main process and its pool processes never conflict. Times are the
database's clock (`db_now`), the one reapers judge by, never the worker's own.
"""

from __future__ import annotations

import socket

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.domain.lifecycle import db_now
from backend.domain.models import Worker


def register(session: Session, name: str, device: str, queues: list[str]) -> None:
    """The worker `name` (re)starts: idle, seen now, on `device`, consuming `queues`."""
    now = db_now()
    values = {"hostname": socket.gethostname(), "device": device, "queues": list(queues),
              "current_run_id": None, "current_batch": None, "started_at": now, "last_seen": now}
    if not session.execute(update(Worker).where(Worker.name == name).values(**values)).rowcount:
        session.add(Worker(name=name, **values))
        try:
            session.commit()
            return
        except IntegrityError:  # registered meanwhile by a process of the same name
            session.rollback()
            session.execute(update(Worker).where(Worker.name == name).values(**values))
    session.commit()


def seen(session: Session, name: str) -> None:
    """The worker is alive."""
    session.execute(update(Worker).where(Worker.name == name).values(last_seen=db_now()))
    session.commit()


def busy(session: Session, name: str, run_id: int, device: str | None = None,
         batch: list[int] | None = None) -> None:
    """The worker is alive and executing `run_id` (on `device`, once the run knows it), with the runs of
    `batch` (run_id first) when it trains several as one."""
    values: dict = {"current_run_id": run_id, "current_batch": batch, "last_seen": db_now()}
    if device is not None:
        values["device"] = device
    session.execute(update(Worker).where(Worker.name == name).values(**values))
    session.commit()


def idle(session: Session, name: str, run_id: int) -> None:
    """The worker finished `run_id` (a no-op if it has moved on to another run meanwhile)."""
    session.execute(update(Worker).where(Worker.name == name, Worker.current_run_id == run_id)
                    .values(current_run_id=None, current_batch=None, last_seen=db_now()))
    session.commit()


def stopped(session: Session, name: str) -> None:
    """The worker shut down cleanly: it runs nothing (its last_seen ages, so it soon counts as gone)."""
    session.execute(update(Worker).where(Worker.name == name).values(current_run_id=None, current_batch=None))
    session.commit()
