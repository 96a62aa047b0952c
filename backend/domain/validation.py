"""Validating run configs with the server's settings, and errors that name the field.

Errors keep FastAPI's shape — {"loc": [...], "msg": ..., "type": ...} — so a client
finds the offending field the same way whether FastAPI or a handler rejected the
request. The domain raises `InvalidRequest` with such errors; the API answers it with
422 {"detail": errors} (`backend.api.errors.reject`). The worker validates the runs of a
search's next round here too, without HTTP.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from backend.domain.settings import Settings
from idlab.config import RunConfig

Loc = tuple[str | int, ...]


def error(loc: Loc, msg: str, type_: str = "value_error", input_: Any = None, ctx: dict | None = None) -> dict:
    entry: dict[str, Any] = {"type": type_, "loc": list(loc), "msg": msg, "input": input_}
    if ctx:
        entry["ctx"] = ctx
    return entry


class InvalidRequest(ValueError):
    """A request the domain refuses, with its errors in FastAPI's shape (the API answers 422)."""

    def __init__(self, errors: Iterable[dict]) -> None:
        self.errors = list(errors)
        super().__init__(self.errors)


def check_run_config(raw: Any, settings: Settings) -> RunConfig:
    """A run config validated against the lab's budgets; raises pydantic's ValidationError.

    The one entry point of the API, the CLI and the worker (the client validates with the same
    schema and the lab's budget). The schema itself refuses NaN and inf (Python's JSON parser
    accepts NaN and Infinity; Postgres' JSON does not).
    """
    return RunConfig.model_validate(raw, context=settings.validation_context())


def config_errors(exc: ValidationError, locate: Callable[[str], Loc], ctx: dict | None = None) -> list[dict]:
    """pydantic errors of a RunConfig, each loc rewritten by `locate(field)` (+ the rest of the loc)."""
    found = []
    for e in exc.errors(include_url=False, include_context=False):
        field, rest = (str(e["loc"][0]), tuple(e["loc"][1:])) if e["loc"] else ("", ())
        found.append(error((*locate(field), *rest), e["msg"], e["type"], echo(e.get("input")), ctx))
    return found


def echo(value: Any, depth: int = 0) -> Any:
    """A client's value, safe to echo in a JSON error: NaN/inf as text, strings and lists cut short."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value[:200]
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else str(value)[:40]
    if isinstance(value, (list, tuple)) and depth < 2:
        return [echo(v, depth + 1) for v in value[:20]]
    if isinstance(value, dict) and depth < 2:
        return {str(k)[:64]: echo(v, depth + 1) for k, v in list(value.items())[:20]}
    return str(value)[:200]


def from_run_problem(session, config: RunConfig) -> str | None:
    """Why the run named by p_init from_run:<id> cannot be sampled from, or None when it can: it must exist and
    have stored statistics of its P (its "statistics" artefact, what the worker reads: worker.execution)."""
    reference = config.from_run_id
    if reference is None:
        return None
    from sqlalchemy import select

    from backend.domain.models import STATISTICS_ARTIFACT, Run, RunArtifact

    what = ("use the id of a subspace run that has succeeded (its P statistics are recorded once its "
            "projection is built), or another p_init such as 'normal'")
    if not reference.isdigit() or not 1 <= int(reference) <= 2**63 - 1:
        return f"p_init {config.p_init!r}: {reference!r} is not a run id: {what}"
    run = session.get(Run, int(reference))
    if run is None:
        return f"p_init {config.p_init!r}: run {reference} does not exist: {what}"
    data = session.scalar(select(RunArtifact.data).where(RunArtifact.run_id == run.id,
                                                         RunArtifact.name == STATISTICS_ARTIFACT))
    if not isinstance(data, dict) or not data.get("P"):
        return (f"p_init {config.p_init!r}: run {reference} ({run.status}) has no stored statistics of its P to "
                f"sample from: wait until it has succeeded, or {what}")
    return None
