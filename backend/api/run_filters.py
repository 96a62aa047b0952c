"""`config.<field>=value` query parameters: filtering runs on their stored run config; and
`config_fields`, which trims the listed configs to the fields a client shows.

The value is parsed with the field's own type and constraints (RunConfig), so
`config.d=750` compares numbers and `config.train_p=true` booleans, on SQLite's
JSON_EXTRACT and Postgres' ->> alike. Repeating a parameter means "any of".
`null` matches an unset optional field (e.g. `config.rff_features=null`).
"""

from __future__ import annotations

import types
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import ColumnElement, Numeric, cast, exists, or_
from starlette.datastructures import QueryParams

from backend.api.errors import reject
from backend.domain.models import Experiment, Run
from backend.domain.validation import echo, error
from idlab.config import RunConfig

PREFIX = "config."
NULLS = ("null", "none")
INT64 = 2**63


def config_conditions(params: QueryParams) -> list[ColumnElement[bool]]:
    """SQL conditions for every config.<field> parameter; 422 naming the parameter if one is invalid."""
    conditions, errors = [], []
    for name in dict.fromkeys(k for k in params if k.startswith(PREFIX)):
        field = name.removeprefix(PREFIX)
        info = RunConfig.model_fields.get(field)
        kind, optional = scalar_kind(info.annotation) if info is not None else (None, False)
        if info is None:
            errors.append(error(("query", name), f"unknown run-config field {field!r}", input_=echo(field)))
            continue
        if kind is None:
            errors.append(error(("query", name), f"{field} holds a list: filter on single-valued fields"))
            continue
        parse = TypeAdapter(Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation)
        values, wants_null = [], False
        for raw in params.getlist(name):
            if any(ord(c) < 32 for c in raw) or len(raw) > 200:
                errors.append(error(("query", name), "control characters or over 200 characters", "value_error",
                                    echo(raw)))
                continue
            if optional and raw.lower() in NULLS:
                wants_null = True
                continue
            try:
                value = parse.validate_python(raw if kind is not bool else raw.lower())
            except ValidationError as exc:
                errors.append(error(("query", name), exc.errors()[0]["msg"], "value_error", echo(raw)))
                continue
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= INT64:
                errors.append(error(("query", name), "number out of range", "value_error", echo(raw)))
                continue
            values.append(value)
        column = json_scalar(field, kind)
        options = ([column.in_(values)] if values else []) + ([column.is_(None)] if wants_null else [])
        if options:
            conditions.append(or_(*options))
    if errors:
        raise reject(errors)
    return conditions


def archived_condition(archived: str) -> ColumnElement[bool] | None:
    """The `archived` parameter of the runs list: "false" (the default) hides archived runs and the runs
    of archived experiments, "true" shows only those, "all" both."""
    if archived == "all":
        return None
    # EXISTS rather than IN: a run without an experiment (experiment_id NULL) must count as not archived.
    hidden = or_(Run.archived.is_(True),
                 exists().where(Experiment.id == Run.experiment_id, Experiment.archived.is_(True)))
    return hidden if archived == "true" else ~hidden


def json_scalar(field: str, kind: type) -> ColumnElement:
    """The run config's `field`, read from its JSON as a `kind` (str, int, float or bool)."""
    element = Run.config[field]
    if kind is int:     # NUMERIC, not INTEGER: a stored number past 2^31 (or 2^63) must not fail the query
        return cast(element.as_string(), Numeric)
    return {str: element.as_string, float: element.as_float, bool: element.as_boolean}[kind]()


def scalar_kind(annotation) -> tuple[type | None, bool]:
    """(str | int | float | bool, whether None is allowed) of a field; (None, _) for lists and tuples."""
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        annotation = args[0] if len(args) == 1 else None
    if get_origin(annotation) is Literal:
        annotation = type(get_args(annotation)[0])
    return (annotation if annotation in (str, int, float, bool) else None), optional


def checked_config_fields(fields: list[str] | None) -> list[str] | None:
    """The `config_fields` parameter, each a RunConfig field; 422 naming any that is not."""
    if not fields:
        return None
    unknown = [field for field in fields if field not in RunConfig.model_fields]
    if unknown:
        raise reject([error(("query", "config_fields"), f"unknown run-config field {field!r}: use the "
                            "names in GET /api/config/schema", input_=echo(field)) for field in unknown])
    return list(dict.fromkeys(fields))
