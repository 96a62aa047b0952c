"""The API's bounds and the lab's exposure: request bodies over the limit are a 413 before they are
parsed (announced or chunked), every sized field has a bound that answers 422 naming the field,
CORS stays closed unless origins are configured, writes need the token, and `idlab serve` listens
on localhost only.

tests/lab/test_api_service.py holds the rest of the service's guards: a configured origin is
allowed, every mutating route in the OpenAPI spec needs the token; tests/lab/test_api_guard.py
those towards browsers: host names, cross-site writes, security headers, `idlab serve` off loopback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.domain.settings import Settings
from tests.lab.lab_processes import TESTCLIENT_HOSTS, free_port, wait_for

MiB = 2**20
SMALL = {"dataset": "synthetic", "fc_widths": [16], "d": 20, "epochs": 1}
EXPERIMENT = {"name": "bounds", "base": {"dataset": "synthetic", "epochs": 1}}
FOREIGN = "http://elsewhere.example"


@pytest.fixture(scope="module")
def settings(sqlite_url, tmp_path_factory) -> Settings:
    """One app for the module (what is tested here happens before the database, or stores nothing)."""
    return Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("limits"), database_url=sqlite_url,
                    broker_url=None, api_token=None, cors_origins=[], allowed_hosts=TESTCLIENT_HOSTS)


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def run_count(client) -> int:
    return client.get("/api/runs", params={"limit": 1}).json()["total"]


def padded(config: dict, size: int) -> bytes:
    """`config` as JSON of exactly `size` bytes (trailing spaces are valid JSON)."""
    text = json.dumps(config).encode()
    return text + b" " * (size - len(text))


# ---- request bodies ------------------------------------------------------------------------------


def test_the_default_limit_is_one_mebibyte():
    assert Settings(_env_file=None).max_request_bytes == MiB


def test_a_body_at_the_limit_is_read_one_byte_more_is_413_with_the_limit_and_what_to_do(client):
    json_type = {"content-type": "application/json"}
    before = run_count(client)
    assert client.post("/api/runs", content=padded(SMALL, MiB), headers=json_type).status_code == 201

    refused = client.post("/api/runs", content=padded(SMALL, MiB + 1), headers=json_type)

    assert refused.status_code == 413 and refused.headers["content-type"] == "application/json"
    message = refused.json()["detail"]
    assert "1 MiB" in message and "1,048,576 bytes" in message
    assert "send a smaller" in message and "IDLAB_MAX_REQUEST_BYTES" in message
    assert run_count(client) == before + 1


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(settings, monkeypatch):
    """At the ASGI level (the test client would join the chunks first): a body of unannounced
    length arrives chunk by chunk, and no chunk after the one that passes the limit is read."""
    monkeypatch.setattr(settings, "max_request_bytes", 64 * 1024)
    app, received, sent = create_app(settings), [], []

    async def receive():   # 1 MiB in 64 chunks
        received.append(16 * 1024)
        return {"type": "http.request", "body": b" " * (16 * 1024), "more_body": len(received) < 64}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/experiments", "raw_path": b"/api/experiments", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"localhost"), (b"content-type", b"application/json"),
                         (b"transfer-encoding", b"chunked")], "client": ("127.0.0.1", 1), "server": ("localhost", 80)}
    anyio.run(app, scope, receive, send)

    assert sum(received) == 64 * 1024 + 16 * 1024
    assert sent[0]["status"] == 413
    assert "64 KiB" in json.loads(sent[1]["body"])["detail"]


def test_the_limit_comes_from_the_settings_and_covers_every_route(client, settings, monkeypatch):
    monkeypatch.setattr(settings, "max_request_bytes", 2048)
    body = padded({}, 4096)
    for path in ("/api/runs", "/api/experiments?dry_run=true", "/api/runs/1/cancel", "/api/runs/1/retry"):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 413 and "2 KiB" in response.json()["detail"], (path, response.text)
    assert client.post("/api/runs", json=SMALL).status_code == 201      # a small body still passes


def test_a_refused_body_answers_cors_for_an_allowed_origin(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setenv("IDLAB_CORS_ORIGINS", "http://lab.example, http://other.example")
    monkeypatch.setenv("IDLAB_MAX_REQUEST_BYTES", "2048")
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=sqlite_url, allowed_hosts=TESTCLIENT_HOSTS)
    assert settings.cors_origins == ["http://lab.example", "http://other.example"]
    with TestClient(create_app(settings)) as client:
        refused = client.post("/api/runs", content=padded({}, 4096),
                              headers={"content-type": "application/json", "Origin": "http://lab.example"})
        assert refused.status_code == 413
        assert refused.headers["access-control-allow-origin"] == "http://lab.example"   # the dashboard can show why
        foreign = client.post("/api/runs", content=padded({}, 4096),
                              headers={"content-type": "application/json", "Origin": FOREIGN})
        assert "access-control-allow-origin" not in foreign.headers


# ---- field bounds --------------------------------------------------------------------------------


@pytest.mark.parametrize("config, field, words", [
    ({"d": 10_000_001}, "d", "less than or equal to 10000000"),
    ({"fc_widths": [200, 200], "d": 300_000}, "d", "exceeds D = 199,210"),
    ({"epochs": 10_001}, "epochs", "less than or equal to 10000"),
    ({"batch_size": 65_537}, "batch_size", "less than or equal to 65536"),
    ({"fc_widths": [16] * 9}, "fc_widths", "at most 8"),
    ({"fc_widths": [100_001]}, "fc_widths", "between 1 and 100000"),
    ({"augmentation": "power", "power_orders": [2, 3, 4, 5, 6, 7, 8], "power_coefs": [0.1] * 7},
     "power_orders", "at most 6"),
    ({"augmentation": "power", "power_orders": [2, 40], "power_coefs": [0.1, 0.1]}, "power_orders", "≤ 10"),
    ({"power_coefs": [0.1] * 7}, "power_coefs", "at most 6"),
    ({"adam_betas": [0.9, 1.5]}, "adam_betas", "[0, 1)"),
    ({"rff_features": 10_000_001}, "rff_features", "less than or equal to 10000000"),
    ({"seed": 2**31}, "seed", "less than or equal to 2147483647"),
    ({"lr": 101}, "lr", "less than or equal to 100"),
    ({"log_every": 100_001}, "log_every", "less than or equal to 100000"),
    ({"max_lr_reductions": 11}, "max_lr_reductions", "less than or equal to 10"),
    ({"device": "cuda:100"}, "device", "pattern"),
    ({"p_init": "from_run:" + "x" * 65}, "p_init", "unknown p_init"),
])
def test_every_sized_run_field_is_bounded_with_a_422_naming_it(client, config, field, words):
    before = run_count(client)
    response = client.post("/api/runs", json={**SMALL, **config})
    assert response.status_code == 422, response.text
    mine = [e for e in response.json()["detail"] if e["loc"][:2] == ["body", field]]
    assert mine and words in mine[0]["msg"], response.json()["detail"]
    assert run_count(client) == before


def test_d_up_to_D_is_accepted_and_direct_training_ignores_d(client):
    D = 784 * 16 + 16 + 16 * 10 + 10
    assert client.post("/api/runs", json={**SMALL, "d": D}).status_code == 201
    assert client.post("/api/runs", json={**SMALL, "d": D + 1}).json()["detail"][0]["loc"] == ["body", "d"]
    assert client.post("/api/runs", json={**SMALL, "method": "direct", "d": D + 1}).status_code == 201


def test_an_echoed_long_value_is_cut_short(client):
    response = client.post("/api/runs", json={**SMALL, "p_init": "y" * 100_000})
    assert response.status_code == 422 and len(response.json()["detail"][0]["input"]) == 200


@pytest.mark.parametrize("request_, loc, words", [
    ({"grid": {f"f{i}": [1] for i in range(21)}}, ["body", "grid"], "at most 20"),
    ({"grid": {"d": list(range(1, 102))}}, ["body", "grid", "d"], "at most 100"),
    ({"grid": {"x" * 65: [1]}}, ["body", "grid", "x" * 65, "[key]"], "at most 64"),
    ({"seeds": list(range(101))}, ["body", "seeds"], "at most 100"),
    ({"seeds": [2**31]}, ["body", "seeds", 0], "less than or equal to 2147483647"),
    ({"name": ""}, ["body", "name"], "at least 1"),
    ({"base": {"epochs": 10_001}}, ["body", "base", "epochs"], "less than or equal to 10000"),
])
def test_experiment_bounds_are_422_naming_the_field(client, request_, loc, words):
    before = run_count(client)
    response = client.post("/api/experiments", json={**EXPERIMENT, **request_})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(e["loc"] == loc and words in e["msg"] for e in detail), detail
    assert run_count(client) == before


def test_more_runs_than_the_setting_allows_is_422(client, settings, monkeypatch):
    monkeypatch.setattr(settings, "max_experiment_runs", 5)
    response = client.post("/api/experiments", json={**EXPERIMENT, "grid": {"d": [10, 20, 30]}, "seeds": [0, 1]})
    assert response.status_code == 422 and "limit of 5" in response.json()["detail"][0]["msg"]


# ---- CORS and the token --------------------------------------------------------------------------


def test_without_configured_origins_a_foreign_origin_gets_no_cors_grant(client):
    preflight = client.options("/api/runs", headers={"Origin": FOREIGN, "Access-Control-Request-Method": "POST",
                                                     "Access-Control-Request-Headers": "content-type"})
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-methods" not in preflight.headers
    for response in (client.get("/api/health", headers={"Origin": FOREIGN}),
                     client.post("/api/runs", json={"d": 0}, headers={"Origin": FOREIGN})):
        assert "access-control-allow-origin" not in response.headers


def test_the_token_is_read_from_the_environment(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setenv("IDLAB_API_TOKEN", "from-the-env")
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=sqlite_url, allowed_hosts=TESTCLIENT_HOSTS)
    with TestClient(create_app(settings)) as client:
        dry_run = {"url": "/api/experiments", "params": {"dry_run": "true"}, "json": EXPERIMENT}
        assert client.post(**dry_run).status_code == 401
        assert client.post(**dry_run, headers={"Authorization": "Bearer from-the-env"}).status_code == 200
        assert client.get("/api/experiments").status_code == 200


# ---- `idlab serve` as a process ------------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on TCP `port` (Linux /proc/net)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:   # 0A: LISTEN
                raw = bytes.fromhex(address)   # the kernel's words, each in host (little-endian) order
                found.add(socket.inet_ntop(family, b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))))
    return found


def send_chunked(port: int, path: str, chunks: int, chunk_size: int) -> bytes:
    """POST `chunks` chunks and never the last one, then read what the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n".encode())
        for _ in range(chunks):
            connection.sendall(f"{chunk_size:x}\r\n".encode() + b" " * chunk_size + b"\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = connection.recv(65536)
            if not data:
                break
            answer += data
        return answer


@pytest.mark.timeout(180)
def test_idlab_serve_listens_on_localhost_with_its_hardening_from_the_environment(tmp_path):
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("IDLAB_")}
    env.update(IDLAB_API_TOKEN="serve-token", IDLAB_MAX_REQUEST_BYTES="4096", IDLAB_TORCH_THREADS="1",
               PYTHONUNBUFFERED="1")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "idlab.launchers.cli", "serve",   # no --host
                                    "--port", str(port),
                                    "--data-dir", str(tmp_path / "lab")],
                                   env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def answering():
        assert process.poll() is None, log_path.read_text(errors="replace")
        try:
            return httpx.get(url + "/api/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(answering, 90, "`idlab serve` to answer")
        assert listening_addresses(port) == {"127.0.0.1"}
        assert f"the lab is at http://127.0.0.1:{port}" in log_path.read_text()

        dry_run = {"url": url + "/api/experiments", "params": {"dry_run": "true"}, "json": EXPERIMENT, "timeout": 10}
        assert httpx.post(**dry_run).status_code == 401
        assert httpx.post(**dry_run, headers={"Authorization": "Bearer serve-token"}).status_code == 200

        too_large = httpx.post(url + "/api/runs", content=padded(SMALL, 8192), timeout=10,
                               headers={"content-type": "application/json", "Authorization": "Bearer serve-token"})
        assert too_large.status_code == 413 and "4 KiB" in too_large.json()["detail"]
        unfinished = send_chunked(port, "/api/runs", chunks=3, chunk_size=2048)   # 6 KiB, the body never ends
        head, _, body = unfinished.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), unfinished[:300]
        assert "IDLAB_MAX_REQUEST_BYTES" in json.loads(body)["detail"]

        health = httpx.get(url + "/api/health", headers={"Origin": FOREIGN}, timeout=10)
        assert health.status_code == 200 and "access-control-allow-origin" not in health.headers
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)     # serve stops its API and worker, which die with it anyway
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
