"""What /api/health reports: the database, the broker and the workers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Check(BaseModel):
    ok: bool
    detail: str | None = None


class WorkerOut(BaseModel):
    name: str
    hostname: str
    device: str
    queues: list[str]
    current_run_id: int | None
    current_batch: list[int] | None = Field(None, description="The runs it trains together as one batch "
                                                              "(current_run_id first); null when one run or none.")
    started_at: datetime
    last_seen: datetime
    alive: bool = Field(description="Seen within the last stale_after_seconds.")


class HealthOut(BaseModel):
    status: str = Field(description="`ok` when the database and the broker answer, else `degraded`.")
    database: Check
    broker: Check
    workers: list[WorkerOut]
    workers_alive: int
    open_streams: int = Field(description="Event streams this API process is serving.")
    time: datetime
