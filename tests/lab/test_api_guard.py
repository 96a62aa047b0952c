"""The lab's edge towards browsers (backend.api.guard, backend.api.docs): it answers only to its own host names,
refuses writes from other sites whether or not a token is set, marks every answer with its security
headers, serves the OpenAPI pages' assets itself; and `idlab serve` on a non-loopback address needs a
token and serves the names it is reached by.

The browser side (no CSP violation on any page, /docs and /redoc from the lab alone) is in
tests/ui/test_docs_pages.py and the page fixture of tests/ui/conftest.py.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from backend.api.app import create_app
from backend.api.docs import inline_script_hashes
from backend.api.frontend import FRONTEND_DIR
from backend.api.guard import BrowserGuard, split_host
from backend.domain.settings import Settings
from idlab.launchers.serve import is_loopback, served_names
from tests.lab.lab_processes import TESTCLIENT_HOSTS, free_port, wait_for

SMALL = {"dataset": "synthetic", "fc_widths": [16], "d": 20, "epochs": 1}
TOKEN = "guard-token"
CROSS_SITE = {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}


@pytest.fixture(scope="module")
def settings(sqlite_url, tmp_path_factory) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("guard"), database_url=sqlite_url,
                    broker_url=None, api_token=None, cors_origins=[], allowed_hosts=TESTCLIENT_HOSTS)


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def token(settings, monkeypatch):
    monkeypatch.setattr(settings, "api_token", TOKEN)
    return {"Authorization": f"Bearer {TOKEN}"}


def run_count(client) -> int:
    return client.get("/api/runs", params={"limit": 1}).json()["total"]


# ---- Host --------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "LocalHost:8000", "127.0.0.1", "127.0.0.1:51234",
                                  "[::1]", "[::1]:8000", "testserver"])
def test_the_lab_answers_to_localhost_names_on_any_port_and_to_the_named_hosts(client, host):
    assert client.get("/api/health", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.2:8000",
                                  "10.0.0.5", "[::2]", "localhost:http"])
def test_any_other_host_is_refused_naming_the_setting(client, host):
    """DNS rebinding: evil.example made to resolve to 127.0.0.1 still says `Host: evil.example`."""
    before = run_count(client)
    for method, path in (("GET", "/api/health"), ("GET", "/"), ("POST", "/api/runs")):
        response = client.request(method, path, json=SMALL, headers={"Host": host})
        assert response.status_code == 400, (method, path, response.text)
        detail = response.json()["detail"]
        assert "IDLAB_ALLOWED_HOSTS" in detail and host in detail
    assert run_count(client) == before


def test_a_name_in_the_setting_is_served_on_any_port(client, settings, monkeypatch):
    assert client.get("/api/health", headers={"Host": "lab.example:8443"}).status_code == 400
    monkeypatch.setattr(settings, "allowed_hosts", ["Lab.Example", "10.0.0.5", "[2001:db8::5]"])
    for host in ("lab.example:8443", "LAB.example", "10.0.0.5:8000", "[2001:db8::5]:8000", "localhost"):
        assert client.get("/api/health", headers={"Host": host}).status_code == 200, host
    assert client.get("/api/health", headers={"Host": "testserver"}).status_code == 400   # no longer listed


def test_by_default_only_localhost_names_are_served(sqlite_url, tmp_path):
    """TestClient says `Host: testserver`: an app without the setting refuses it."""
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=sqlite_url)
    assert settings.allowed_hosts == []
    with TestClient(create_app(settings)) as client:
        refused = client.get("/api/health")
        assert refused.status_code == 400 and "(now: none)" in refused.json()["detail"]
        assert client.get("/api/health", headers={"Host": "localhost:8000"}).status_code == 200


def test_a_request_without_host_is_refused(settings):
    guard = BrowserGuard(app=None, settings=settings)
    status, detail = guard.refusal("GET", {})
    assert status == 400 and "Host header" in detail


def test_host_headers_are_read_as_a_browser_writes_them():
    assert split_host("LocalHost:8000") == ("localhost", 8000)
    assert split_host("[::1]:8000") == ("::1", 8000) and split_host("[0:0:0:0:0:0:0:1]") == ("::1", None)
    assert split_host("lab.example.") == ("lab.example", None)
    assert split_host("lab.example:x") == ("", None)


def test_the_setting_reads_a_list_and_refuses_what_is_not_a_host_name(monkeypatch):
    monkeypatch.setenv("IDLAB_ALLOWED_HOSTS", "lab.example, 10.0.0.5,[2001:db8::5],")
    assert Settings(_env_file=None).allowed_hosts == ["lab.example", "10.0.0.5", "[2001:db8::5]"]
    monkeypatch.setenv("IDLAB_ALLOWED_HOSTS", '["lab.example"]')
    assert Settings(_env_file=None).allowed_hosts == ["lab.example"]
    for wrong in ("http://lab.example", "lab.example:8000", "2001:db8::5", "lab.example/path"):
        monkeypatch.setenv("IDLAB_ALLOWED_HOSTS", wrong)
        with pytest.raises(ValidationError, match="without scheme or port"):
            Settings(_env_file=None)


# ---- cross-site writes ----------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    CROSS_SITE,
    {"Sec-Fetch-Site": "cross-site"},                                   # no Origin (a form, say)
    {"Origin": "http://evil.example"},                                  # an older browser: no Sec-Fetch-*
    {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3000"},  # another port of this machine
    {"Host": "localhost:8000", "Origin": "http://localhost:3000"},      # the same, from an older browser
    {"Origin": "null"},                                                 # a sandboxed frame, a file:// page
], ids=["cross-site", "cross-site-no-origin", "foreign-origin", "same-site", "other-port", "null"])
def test_a_write_from_another_site_is_refused_with_or_without_a_token(client, settings, monkeypatch, headers):
    before = run_count(client)
    for token in (None, TOKEN):
        monkeypatch.setattr(settings, "api_token", token)
        auth = {"Authorization": f"Bearer {TOKEN}"} if token else {}
        response = client.post("/api/runs", json=SMALL, headers={**headers, **auth})
        assert response.status_code == 403, (token, response.text)
        assert response.json()["detail"].startswith("cross-site request refused")
        assert "IDLAB_CORS_ORIGINS" in response.json()["detail"]
    assert run_count(client) == before


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_every_mutating_method_is_guarded_before_routing(client, method):
    response = client.request(method, "/api/runs/1/cancel", headers=CROSS_SITE)
    assert response.status_code == 403, response.text


def test_reads_from_another_site_stay_open(client):
    assert client.get("/api/runs", headers=CROSS_SITE).status_code == 200


@pytest.mark.parametrize("headers", [
    {},                                                                     # curl, httpx, idlab.client
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},       # the dashboard's fetch
    {"Sec-Fetch-Site": "none"},                                             # typed by the user
    {"Origin": "http://testserver:80"},
], ids=["no-browser", "same-origin", "user", "default-port"])
def test_the_labs_own_pages_and_clients_that_are_not_browsers_may_write(client, headers):
    assert client.post("/api/runs", json=SMALL, headers=headers).status_code == 201


def test_with_a_token_a_same_origin_write_still_needs_it(client, token):
    same_origin = {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}
    assert client.post("/api/runs", json=SMALL, headers=same_origin).status_code == 401
    assert client.post("/api/runs", json=SMALL, headers={**same_origin, **token}).status_code == 201
    assert client.post("/api/runs", json=SMALL, headers=token).status_code == 201          # curl-like


def test_an_origin_listed_for_cors_may_write_and_meets_the_token(client, settings, monkeypatch, token):
    monkeypatch.setattr(settings, "cors_origins", ["https://notebook.example"])
    listed = {"Sec-Fetch-Site": "cross-site", "Origin": "https://notebook.example"}
    assert client.post("/api/runs", json=SMALL, headers=listed).status_code == 401
    assert client.post("/api/runs", json=SMALL, headers={**listed, **token}).status_code == 201


def test_behind_a_proxy_that_rewrites_host_an_origin_on_a_named_host_is_the_labs(client, settings, monkeypatch):
    monkeypatch.setattr(settings, "allowed_hosts", [*TESTCLIENT_HOSTS, "lab.example"])
    proxied = {"Host": "127.0.0.1:8000", "Sec-Fetch-Site": "same-origin", "Origin": "https://lab.example"}
    assert client.post("/api/runs", json=SMALL, headers=proxied).status_code == 201


# ---- security headers ------------------------------------------------------------------------------

HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


def directives(policy: str) -> dict[str, list[str]]:
    return {name: sources for name, *sources in (part.split() for part in policy.split(";") if part.strip())}


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/", 200),                                       # a page
    ("GET", "/api/health", 200),                             # an API answer
    ("GET", "/style.css", 200),                              # a static file
    ("GET", "/js/app.js", 200),
    ("GET", "/vendor/plotly.min.js", 200),
    ("GET", "/docs", 200),
    ("GET", "/docs-assets/swagger-ui.css", 200),
    ("GET", "/openapi.json", 200),
    ("GET", "/api/runs/999999", 404),
    ("POST", "/api/runs", 403),                              # a refusal of the guard itself
])
def test_every_answer_carries_the_security_headers(client, method, path, status):
    response = client.request(method, path, **({"json": SMALL, "headers": CROSS_SITE} if method == "POST" else {}))
    assert response.status_code == status, response.text
    for name, value in HEADERS.items():
        assert response.headers[name] == value, (path, name)
    policy = directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]


def test_refusals_of_the_inner_layers_carry_them_too(client, settings, monkeypatch):
    assert client.get("/api/health", headers={"Host": "evil.example"}).headers["x-frame-options"] == "DENY"
    monkeypatch.setattr(settings, "max_request_bytes", 1024)
    too_large = client.post("/api/runs", content=b" " * 4096, headers={"content-type": "application/json"})
    assert too_large.status_code == 413 and "content-security-policy" in too_large.headers


def test_the_policy_is_self_only_with_the_measured_exceptions(client):
    policy = directives(client.get("/").headers["content-security-policy"])
    sources = {source for values in policy.values() for source in values}
    assert not any(re.match(r"(https?:|\*|//)", source) for source in sources), "no other host, no wildcard"
    assert "'unsafe-eval'" not in sources and "'unsafe-inline'" not in policy["script-src"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'self'"]
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    assert policy["img-src"] == ["'self'", "data:", "blob:"] and policy["worker-src"] == ["'self'", "blob:"]


def test_the_only_inline_script_allowed_is_swagger_uis_start(client):
    page = client.get("/docs")
    hashes = inline_script_hashes(page.content)
    assert len(hashes) == 1
    script_src = directives(page.headers["content-security-policy"])["script-src"]
    assert script_src == ["'self'", *hashes]
    assert inline_script_hashes(client.get("/redoc").content) == []
    index = client.get("/").text
    assert inline_script_hashes(index.encode()) == [] and "<script src=" in index, "the dashboard has no inline script"
    assert (FRONTEND_DIR / "index.html").read_text() == index


# ---- /docs and /redoc, offline --------------------------------------------------------------------


def test_the_openapi_pages_load_their_assets_from_the_lab(client):
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        urls = re.findall(r'(?:src|href|spec-url)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
        assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls), (path, urls)
        for url in urls:
            assert client.get(url).status_code == 200, url
    assets = {"swagger-ui-bundle.js": "javascript", "swagger-ui.css": "text/css", "redoc.standalone.js": "javascript"}
    for name, kind in assets.items():
        response = client.get(f"/docs-assets/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"], name
        assert len(response.content) > 100_000, name
    assert '"validatorUrl": null' in client.get("/docs").text, "no badge from the online validator"


# ---- `idlab serve` off loopback ------------------------------------------------------------------


def serve_env(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("IDLAB_")}
    return {**env, "IDLAB_TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1", **settings}


def test_serve_refuses_a_non_loopback_address_without_a_token(tmp_path):
    port = free_port()
    result = subprocess.run([sys.executable, "-m", "idlab.launchers.cli", "serve", "--host", "0.0.0.0",
                             "--port", str(port),
                             "--data-dir", str(tmp_path / "lab")],
                            env=serve_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "refusing to listen on 0.0.0.0 without an API token" in result.stderr
    assert "export IDLAB_API_TOKEN=" in result.stderr
    assert "the lab is at" not in result.stdout and not (tmp_path / "lab" / "idlab.db").exists()


def test_loopback_addresses_need_no_token_and_others_serve_the_names_they_are_reached_by():
    assert all(is_loopback(host) for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.1.1"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "10.0.0.5", "box.lan"))
    assert served_names("10.0.0.5") == ["10.0.0.5"] and served_names("2001:db8::5") == ["[2001:db8::5]"]
    assert served_names("Box.Lan") == ["box.lan"]
    names = served_names("0.0.0.0")
    assert socket.gethostname().lower() in names and served_names("::") == names
    assert not any(is_loopback(name) for name in names)


@pytest.mark.timeout(180)
def test_serve_on_every_address_with_a_token_answers_to_the_machines_name(tmp_path):
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "idlab.launchers.cli", "serve", "--host", "0.0.0.0",
                                    "--port", str(port),
                                    "--data-dir", str(tmp_path / "lab")],
                                   env=serve_env(IDLAB_API_TOKEN=TOKEN, IDLAB_ALLOWED_HOSTS="lab.example"),
                                   cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"   # the test talks to this machine only, whatever Host it names

    def get(host: str) -> httpx.Response:
        return httpx.get(url + "/api/health", headers={"Host": f"{host}:{port}"}, timeout=10)

    def answering():
        assert process.poll() is None, log_path.read_text(errors="replace")
        try:
            return get("127.0.0.1").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(answering, 90, "`idlab serve --host 0.0.0.0` to answer")
        output = log_path.read_text()
        assert "writes need the API token" in output and "IDLAB_ALLOWED_HOSTS" in output
        for host in (socket.gethostname(), "lab.example", "localhost"):
            assert get(host).status_code == 200, host
            assert host.lower() in output
        refused = get("evil.example")
        assert refused.status_code == 400 and "IDLAB_ALLOWED_HOSTS" in refused.json()["detail"]
        write = httpx.post(url + "/api/runs", json=SMALL, timeout=10)
        assert write.status_code == 401
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(10)
