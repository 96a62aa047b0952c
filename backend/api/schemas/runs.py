"""Runs as the API shows them, their metric series and their distributions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.api.schemas.common import Page, RunConfigJSON
from backend.api.schemas.tags import NOTES_DESCRIPTION, TAGS_DESCRIPTION
from backend.domain import lifecycle
from backend.domain.models import STATUSES, Run
from backend.domain.tags import tags_of
from idlab.config import RunConfig
from idlab.metrics import json_safe

RunStatus = Literal[STATUSES]  # type: ignore[valid-type]
RunRole = Literal["member", "baseline"]


class RunOut(BaseModel):
    id: int
    status: RunStatus
    config: RunConfigJSON = Field(description="The full run configuration, defaults filled in (in a list "
                                              "asked for `config_fields`, only those fields).")
    experiment_id: int | None
    role: RunRole = Field(description="`member` of an experiment's grid, or its direct-training `baseline`.")
    attempt: int = Field(description="Executions charged against max_attempts: each claim counts; a hand-back "
                                     "at a worker's shutdown gives its attempt back, and a retry starts again at 0.")
    worker: str | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    duration_seconds: float | None = Field(description="Running time so far, or until it finished.")
    D: int | None = Field(description="Parameters of the network.")
    k: int | None = Field(description="Dimension of the augmented features φ(θ_d) (D for direct training).")
    d: int | None = Field(description="Trained dimensions (D for direct training).")
    progress: dict[str, Any] = Field(description="While it runs: its phase (preparing, training, evaluating), "
                                                 "latest step, epoch and metric values.")
    final_metrics: dict[str, Any]
    error: str | None
    cancel_requested: bool
    batch_id: str | None = Field(None, description="The batch its latest execution trained in, with the runs of "
                                                   "`GET /api/runs?batch_id=…`; null when it trained alone.")
    archived: bool = Field(False, description="Hidden from the runs list unless asked for (`archived=true|all`). "
                                              "The runs of an archived experiment are hidden too, whatever theirs.")
    tags: list[str] = Field(default_factory=list, description=TAGS_DESCRIPTION)
    notes: str = Field("", description=NOTES_DESCRIPTION)
    warnings: list[str] = Field(default_factory=list, description="Valid but questionable choices in the config.")

    @classmethod
    def of(cls, run: Run, extra_warnings: list[str] | None = None,
           config_fields: list[str] | None = None) -> RunOut:
        """`config_fields` keeps only those fields of the config (a table that shows a few of them)."""
        # model_construct: the stored config was validated on the way in; warnings only read two fields.
        warnings = RunConfig.model_construct(**run.config).warnings + list(extra_warnings or [])
        config = run.config if config_fields is None else {f: run.config[f] for f in config_fields if f in run.config}
        return cls(
            id=run.id, status=run.status, config=config, experiment_id=run.experiment_id, role=run.role,
            attempt=run.attempt, worker=run.worker, created_at=run.created_at, queued_at=run.queued_at,
            started_at=run.started_at, finished_at=run.finished_at, heartbeat_at=run.heartbeat_at,
            duration_seconds=lifecycle.duration_seconds(run), D=run.D, k=run.k, d=run.d,
            progress=json_safe(run.progress or {}), final_metrics=json_safe(run.final_metrics or {}), error=run.error,
            cancel_requested=run.cancel_requested, batch_id=run.batch_id, archived=bool(run.archived),
            tags=tags_of(run), notes=run.notes or "", warnings=warnings,
        )


class RunPage(Page[RunOut]):
    pass


#: Which runs or experiments a list shows: not archived (the default), archived, or all.
ArchivedFilter = Literal["false", "true", "all"]


class SeriesOut(BaseModel):
    steps: list[int] = Field(description="x: the global training step of each point.")
    values: list[float]
    epochs: list[int]
    total: int = Field(description="Points of the series in the requested x range, before downsampling.")
    downsampled: bool


class MetricsOut(BaseModel):
    run_id: int
    method: Literal["minmax", "lttb"]
    max_points: int
    x_min: float | None
    x_max: float | None
    series: dict[str, SeriesOut] = Field(description="One entry per metric key (see idlab.metrics).")
    last_event_id: int = Field(description="Largest point id at the time of the query: open "
                                           "/runs/{id}/events?last_event_id=… to receive only what follows.")


class DistributionsOut(BaseModel):
    """Histograms of P per feature block, and of θ_d, before and after training (worker/subspace/statistics)."""

    model_config = ConfigDict(extra="allow")

    run_id: int
    created_at: datetime
    P: dict[str, Any] = Field(description='{block: {"edges": [...], "initial": {"counts", "n", "mean", "std", '
                                          '"min", "max", "abs_mean"}, "trained": {...} | null}}')
    theta_d: dict[str, Any] | None = Field(None, description="The same for θ_d.")
    B: dict[str, Any] | None = Field(None, description="The same for the RFF matrices B (trained with train_rff_b).")
