"""Experiments: a base config × a grid × seeds (+ a baseline), their lists and their summary."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from backend.schemas.common import Page, RunConfigJSON
from backend.schemas.runs import RunRole, RunStatus

MAX_GRID_VALUES = 100
MAX_SEEDS = 100

Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]
GridValues = Annotated[list[Any], Field(min_length=1, max_length=MAX_GRID_VALUES)]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# Printable text only: names end up in files, CSV cells and Postgres (which refuses NUL).
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _accuracy_or_flag(value: bool | float | None) -> bool | float | None:
    if isinstance(value, float) and not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError("a global baseline is an accuracy in (0, 1], e.g. 1.0 for MNIST")
    return value


Baseline = Annotated[bool | float | None, AfterValidator(_accuracy_or_flag)]


class ExperimentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "mnist fc: linear vs power vs rff",
        "base": {"dataset": "mnist", "model": "fc", "projection": "fastfood", "epochs": 10},
        "grid": {"augmentation": ["linear", "power", "rff"], "d": [100, 300, 1000]},
        "seeds": [0, 1, 2],
        "baseline": True,
    }]})

    name: Name
    base: RunConfigJSON = Field(default_factory=dict, description="Run-config fields shared by every run; "
                                "it need not be valid alone (the grid may complete it), every expanded run must be.")
    grid: dict[FieldName, GridValues] = Field(default_factory=dict, max_length=20, description=(
        "Any run-config field → the values to sweep; one run per combination and seed."))
    seeds: list[Seed] | None = Field(None, min_length=1, max_length=MAX_SEEDS, description=(
        "Seeds of every grid point (default: base.seed, else [0])."))
    baseline: Baseline = Field(False, description=(
        "true: also queue one direct-training run per seed (the 'individual' baseline); "
        "a number: a global baseline accuracy (e.g. 1.0 for MNIST); false: none."))


class BaselineOut(BaseModel):
    mode: Literal["individual", "global"] | None
    value: float | None = Field(description="The global accuracy; null for an individual baseline.")


class ExperimentOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: list[int]
    baseline: BaselineOut
    run_count: int
    counts: dict[str, int] = Field(description="Runs per status.")


class ExperimentCreated(ExperimentOut):
    run_ids: list[int]
    warnings: list[str] = Field(default_factory=list)


class RunBrief(BaseModel):
    id: int
    status: RunStatus
    role: RunRole


class ExperimentDetail(ExperimentOut):
    run_ids: list[int]
    runs: list[RunBrief]


class ExperimentPage(Page[ExperimentOut]):
    pass


class SummaryPoint(BaseModel):
    d: int | float
    mean: float
    std: float
    n: int


class SummaryGroup(BaseModel):
    """One curve: the runs sharing the values of every grid field except d (and seed).

    Also carries the grid fields' values themselves, e.g. "augmentation": "rff".
    """

    model_config = ConfigDict(extra="allow")

    points: list[SummaryPoint]
    d_int90: int | float | None
    d_int90_interpolated: float | None
    d_int90_interval: list[float | None] | None
    baseline: float | None
    threshold: float | None
    D: int | None
    counts: dict[str, int]


class SummaryOut(BaseModel):
    fields: list[str] = Field(description="The grid fields the groups differ by.")
    groups: list[SummaryGroup]
    baseline: float | None = Field(description="The baseline accuracy shared by all groups (null until known, "
                                               "or when groups have different baselines).")
    threshold: float | None
    baseline_mode: Literal["individual", "global"] | None
    fraction: float
