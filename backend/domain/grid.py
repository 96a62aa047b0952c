"""Expanding an experiment request into validated runs: base × grid × seeds (+ baselines).

Every expanded config is validated (the base alone need not be: the grid may
complete it). An error points at what the researcher wrote — `grid.<field>[i]`,
`seeds[i]` or `base.<field>` — and names the grid point it occurred at. Either
every run is valid, or nothing is stored.

Individual baselines train all D weights (method `direct`): one run per seed and
per combination of the grid fields that matter to direct training (e.g. `model`
or `lr`, not `d` or `augmentation`); the subspace-only fields are left out of
their config.

A search experiment (`search` set) sweeps the grid fields other than d: each of their
combinations is a group whose d is searched (backend/domain/analysis/search.py). What it queues
at first is its round 1 — every group at d_start × seeds — and the baselines; every run
is also validated at d_max, so that no later round can be refused (the dense-P budget,
say, grows with d). Later rounds are queued by `backend.domain.search_rounds`.

Part of the domain: the API plans an experiment with it, and the worker's search rounds
use its roles. A request is anything shaped like `ExperimentRequest` (the API's
`ExperimentCreate`); a refusal is `InvalidRequest`, which the API answers with 422.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from backend.domain.analysis.search import Parameters, max_rounds_needed
from backend.domain.settings import Settings
from backend.domain.validation import InvalidRequest, Loc, check_run_config, config_errors, echo, error
from idlab.config import RunConfig

MEMBER, BASELINE = "member", "baseline"
MAX_REPORTED_ERRORS = 20

#: Fields that mean nothing to direct training of all D weights.
SUBSPACE_ONLY = frozenset({
    "method", "projection", "augmentation", "d", "p_init", "p_scale", "normalize_p", "train_p",
    "theta_d_init", "theta_d_std", "use_theta0", "power_orders", "power_coefs", "rff_features",
    "rff_scale", "rff_amplitude", "rff_per_tensor", "rff_centered", "train_rff_b", "sparse_scope", "from_run_mean",
})


class SearchRequest(Protocol):
    """A search's parameters as the request gives them (the API's schemas.experiments.SearchParameters)."""

    d_start: int
    d_max: int

    def model_dump(self) -> dict[str, Any]: ...


class ExperimentRequest(Protocol):
    """What an experiment request says, validated in shape (the API's schemas.experiments.ExperimentCreate)."""

    base: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: list[int] | None
    baseline: bool | float | None
    search: SearchRequest | None


@dataclass
class PlannedRun:
    config: RunConfig
    role: str
    group: int | None = None   # search experiments: the index of the member's group


@dataclass
class Plan:
    runs: list[PlannedRun]
    base: dict            # as stored: validated values of the fields the request set
    grid: dict            # as stored: validated values
    seeds: list[int]
    baseline: dict        # {"mode": "individual" | "global" | None, "value": float | None}
    search: dict | None = None                        # the search parameters, for kind "search"
    groups: list[dict] = field(default_factory=list)  # kind "search": each group's grid values

    @property
    def kind(self) -> str:
        return "grid" if self.search is None else "search"


def plan_experiment(request: ExperimentRequest, settings: Settings) -> Plan:
    """The runs of an experiment request; raises InvalidRequest (the API's 422) if any is invalid."""
    base, grid = dict(request.base), dict(request.grid)
    seeds = request.seeds if request.seeds is not None else [base.get("seed", 0)]
    base.pop("seed", None)                                  # `seeds` decides
    for name in grid:
        base.pop(name, None)                                # the grid decides
    individual = request.baseline is True
    baseline_grid = {name: values for name, values in grid.items() if name not in SUBSPACE_ONLY}
    search = request.search
    # A search's members are validated at both ends of its range of d; round 1 runs d_start.
    members = grid if search is None else {
        **grid, "d": [search.d_start] + ([search.d_max] if search.d_max != search.d_start else [])}

    errors = _check_shape(request, grid, seeds, individual, baseline_grid, settings)
    if errors:
        raise InvalidRequest(errors)
    runs, normalized, groups = _planned_runs(base, members, baseline_grid if individual else None, seeds, search,
                                             settings)

    stored_grid = {name: [normalized[name][i] for i in range(len(values))] for name, values in grid.items()}
    duplicates = _duplicate_values(stored_grid)
    if duplicates:
        raise InvalidRequest(duplicates)
    first = runs[0].config
    first_stored = first.model_dump(mode="json")
    stored_base = {name: first_stored[name] for name in base if name in RunConfig.model_fields}
    plan = Plan(runs=runs, base=stored_base, grid=stored_grid, seeds=list(seeds), baseline=_baseline_mode(request))
    if search is not None:
        plan.search = search.model_dump()
        plan.groups = [{name: normalized[name][i] for name, i in zip(grid, key, strict=True)} for key in groups]
    return plan


def _planned_runs(base: dict, members: dict, baseline_grid: dict | None, seeds: list[int],
                  search: SearchRequest | None, settings: Settings) -> tuple[list[PlannedRun], dict, dict]:
    """Each member of the grid × seeds, then each baseline (`baseline_grid` None: none), validated; raises
    InvalidRequest naming every invalid one. Also returns each grid value as validated, by field and index,
    and a search's groups (the grid values but d, by index, → the group's number)."""
    runs: list[PlannedRun] = []
    normalized: dict[str, dict[int, object]] = {name: {} for name in members}
    groups: dict[tuple, int] = {}
    collector = _Errors()
    for role, fields in ((MEMBER, members), (BASELINE, baseline_grid)):
        if fields is None:
            continue
        shared = base if role == MEMBER else {k: v for k, v in base.items() if k not in SUBSPACE_ONLY} | {
            "method": "direct"}
        names = list(fields)
        for combo in itertools.product(*(range(len(fields[name])) for name in names)):
            point = {name: fields[name][i] for name, i in zip(names, combo, strict=True)}
            indices = dict(zip(names, combo, strict=True))
            for seed_index, seed in enumerate(seeds):
                try:
                    config = check_run_config({**shared, **point, "seed": seed}, settings)
                except ValidationError as exc:
                    at_d_max = search is not None and role == MEMBER and indices["d"] > 0
                    collector.add(exc, _locator(base, indices, seed_index, searched=search is not None), point,
                                  f" (at search.d_max = {search.d_max}: or lower d_max)" if at_d_max else "")
                    continue
                if search is not None and role == MEMBER:
                    if indices["d"] > 0:
                        continue                                    # d_max: validated only
                    group = groups.setdefault(tuple(i for name, i in indices.items() if name != "d"), len(groups))
                    runs.append(PlannedRun(config, role, group))
                else:
                    runs.append(PlannedRun(config, role))
                stored = config.model_dump(mode="json")          # each value as the runs row stores it
                for name, i in indices.items():
                    normalized[name][i] = stored[name]
    if collector.errors:
        raise InvalidRequest(collector.errors)
    return runs, normalized, groups


def _duplicate_values(stored_grid: dict[str, list]) -> list[dict]:
    """An error for each grid value that, validated, equals one before it in its field."""
    return [error(("body", "grid", name, i), f"duplicate value {value!r}: it appears earlier in grid.{name}",
                  input_=echo(value))
            for name, values in stored_grid.items() for i, value in enumerate(values)
            if _key(value) in {_key(v) for v in values[:i]}]


def _baseline_mode(request: ExperimentRequest) -> dict:
    if request.baseline is True:
        return {"mode": "individual", "value": None}
    if request.baseline not in (None, False):
        return {"mode": "global", "value": float(request.baseline)}
    return {"mode": None, "value": None}


def _check_shape(request: ExperimentRequest, grid: dict, seeds: list, individual: bool, baseline_grid: dict,
                 settings: Settings) -> list[dict]:
    """Errors that need no config validation: unknown grid fields, repeated seeds, too many runs;
    for a search, d in the grid or the base, a missing baseline, d_start above d_max."""
    errors = []
    search = request.search
    if search is not None:
        if "d" in request.grid:
            errors.append(error(("body", "grid", "d"), "a search chooses d itself: remove d from the grid "
                                "(the search starts at search.d_start and goes up to search.d_max)"))
        if "d" in request.base:
            errors.append(error(("body", "base", "d"), "a search chooses d itself: remove d from the base "
                                "(the search starts at search.d_start)", input_=echo(request.base["d"])))
        if request.baseline in (None, False):
            errors.append(error(("body", "baseline"), "a search needs a baseline, whose 90 % is the threshold it "
                                "looks for: true (direct-training runs) or a global accuracy such as 1.0"))
        if search.d_start > search.d_max:
            errors.append(error(("body", "search", "d_max"), f"d_max ({search.d_max}) must be at least d_start "
                                f"({search.d_start})", input_=search.d_max))
    for name in request.grid:
        if name == "seed":
            errors.append(error(("body", "grid", "seed"), "sweep seeds with `seeds`, not the grid"))
        elif name not in RunConfig.model_fields:
            errors.append(error(("body", "grid", name), f"unknown run-config field {name!r}"))
    for i, seed in enumerate(seeds):
        if seed in seeds[:i]:
            errors.append(error(("body", "seeds", i), f"seed {seed} appears twice"))
    members = math.prod(len(values) for values in grid.values()) * len(seeds)
    baselines = math.prod(len(v) for v in baseline_grid.values()) * len(seeds) if individual else 0
    if search is not None:
        if search.d_start > search.d_max:
            return errors
        rounds = search_rounds_at_most(search.model_dump())
        groups, members = members // len(seeds), members * rounds
        if members + baselines > settings.max_experiment_runs:
            errors.append(error(("body", "search", "max_rounds"), "this search could queue up to "
                                f"{members + baselines} runs ({groups} groups × {len(seeds)} seeds × {rounds} rounds "
                                f"+ {baselines} baselines), more than the limit of {settings.max_experiment_runs}: "
                                "lower max_rounds or d_max, or sweep fewer values or seeds", "too_many_runs"))
        return errors
    if members + baselines > settings.max_experiment_runs:
        errors.append(error(("body", "grid"), f"this experiment would queue {members + baselines} runs "
                            f"({members} grid runs + {baselines} baselines), more than the limit of "
                            f"{settings.max_experiment_runs}: sweep fewer values or seeds", "too_many_runs"))
    return errors


def search_rounds_at_most(search: dict) -> int:
    """The most rounds a group's search with these parameters can take (backend.domain.analysis.search)."""
    return max_rounds_needed(Parameters(**search))


def _locator(base: dict, combo: dict[str, int], seed_index: int, searched: bool = False):
    """Where an error on a field lies in the request: the grid value, the seed, or the base
    (for a search, d is search.d_start or search.d_max)."""
    def locate(name: str) -> Loc:
        if searched and name == "d":
            return ("body", "search", "d_max" if combo.get("d") else "d_start")
        if name in combo:
            return ("body", "grid", name, combo[name])
        if name == "seed":
            return ("body", "seeds", seed_index)
        return ("body", "base", name) if name else ("body", "base")
    return locate


class _Errors:
    """Distinct errors over all grid points (the same bad base value fails every one), at most 20."""

    def __init__(self) -> None:
        self.errors: list[dict] = []
        self._seen: set[str] = set()

    def add(self, exc: ValidationError, locate, point: dict, note: str = "") -> None:
        ctx = {"grid_point": {k: echo(v) for k, v in point.items()}} if point else None
        for entry in config_errors(exc, locate, ctx=ctx):
            entry["msg"] += note
            key = json.dumps([entry["loc"], entry["msg"]], default=str)
            if key not in self._seen and len(self.errors) < MAX_REPORTED_ERRORS:
                self._seen.add(key)
                self.errors.append(entry)


def _key(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)
