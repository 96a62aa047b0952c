"""Fixtures of the browser tests: a real lab (`idlab serve`: API, worker, reaper) and Debian's Chromium.

Chromium is driven by Playwright, launched from /usr/bin/chromium (never `playwright install`:
nothing is downloaded). A missing Chromium is a failure with the command that installs it,
not a skip. Every page's requests are recorded; a test fails if a page asked any host but
the lab's server, threw an uncaught exception, or broke the lab's Content-Security-Policy
(a refused style or image breaks plotly.js silently: the page's `securitypolicyviolation`
events are recorded, each with the directive and what it refused).

Screenshots of every page are saved to artifacts/screenshots/ (CI keeps that folder).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.lab.lab_processes import wait_for

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("IDLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
INSTALL_HINT = ("apt-get update && apt-get install -y chromium chromium-driver  "
                "(and `pip install playwright`; never `playwright install`)")
LAB_START_SECONDS = 240
VIEWPORT = {"width": 1440, "height": 1000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """`idlab serve` on a free port with a fresh data dir (SQLite, the filesystem broker, one worker).

    `env`: settings of this lab on top of the tests' environment (e.g. IDLAB_API_TOKEN).
    """

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "serve.log"
        overrides = env or {}
        env = {k: v for k, v in os.environ.items()
               if k not in ("IDLAB_DATABASE_URL", "IDLAB_BROKER_URL", "IDLAB_API_TOKEN")}
        # Progress in the runs table comes with heartbeats: send them often.
        env.update({"IDLAB_HEARTBEAT_SECONDS": "1", "PYTHONUNBUFFERED": "1", **overrides})
        with open(self.log_path, "wb") as log:   # the child writes to its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "idlab.launchers.cli", "serve", "--data-dir", str(data_dir),
                 "--port", str(self.port)],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.http = httpx.Client(base_url=self.url, timeout=30)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{(self.data_dir / 'idlab.db').resolve()}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + LAB_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"`idlab serve` exited with {self.process.returncode}:\n{self.output()}")
            try:
                health = self.http.get("/api/health").json()
                if health.get("workers_alive", 0) >= 1:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        pytest.fail(f"the lab did not start (API with a live worker) within {LAB_START_SECONDS} s:\n{self.output()}")

    def get(self, path: str, **params):
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body=None):
        response = self.http.post(path, json=body)
        assert response.status_code in (200, 201), f"POST {path}: {response.status_code} {response.text}"
        return response.json()

    def wait(self, condition, timeout: float, what: str, interval: float = 0.3):
        try:
            return wait_for(condition, timeout, what, interval)
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}\n--- lab log ---\n{self.output()}") from None

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)    # serve stops its API and worker
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    print(f"\nbrowser-test screenshots: {SCREENSHOTS}")
    return SCREENSHOTS


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Lab:
    lab = Lab(tmp_path_factory.mktemp("ui-lab"))
    try:
        lab.wait_ready()
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def playwright():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it with  {INSTALL_HINT}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"Python playwright is missing: pip install playwright  ({INSTALL_HINT})")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


#: Reports each Content-Security-Policy violation of a page to the test (exposed as __idlabCspViolation).
CSP_LISTENER = """document.addEventListener("securitypolicyviolation", (e) => window.__idlabCspViolation(
    `${location.pathname}${location.hash}: ${e.effectiveDirective} refused ${e.blockedURI || "an inline one"}`
    + ` (${e.sourceFile || "the page"}:${e.lineNumber})`));"""


class PageRecorder:
    """Every request a page makes, those the policy stopped in the browser, its uncaught exceptions and
    its CSP violations."""

    def __init__(self, origin: str):
        self.origin = urlparse(origin).netloc
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.violations: list[str] = []

    def watch(self, context) -> None:
        """Record what every page of `context` does; call before its first page."""
        context.on("request", lambda request: self.requests.append(request.url))
        context.on("requestfailed", lambda request: request.failure == "csp" and self.blocked.append(request.url))
        context.expose_function("__idlabCspViolation", lambda violation: self.violations.append(violation))
        context.add_init_script(CSP_LISTENER)

    def foreign(self) -> list[str]:
        """Requests sent to another host (one the policy stopped never left the browser: a violation)."""
        return [url for url in self.requests if url not in self.blocked
                and urlparse(url).scheme not in ("data", "blob", "about") and urlparse(url).netloc != self.origin]


@pytest.fixture
def recorder(lab) -> PageRecorder:
    return PageRecorder(lab.url)


@pytest.fixture
def page(browser, lab, recorder):
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    recorder.watch(context)
    page = context.new_page()
    page.on("pageerror", lambda error: recorder.errors.append(str(error)))
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not recorder.foreign(), f"pages asked hosts other than the lab's server: {recorder.foreign()}"
    assert not recorder.errors, f"uncaught errors in the page: {recorder.errors}"
    assert not recorder.violations, f"the Content-Security-Policy refused: {recorder.violations}"
