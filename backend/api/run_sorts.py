"""The `sort` query parameter of the runs list: any column a researcher orders runs by, across
all pages, on SQLite and Postgres alike.

    id | created_at | status | role | experiment_id | d
    duration          seconds from start to finish, or to now while a run goes
    metrics.<key>     a final metric (idlab.metrics.FINAL), or while a run goes the latest
                      value of that key in its progress: `metrics.test_acc`
    config.<field>    a single-valued run-config field: `config.augmentation`, `config.seed`

A leading `-` sorts descending. Runs without a value come last either way; ties are
broken by id, newest first.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Float, Numeric, case, cast, func
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from backend.api.errors import reject
from backend.api.run_filters import PREFIX, json_scalar, scalar_kind
from backend.domain.models import STATUSES, Run
from backend.domain.validation import echo, error
from idlab import metrics as M
from idlab.config import RunConfig


class seconds_since(FunctionElement):
    """seconds_since(start, end): end − start in seconds, with now for a NULL end (a run still going);
    NULL for a NULL start. What backend.domain.lifecycle.duration_seconds computes, in SQL."""

    type = Float()
    inherit_cache = True
    name = "seconds_since"


@compiles(seconds_since, "sqlite")
def _seconds_since_sqlite(element, compiler, **kw):    # SQLite keeps UTC timestamps as text
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"((julianday(COALESCE({end}, 'now')) - julianday({start})) * 86400.0)"


@compiles(seconds_since, "postgresql")
def _seconds_since_postgres(element, compiler, **kw):
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"EXTRACT(EPOCH FROM COALESCE({end}, now()) - {start})"


COLUMNS = {"id": Run.id, "created_at": Run.created_at, "role": Run.role, "experiment_id": Run.experiment_id,
           "d": Run.d, "status": case({status: rank for rank, status in enumerate(STATUSES)}, value=Run.status),
           "duration": seconds_since(Run.started_at, Run.finished_at)}
METRICS_PREFIX = "metrics."
SORTABLE_METRICS = M.FINAL


def sort_order(sort: str) -> list[ColumnElement]:
    """ORDER BY clauses for `sort`; 422 naming the parameter when it names nothing sortable."""
    name = sort.removeprefix("-")
    expression = _expression(name)
    if expression is None:
        raise reject([error(("query", "sort"), f"cannot sort runs by {name!r}: use one of {', '.join(COLUMNS)}, "
                            f"{METRICS_PREFIX}<key> (a final metric: {', '.join(SORTABLE_METRICS)}) or "
                            f"{PREFIX}<field> (a single-valued run-config field), '-' first for descending",
                            input_=echo(sort))])
    direction = expression.desc() if sort.startswith("-") else expression.asc()
    if name == "id":
        return [direction]
    return [direction.nulls_last(), Run.id.desc()]


def _expression(name: str) -> ColumnElement | None:
    if name in COLUMNS:
        return COLUMNS[name]
    if name.startswith(METRICS_PREFIX) and name.removeprefix(METRICS_PREFIX) in SORTABLE_METRICS:
        key = name.removeprefix(METRICS_PREFIX)
        return func.coalesce(cast(Run.final_metrics[key].as_string(), Numeric),
                             cast(Run.progress[key].as_string(), Numeric))
    if name.startswith(PREFIX):
        info = RunConfig.model_fields.get(name.removeprefix(PREFIX))
        kind = scalar_kind(info.annotation)[0] if info is not None else None
        if kind in (int, float):
            # NUMERIC, not INTEGER or REAL: no stored number (e.g. a train_size of 3e9 from before the
            # bounds) can overflow the cast and fail the sort, on Postgres or SQLite.
            return cast(Run.config[name.removeprefix(PREFIX)].as_string(), Numeric)
        if kind is not None:
            return json_scalar(name.removeprefix(PREFIX), kind)
    return None
