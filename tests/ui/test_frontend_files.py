"""The dashboard as files the backend serves: mounted at /, plotly.js from the installed package,
nothing from another host. No browser needed (see test_browser.py for that)."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from backend.api.frontend import FRONTEND_DIR, mount_frontend, plotly_js_path

#: Anything that would make a page load ask another host: absolute URLs, protocol-relative ones, CSS imports.
FOREIGN = re.compile(r"""(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(\s*["']?(https?:|//)""", re.I)


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()

    @app.get("/api/ping")
    def ping() -> dict:
        return {"ok": True}

    assert mount_frontend(app)
    return TestClient(app)


def test_the_ui_is_served_at_the_root(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/js/app.js">' in page.text
    script = client.get("/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/api/ping").json() == {"ok": True}, "routes added before the mount still answer"


def test_plotly_comes_from_the_installed_package(client):
    path = plotly_js_path()
    assert path is not None and path.name == "plotly.min.js", "pip install plotly"
    response = client.get("/vendor/plotly.min.js")
    assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    assert len(response.content) == path.stat().st_size
    assert client.head("/vendor/plotly.min.js").status_code == 200


def test_no_file_of_the_ui_refers_to_another_host():
    offenders = []
    for path in sorted(FRONTEND_DIR.rglob("*")):
        if path.suffix in (".html", ".js", ".css"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if FOREIGN.search(line):
                    offenders.append(f"{path.relative_to(FRONTEND_DIR)}:{number}: {line.strip()}")
    assert not offenders, "the UI must load nothing from another host (no CDN, no web fonts):\n" + "\n".join(offenders)


def test_nothing_is_mounted_without_an_index(tmp_path):
    app = FastAPI()
    assert mount_frontend(app, tmp_path) is False
    assert all(getattr(route, "path", "") != "/vendor/plotly.min.js" for route in app.routes)
