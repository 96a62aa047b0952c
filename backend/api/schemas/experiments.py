"""Experiments: a base config × a grid × seeds (+ a baseline), their lists and their summary.

An experiment of kind "search" sweeps the grid fields other than d, and searches d itself
(backend/domain/analysis/search.py): its `search` parameters replace a grid of d.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from backend.api.schemas.common import Page, RunConfigJSON
from backend.api.schemas.runs import RunRole, RunStatus
from backend.api.schemas.tags import NOTES_DESCRIPTION, TAGS_DESCRIPTION
from backend.domain.analysis.search import STATUSES as SEARCH_STATUSES

MAX_GRID_VALUES = 100
MAX_SEEDS = 100

Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]
GridValues = Annotated[list[Any], Field(min_length=1, max_length=MAX_GRID_VALUES)]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# Printable text only: names end up in files, CSV cells and Postgres (which refuses NUL).
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _accuracy_or_flag(value: bool | float | None) -> bool | float | None:
    if isinstance(value, float) and not 0 < value <= 1:
        raise ValueError("a global baseline is an accuracy in (0, 1], e.g. 1.0 for MNIST")
    return value


Baseline = Annotated[bool | float | None, AfterValidator(_accuracy_or_flag)]
Kind = Literal["grid", "search"]
SearchStatus = Literal[SEARCH_STATUSES]  # type: ignore[valid-type]
MAX_SEARCH_ROUNDS = 100
MAX_D = 10_000_000


class SearchParameters(BaseModel):
    """An automatic search for d_int90 in place of a grid of d: per group, d is doubled from d_start
    until the mean accuracy over the seeds reaches 0.9 × baseline, then bisected on a log scale."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [
        {"d_start": 8, "tolerance": 0.1, "d_max": 100_000, "max_rounds": 30}]})

    d_start: int = Field(8, ge=1, le=MAX_D, description=(
        "The first d evaluated. It is doubled until the threshold is reached (halved, if d_start reaches it at once)."))
    tolerance: float = Field(0.1, gt=0, le=10, description=(
        "Relative width at which a group is decided: bisection stops when hi / lo ≤ 1 + tolerance "
        "(or hi − lo ≤ 1), d_int90 lying in (lo, hi]."))
    d_max: int = Field(20_000, ge=1, le=MAX_D, description=(
        "The largest d evaluated: a group that falls short of the threshold at d_max stops, not reached. "
        "Every run is validated at d_max too (a dense P or RFF's B grows with d)."))
    max_rounds: int = Field(30, ge=1, le=MAX_SEARCH_ROUNDS, description=(
        "Rounds per group at most (each round: one d, every seed); a group still undecided then stops "
        "with its bracket so far."))


class ExperimentCreate(BaseModel):
    # NaN and inf refused by the schema, as in RunConfig (a global baseline, a search's tolerance).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [{
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
    search: SearchParameters | None = Field(None, description=(
        "Search d automatically instead of sweeping a grid of d (the experiment's kind is then \"search\"): "
        "the grid must not contain d, and a baseline is required (its 90 % is the threshold searched for). "
        "Every other grid field makes a group searched on its own; every d evaluated runs every seed. "
        "Rounds are queued as the previous ones finish."))


class BaselineOut(BaseModel):
    mode: Literal["individual", "global"] | None
    value: float | None = Field(description="The global accuracy; null for an individual baseline.")


class ExperimentOut(BaseModel):
    id: int
    name: str
    kind: Kind = Field(description="\"grid\": the runs of base × grid × seeds; \"search\": d is searched per group.")
    search: SearchParameters | None = Field(description="The search's parameters (kind \"search\"), else null.")
    created_at: datetime
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: list[int]
    baseline: BaselineOut
    run_count: int
    counts: dict[str, int] = Field(description="Runs per status.")
    archived: bool = Field(False, description="Hidden, with its runs, from the lists unless asked for "
                                              "(`archived=true|all`).")
    tags: list[str] = Field(default_factory=list, description=TAGS_DESCRIPTION)
    notes: str = Field("", description=NOTES_DESCRIPTION)


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
    n: int = Field(description="Succeeded runs with a test accuracy at this d (the seeds behind the mean).")
    model_bytes: float | None = Field(None, description="Mean size of these runs' model files (subspace runs).")


class ExcludedRuns(BaseModel):
    """Finished runs of a group that are not in its curve (counted, never silently dropped)."""

    diverged: int
    failed: int
    cancelled: int
    no_accuracy: int = Field(description="Succeeded runs that reported no finite test accuracy.")


class SummaryGroup(BaseModel):
    """One curve: the runs sharing the values of every grid field except d (and seed).

    Also carries the grid fields' values themselves, e.g. "augmentation": "rff".
    """

    model_config = ConfigDict(extra="allow")

    points: list[SummaryPoint]
    d_int90: int | float | None = Field(description="The smallest grid d whose mean reaches the threshold.")
    d_int90_interpolated: float | None = Field(
        description="Where the mean curve crosses the threshold, interpolated linearly in log d between the two "
                    "grid points that bracket it.")
    d_int90_interval: list[float | None] | None = Field(
        description="[lo, hi]: the confidence interval of the interpolated crossing (d_int90_method); hi null: "
                    "not reached within the grid; lo at the smallest d: ≤ d_min. Null without a baseline, or "
                    "when no d has two runs.")
    d_int90_method: str = Field(description="How the interval is drawn: student_t (a Student-t draw of each "
                                            "mean) or seed_bootstrap. See docs/statistics.md.")
    d_int90_at_min: bool = Field(description="The smallest d already reaches the threshold: d_int90 is ≤ d_min "
                                             "(an upper bound).")
    d_int90_not_reached: bool = Field(description="No d's mean reaches the threshold: d_int90 > the largest d.")
    baseline: float | None
    threshold: float | None
    D: int | None
    network_bytes: int | None = Field(None, description="θ_D as float32: D × 4 bytes.")
    d_int90_model_bytes: float | None = Field(None, description=(
        "Mean model-file size of the runs at d_int90: the network stored as its config, seed and θ_d."))
    d_int90_compression: float | None = Field(None, description="network_bytes / d_int90_model_bytes.")
    counts: dict[str, int] = Field(description="The group's runs per status.")
    excluded: ExcludedRuns
    not_converged: bool = Field(description="Some succeeded run's best test accuracy came at its last epoch: it "
                                            "was still improving, so more epochs could move the curve.")
    not_converged_run_ids: list[int]
    search: SearchStateOut | None = Field(None, description="Kind \"search\": the group's rounds, bracket and status.")


class SearchRoundOut(BaseModel):
    round: int
    d: int
    run_ids: list[int]
    mean: float | None = Field(description="Mean final test accuracy over the round's seeds (null until they finish).")
    n: int = Field(description="Seeds with an accuracy.")
    reached: bool | None = Field(description="Whether the mean reached the threshold (a diverged seed: no); "
                                             "null while the round runs.")
    diverged: int = 0


class SearchStateOut(BaseModel):
    """Where one group's search stands."""

    status: SearchStatus = Field(description="searching: a round is queued or running; decided: the bracket is "
                                             "within the tolerance; stopped: d_max or max_rounds was hit (see "
                                             "reason); blocked: a run failed or was cancelled — retry it to go on.")
    reason: str | None
    decided: bool
    bracket: list[int | None] = Field(description="[lo, hi]: the largest d short of the threshold and the smallest "
                                                  "reaching it (null: not known yet); d_int90 lies in (lo, hi].")
    threshold: float | None
    rounds: list[SearchRoundOut]


class SummaryOut(BaseModel):
    kind: Kind = "grid"
    search: SearchParameters | None = None
    fields: list[str] = Field(description="The grid fields the groups differ by.")
    groups: list[SummaryGroup]
    baseline: float | None = Field(description="The baseline accuracy shared by all groups (null until known, "
                                               "or when groups have different baselines).")
    threshold: float | None
    baseline_mode: Literal["individual", "global"] | None
    fraction: float
    d_int90_method: str = Field(description="The interval's method (every group's).")
    d_int90_confidence: float = Field(description="The interval's nominal coverage, e.g. 0.95.")


class PairedOut(BaseModel):
    pairs: int = Field(description="Seeds both groups ran at this d.")
    delta: float | None = Field(description="Mean of the seed-matched differences y_a − y_b.")
    ci: list[float] | None = Field(description="Its t interval at the contrast's confidence.")
    p_value: float | None = Field(description="One-sided p of a > b on the differences.")


class ContrastRow(BaseModel):
    d: int
    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    delta: float | None = Field(description="mean_a − mean_b.")
    ci: list[float] | None = Field(description="Welch's two-sided interval of Δ at the contrast's confidence.")
    df: float | None = Field(description="Welch–Satterthwaite degrees of freedom.")
    p_value: float | None = Field(description="One-sided Welch p of a > b.")
    p_adjusted: float | None = Field(description="Holm's adjustment over the d of this stratum.")
    margin: float | None
    p_equivalence: float | None = Field(description="Two one-sided tests within ±margin: the larger p.")
    equivalent: bool | None = Field(description="Both one-sided tests reject at α = 1 − confidence.")
    reason: str | None = Field(description="Why there is no interval or test (too few runs, no spread).")
    paired: PairedOut = Field(description="The seed-matched analysis, a sensitivity check beside Welch's.")


class ContrastOut(BaseModel):
    field: str
    a: Any
    b: Any
    metric: str
    confidence: float
    margin: float | None
    fields: list[str] = Field(description="The other grid fields; each combination of them is a stratum.")
    strata: list[dict[str, Any]] = Field(description=(
        "One per combination of the other grid fields: their values, and `rows`, one ContrastRow per d that "
        "both groups ran (the formulas: docs/statistics.md)."))
