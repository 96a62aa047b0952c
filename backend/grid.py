"""Expanding an experiment request into validated runs: base × grid × seeds (+ baselines).

Every expanded config is validated (the base alone need not be: the grid may
complete it). An error points at what the researcher wrote — `grid.<field>[i]`,
`seeds[i]` or `base.<field>` — and names the grid point it occurred at. Either
every run is valid, or nothing is stored.

Individual baselines train all D weights (method `direct`): one run per seed and
per combination of the grid fields that matter to direct training (e.g. `model`
or `lr`, not `d` or `augmentation`); the subspace-only fields are left out of
their config.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

from pydantic import ValidationError

from backend.schemas.experiments import ExperimentCreate
from backend.settings import Settings
from backend.validation import Loc, check_run_config, config_errors, echo, error, reject
from idlab.config import RunConfig

MEMBER, BASELINE = "member", "baseline"
MAX_REPORTED_ERRORS = 20

#: Fields that mean nothing to direct training of all D weights.
SUBSPACE_ONLY = frozenset({
    "method", "projection", "augmentation", "d", "p_init", "p_scale", "normalize_p", "train_p",
    "theta_d_init", "theta_d_std", "use_theta0", "power_orders", "power_coefs", "rff_features",
    "rff_scale", "rff_amplitude", "rff_per_tensor",
})


@dataclass
class PlannedRun:
    config: RunConfig
    role: str


@dataclass
class Plan:
    runs: list[PlannedRun]
    base: dict            # as stored: validated values of the fields the request set
    grid: dict            # as stored: validated values
    seeds: list[int]
    baseline: dict        # {"mode": "individual" | "global" | None, "value": float | None}


def plan_experiment(request: ExperimentCreate, settings: Settings) -> Plan:
    """The runs of an experiment request; raises RequestValidationError (422) if any is invalid."""
    base, grid = dict(request.base), dict(request.grid)
    seeds = request.seeds if request.seeds is not None else [base.get("seed", 0)]
    base.pop("seed", None)                                  # `seeds` decides
    for name in grid:
        base.pop(name, None)                                # the grid decides
    individual = request.baseline is True
    baseline_grid = {name: values for name, values in grid.items() if name not in SUBSPACE_ONLY}

    errors = _check_shape(request, grid, seeds, individual, baseline_grid, settings)
    if errors:
        raise reject(errors)

    runs: list[PlannedRun] = []
    normalized: dict[str, dict[int, object]] = {name: {} for name in grid}
    collector = _Errors()
    for role, fields in ((MEMBER, grid), (BASELINE, baseline_grid if individual else None)):
        if fields is None:
            continue
        shared = base if role == MEMBER else {k: v for k, v in base.items() if k not in SUBSPACE_ONLY} | {"method": "direct"}
        names = list(fields)
        for combo in itertools.product(*(range(len(fields[name])) for name in names)):
            point = {name: fields[name][i] for name, i in zip(names, combo)}
            for seed_index, seed in enumerate(seeds):
                try:
                    config = check_run_config({**shared, **point, "seed": seed}, settings)
                except ValidationError as exc:
                    collector.add(exc, _locator(base, dict(zip(names, combo)), seed_index), point)
                    continue
                runs.append(PlannedRun(config, role))
                for name, i in zip(names, combo):
                    normalized[name][i] = getattr(config, name)
    if collector.errors:
        raise reject(collector.errors)

    stored_grid = {name: [_plain(normalized[name][i]) for i in range(len(values))] for name, values in grid.items()}
    duplicates = [error(("body", "grid", name, i), f"duplicate value {value!r}: it appears earlier in grid.{name}", input_=echo(value))
                  for name, values in stored_grid.items() for i, value in enumerate(values)
                  if _key(value) in {_key(v) for v in values[:i]}]
    if duplicates:
        raise reject(duplicates)
    first = runs[0].config
    stored_base = {name: _plain(getattr(first, name)) for name in base if name in RunConfig.model_fields}
    if individual:
        mode = {"mode": "individual", "value": None}
    elif request.baseline not in (None, False):
        mode = {"mode": "global", "value": float(request.baseline)}
    else:
        mode = {"mode": None, "value": None}
    return Plan(runs=runs, base=stored_base, grid=stored_grid, seeds=list(seeds), baseline=mode)


def _check_shape(request: ExperimentCreate, grid: dict, seeds: list, individual: bool, baseline_grid: dict,
                 settings: Settings) -> list[dict]:
    """Errors that need no config validation: unknown grid fields, repeated seeds, too many runs."""
    errors = []
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
    if members + baselines > settings.max_experiment_runs:
        errors.append(error(("body", "grid"), f"this experiment would queue {members + baselines} runs "
                            f"({members} grid runs + {baselines} baselines), more than the limit of "
                            f"{settings.max_experiment_runs}: sweep fewer values or seeds", "too_many_runs"))
    return errors


def _locator(base: dict, combo: dict[str, int], seed_index: int):
    """Where an error on a field lies in the request: the grid value, the seed, or the base."""
    def locate(name: str) -> Loc:
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

    def add(self, exc: ValidationError, locate, point: dict) -> None:
        for entry in config_errors(exc, locate, ctx={"grid_point": {k: echo(v) for k, v in point.items()}} if point else None):
            key = json.dumps([entry["loc"], entry["msg"]], default=str)
            if key not in self._seen and len(self.errors) < MAX_REPORTED_ERRORS:
                self._seen.add(key)
                self.errors.append(entry)


def _plain(value):
    """A config value as JSON stores it (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


def _key(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)
