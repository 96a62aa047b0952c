"""FastAPI dependencies: everything comes from the app that serves the request, never from a global,
so that several apps (tests, on different databases) can live in one process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from backend.domain.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_sessionmaker(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessionmaker


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, closed (and rolled back if uncommitted) when the request ends."""
    with request.app.state.sessionmaker() as session:
        yield session


def get_celery(request: Request) -> Celery:
    return request.app.state.celery


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
SessionmakerDep = Annotated[sessionmaker[Session], Depends(get_sessionmaker)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
