"""The OpenAPI pages, /docs (Swagger UI) and /redoc (ReDoc), with their assets served by the lab.

FastAPI's own pages load Swagger UI and ReDoc from a CDN; here the files come from the installed
`fastapi-offline` package (fastapi_offline/static: swagger-ui-bundle.js, swagger-ui.css,
redoc.standalone.js, favicon.png), served at /docs-assets/. So the pages work without a network
and load nothing from another host, as the dashboard does (plotly.js: backend.api.frontend).

Swagger UI starts from an inline script that FastAPI writes into the page; the Content-Security-
Policy allows that exact script by its hash (`inline_script_hashes`), nothing else inline.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS_ROUTE, REDOC_ROUTE, ASSETS_ROUTE = "/docs", "/redoc", "/docs-assets"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def assets_dir() -> Path:
    """The folder of the installed fastapi-offline package that holds Swagger UI's and ReDoc's files."""
    return Path(str(importlib.resources.files("fastapi_offline") / "static"))


def mount_docs(app: FastAPI) -> list[str]:
    """Serve /docs, /redoc and their assets; returns the CSP hashes of the pages' inline scripts.

    The app must be built with docs_url=None and redoc_url=None (FastAPI's CDN pages), and this
    called before the dashboard's catch-all mount at /.
    """
    swagger = get_swagger_ui_html(
        openapi_url=app.openapi_url, title=f"{app.title} · API",
        swagger_js_url=f"{ASSETS_ROUTE}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_ROUTE}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_ROUTE}/favicon.png",
        # No OAuth flow to redirect back from; no badge from the online validator (another host).
        oauth2_redirect_url=None, swagger_ui_parameters={"validatorUrl": None}).body
    redoc = get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} · ReDoc",
                           redoc_js_url=f"{ASSETS_ROUTE}/redoc.standalone.js",
                           redoc_favicon_url=f"{ASSETS_ROUTE}/favicon.png", with_google_fonts=False).body

    @app.get(DOCS_ROUTE, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger)

    @app.get(REDOC_ROUTE, include_in_schema=False)
    def redoc_page() -> HTMLResponse:
        return HTMLResponse(redoc)

    app.mount(ASSETS_ROUTE, StaticFiles(directory=assets_dir()), name="docs-assets")
    return inline_script_hashes(swagger) + inline_script_hashes(redoc)


def inline_script_hashes(html: bytes) -> list[str]:
    """'sha256-…' of each inline <script> of the page, as a CSP script-src accepts it."""
    return [f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
            for body in _INLINE_SCRIPT.findall(html.decode())]
