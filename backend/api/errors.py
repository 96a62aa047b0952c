"""Every error is JSON {"detail": ...}; 422s keep FastAPI's list of {"loc", "msg", "type"}."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from backend.domain.validation import InvalidRequest, echo

log = logging.getLogger("idlab.api")


def reject(errors: Iterable[dict]) -> RequestValidationError:
    """The exception FastAPI answers with 422 {"detail": errors}."""
    return RequestValidationError(list(errors))


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # The echoed input can hold NaN or huge values (Python's JSON parser accepts NaN): made safe.
    detail = []
    for e in exc.errors():
        entry = {"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg"),
                 "input": echo(e.get("input"))}
        if e.get("ctx"):
            entry["ctx"] = echo(e["ctx"])
        detail.append(entry)
    return JSONResponse(status_code=422, content={"detail": detail})


async def invalid_in_domain(request: Request, exc: InvalidRequest) -> JSONResponse:
    """What the domain refused (an experiment's grid, say), answered as FastAPI answers invalid input."""
    return await invalid_request(request, reject(exc.errors))


async def database_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
    log.error("database error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(status_code=503, content={"detail": "the database is unavailable; try again shortly"})


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(status_code=500, content={"detail": "internal error; the server log has the details"})


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(InvalidRequest, invalid_in_domain)
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(Exception, internal_error)
