"""Serving the browser UI: `frontend/` at /, and plotly.js from the installed `plotly` package.

The UI is plain ES modules, HTML and CSS (no build step), so the backend serves the
folder as it is. plotly.js is never fetched from a CDN: the `plotly` Python package
ships the minified bundle (plotly/package_data/plotly.min.js), served here at
/vendor/plotly.min.js.

`create_app` calls `mount_frontend(app)` after including the API routers: the mount
at / matches every path, so it must come last (Starlette tries routes in order).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

FRONTEND_DIR = Path(__file__).resolve().parents[2] / "frontend"
PLOTLY_ROUTE = "/vendor/plotly.min.js"
VENDOR_CACHE = "public, max-age=86400"


def plotly_js_path() -> Path | None:
    """The plotly.min.js bundled with the installed plotly package, or None when plotly is missing."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path
    return None


def mount_frontend(app: FastAPI, directory: Path | str | None = None) -> bool:
    """Serve `directory` (default: the repository's frontend/) at / and plotly.js at /vendor/plotly.min.js.

    Returns False, mounting nothing, when the folder has no index.html (an API-only install).
    Call it after every API route has been added.
    """
    folder = Path(directory) if directory is not None else FRONTEND_DIR
    if not (folder / "index.html").is_file():
        return False

    @app.api_route(PLOTLY_ROUTE, methods=["GET", "HEAD"], include_in_schema=False)
    def plotly_js() -> FileResponse:
        path = plotly_js_path()
        if path is None:
            raise HTTPException(404, "plotly.js comes from the `plotly` Python package: pip install plotly")
        return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": VENDOR_CACHE})

    app.mount("/", StaticFiles(directory=folder, html=True), name="frontend")
    return True
