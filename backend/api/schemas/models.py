"""What /api/models answers: a model file's evaluation by a worker, and its result."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class EvaluationResult(BaseModel):
    test_acc: float = Field(description="Test accuracy of the rebuilt network.")
    test_loss: float = Field(description="Mean cross-entropy on the test split.")
    recorded_test_acc: float | None = Field(description="The test accuracy the run recorded when it exported the file.")
    device: str = Field(description="Where it was evaluated, e.g. `cpu` or `cuda:0`.")
    dataset: str
    test_examples: int
    model_bytes: int = Field(description="The file's size.")
    network_bytes: int = Field(description="θ_D's size as float32: D × 4 bytes.")
    compression: float = Field(description="network_bytes / model_bytes.")


class EvaluationOut(BaseModel):
    id: int
    status: Literal["queued", "running", "succeeded", "failed"]
    device: str = Field(description="The device asked for (`cpu`, `cuda`, `cuda:N` or `auto`); the queue follows it.")
    sha256: str = Field(description="Of the file as sent.")
    config: dict = Field(description="The run config the file describes.")
    recorded_test_acc: float | None
    result: EvaluationResult | None = Field(description="Once succeeded.")
    error: str | None = Field(description="Once failed: why the worker refused or could not evaluate the file.")
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str = Field(description="Where to poll it.")
