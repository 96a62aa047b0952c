"""The FastAPI application: `uvicorn backend.api.app:create_app --factory`.

No application is built at import time: `create_app(settings)` builds one for the
given settings, so tests (and tools) can run several, each on its own database.
The API never imports torch or the worker (.importlinter): the engine is loaded by workers only.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool

from backend.api import errors
from backend.api.docs import mount_docs
from backend.api.events import OpenStreams
from backend.api.frontend import mount_frontend
from backend.api.guard import BrowserGuard
from backend.api.limits import RequestBodyLimit
from backend.api.routers import config, datasets, experiments, health, models, runs, tags
from backend.domain import migrate
from backend.domain.db import make_engine
from backend.domain.queue import make_celery
from backend.domain.settings import Settings, get_settings
from idlab import __version__
from idlab.config import RunConfig

DESCRIPTION = """Intrinsic Dimension Lab: launch subspace-training runs and sweeps, watch them live,
and compare projections and augmentations down to d_int90.

Every call that changes something needs `Authorization: Bearer <token>` when the server has an API token.
Errors are JSON `{"detail": ...}`; invalid input is a 422 whose `detail` lists `{"loc", "msg", "type"}`;
a request body over the server's limit (settings.max_request_bytes, 1 MiB by default) is a 413, refused before it
is parsed.
The lab answers only to its own host names (a request for another Host is a 400: settings.allowed_hosts), and a
browser's POST, PUT, PATCH or DELETE from another site is a 403; clients that are not browsers are not affected."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(migrate.upgrade, settings.database)
        engine = make_engine(settings.database)
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker(bind=engine, expire_on_commit=False)
        app.state.celery = make_celery(settings)
        app.state.open_streams = OpenStreams()
        try:
            yield
        finally:
            app.state.celery.close()
            engine.dispose()

    # /docs and /redoc are the lab's own (backend.api.docs): FastAPI's would load their assets from a CDN.
    app = FastAPI(title="idlab", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    errors.install(app)
    script_hashes = mount_docs(app)
    # Added before CORS, so CORS wraps it: a browser on an allowed origin can read the 413 too.
    app.add_middleware(RequestBodyLimit, settings=settings)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type", "Last-Event-ID"])
    # Last, so outermost: every answer, the refusals of the layers inside included, gets its headers,
    # and a foreign Host or a cross-site write is refused before anything else reads the request.
    app.add_middleware(BrowserGuard, settings=settings, script_hashes=script_hashes)

    api = APIRouter(prefix="/api")
    for module in (runs, experiments, tags, models, health, config, datasets):
        api.include_router(module.router)
    app.include_router(api)
    app.openapi = lambda: _openapi(app)

    # Last: the UI's mount at / matches every path, so /api and /docs (mounted above) must come first.
    mount_frontend(app)
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema, plus RunConfig: run configs are validated in the handlers (with the
    server's dense-P budget), so FastAPI itself never sees the model to document it."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        run_config = RunConfig.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(run_config.pop("$defs", {}))
        components["RunConfig"] = run_config
        app.openapi_schema = schema
    return app.openapi_schema
