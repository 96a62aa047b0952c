"""docker-compose.yml, checked without a Docker engine: validated by Docker Compose itself
(`config -q`: the Compose schema, interpolation, a missing secret), what it declares, and its services'
own commands started on this machine with the environment it gives them (service host
names mapped to localhost) against the real PostgreSQL and a Redis started with the redis
service's own command (its password set), running an experiment."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.lab.lab_processes import _admin, create_database, drop_database, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SECRETS = {"POSTGRES_PASSWORD": "compose-test", "REDIS_PASSWORD": "compose-redis-secret",
           "IDLAB_API_TOKEN": "compose-token"}


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?message}."""
    def one(match: re.Match) -> str:
        name, operator, rest = match.group(1), match.group(2), match.group(3)
        if name in variables and variables[name] != "":
            return variables[name]
        if operator == ":?":
            raise AssertionError(f"{name} is required: {rest}")
        return rest or ""
    return re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", one, value)


def service_environment(name: str) -> dict[str, str]:
    return {key: interpolate(str(value), SECRETS) for key, value in SERVICES[name]["environment"].items()}


def service_command(name: str) -> list[str]:
    return [interpolate(str(part), SECRETS) for part in SERVICES[name]["command"]]


def test_services_wait_for_healthy_postgres_and_redis():
    for name in ("postgres", "redis"):
        assert SERVICES[name]["healthcheck"]["test"], f"{name} has no healthcheck"
    for name in ("api", "worker-gpu0"):
        assert SERVICES[name]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                                "redis": {"condition": "service_healthy"}}


def test_the_worker_reserves_a_gpu_and_data_lives_in_named_volumes():
    devices = SERVICES["worker-gpu0"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    assert {"pgdata", "labdata"} <= set(COMPOSE["volumes"])
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    assert all("labdata:/data" in SERVICES[name]["volumes"] for name in ("api", "worker-gpu0"))


def test_secrets_come_from_the_environment_and_the_api_binds_to_localhost():
    text = (REPO / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text and "${REDIS_PASSWORD:?" in text and "${IDLAB_API_TOKEN:?" in text
    assert not re.search(r"PASSWORD:\s*[\w-]+\s*$", text, re.M), "a hard-coded password"
    assert all(port.startswith("127.0.0.1:") for port in SERVICES["api"]["ports"])
    redis = service_command("redis")
    assert redis[redis.index("--requirepass") + 1] == SECRETS["REDIS_PASSWORD"]
    assert service_environment("redis")["REDISCLI_AUTH"] == SECRETS["REDIS_PASSWORD"]   # the healthcheck's
    example = (REPO / ".env.example").read_text()
    assert all(f"\n{name}=" in example for name in SECRETS)


# ---- the file as Docker Compose reads it ---------------------------------------------------------

COMPOSE_INSTALL_HINT = "apt-get install --no-install-recommends docker-compose"


def compose_command() -> list[str]:
    """`docker compose` (the v2 plugin) where Docker has it, else `docker-compose` (Debian's package)."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail(f"no Docker Compose here to validate docker-compose.yml: install it with  {COMPOSE_INSTALL_HINT}")


def compose_config(folder: Path, variables: dict[str, str]) -> subprocess.CompletedProcess:
    """`config -q` on folder/docker-compose.yml: parse, interpolate, validate against the Compose
    schema. It needs no Docker engine; the folder holds no .env, so only `variables` are set."""
    return subprocess.run([*compose_command(), "--project-directory", str(folder), "-f", "docker-compose.yml",
                           "config", "-q"], cwd=folder, capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ["PATH"], "HOME": str(folder), **variables})


def copy_of_the_file(folder: Path, *replacements: tuple[str, str]) -> Path:
    text = (REPO / "docker-compose.yml").read_text()
    for old, new in replacements:
        assert old in text, f"{old!r} is no longer in docker-compose.yml"
        text = text.replace(old, new)
    (folder / "docker-compose.yml").write_text(text)
    return folder


def test_docker_compose_accepts_the_file(tmp_path):
    result = compose_config(copy_of_the_file(tmp_path), SECRETS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("replacement, named", [
    (("condition: service_healthy}", "condition: service_heathy}"), "service_heathy"),
    (('    command: ["uvicorn"', '    comand: ["uvicorn"'), "comand"),
    (("retries: 20", "retries: many"), "many"),
])
def test_docker_compose_rejects_a_broken_copy_naming_the_fault(tmp_path, replacement, named):
    result = compose_config(copy_of_the_file(tmp_path, replacement), SECRETS)
    assert result.returncode != 0 and named in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize("secret", ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "IDLAB_API_TOKEN"])
def test_docker_compose_refuses_to_start_without_a_secret(tmp_path, secret):
    """The API token too: the API listens on 0.0.0.0 inside its container, so it is never left open."""
    result = compose_config(copy_of_the_file(tmp_path), {k: v for k, v in SECRETS.items() if k != secret})
    assert result.returncode != 0 and f"set {secret} in .env" in result.stdout + result.stderr


def test_the_api_answers_to_its_service_name_and_the_names_in_env(monkeypatch):
    """Besides localhost (the published port, 127.0.0.1 only): the service name, and what .env adds."""
    from backend.domain.settings import Settings

    def allowed_hosts(variables: dict[str, str]) -> list[str]:
        value = interpolate(str(SERVICES["api"]["environment"]["IDLAB_ALLOWED_HOSTS"]), variables)
        monkeypatch.setenv("IDLAB_ALLOWED_HOSTS", value)
        return Settings(_env_file=None).allowed_hosts

    assert allowed_hosts(SECRETS) == ["api"]
    assert allowed_hosts({**SECRETS, "IDLAB_ALLOWED_HOSTS": "lab.example,10.0.0.5"}) == [
        "api", "lab.example", "10.0.0.5"]


def localised(url: str, ports: dict[str, int], database: str | None = None) -> str:
    """The URL with each service's host:port replaced by 127.0.0.1 and the port it has here."""
    for host, port in ports.items():
        url = re.sub(rf"([@/]){host}:\d+", rf"\g<1>127.0.0.1:{port}", url)
    return url if database is None else url.rsplit("/", 1)[0] + "/" + database


@pytest.fixture
def compose_database():
    url = create_database()                   # a fresh database standing in for the volume
    _admin("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'idlab') "
           "THEN CREATE ROLE idlab LOGIN; END IF; END $$")
    _admin(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" OWNER TO idlab')
    yield url.rsplit("/", 1)[1]
    drop_database(url)


def start_redis_service(folder: Path) -> tuple[subprocess.Popen, int]:
    """The redis service's own command (password, append-only file), on a free port of 127.0.0.1."""
    port = free_port()
    command = service_command("redis") + ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    with open(folder / "redis.log", "w") as log:   # the child writes to its own copy of the descriptor
        process = subprocess.Popen(command, cwd=folder, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    wait_for(lambda: redis_answers(port, SECRETS["REDIS_PASSWORD"]), 20, "the redis service to answer")
    return process, port


def redis_answers(port: int, password: str | None) -> bool:
    import redis
    try:
        return bool(redis.Redis(port=port, password=password, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.AuthenticationError:
        raise
    except redis.ConnectionError:   # not listening yet
        return False


def start_service(name: str, folder: Path, ports: dict[str, int], database: str, api_port: int) -> subprocess.Popen:
    """docker-compose.yml's service `name`, its command and environment, on this machine's PostgreSQL and the
    test's redis; its output goes to folder/<name>.log."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IDLAB_")},
           **service_environment(name), "PYTHONUNBUFFERED": "1", "IDLAB_TORCH_THREADS": "1"}
    env["IDLAB_DATABASE_URL"] = localised(env["IDLAB_DATABASE_URL"], ports, database)
    env["IDLAB_BROKER_URL"] = localised(env["IDLAB_BROKER_URL"], ports)
    env["IDLAB_DATA_DIR"] = str(folder)            # the labdata volume
    env["IDLAB_DATASET_MIRRORS"] = os.environ["IDLAB_DATASET_MIRRORS"]   # tests/conftest.py's: never outside
    command = [str(part) for part in SERVICES[name]["command"]]
    if name == "api":
        command[command.index("--port") + 1] = str(api_port)
        command[command.index("--host") + 1] = "127.0.0.1"
    command = [sys.executable, "-m", "uvicorn", *command[1:]] if command[0] == "uvicorn" else \
        [sys.executable, "-m", "idlab.launchers.cli", *command[1:]]
    with open(folder / f"{name}.log", "w") as log:   # the child writes to its own copy of the descriptor
        return subprocess.Popen(command, env=env, cwd=REPO, start_new_session=True, stdout=log,
                                stderr=subprocess.STDOUT)


def test_the_services_commands_run_an_experiment_end_to_end(tmp_path, compose_database):
    import redis

    port = free_port()
    processes = []
    try:
        redis_process, redis_port = start_redis_service(tmp_path)
        processes.append(redis_process)
        with pytest.raises(redis.AuthenticationError):     # whoever reaches it without the password
            redis_answers(redis_port, None)
        ports = {"postgres": 5432, "redis": redis_port}
        for name in ("api", "worker-gpu0"):
            processes.append(start_service(name, tmp_path, ports, compose_database, port))
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                           headers={"Authorization": f"Bearer {SECRETS['IDLAB_API_TOKEN']}"})

        def healthy():
            try:
                body = api.get("/api/health").json()
            except httpx.HTTPError:
                return None
            return body if body["database"]["ok"] and body["workers_alive"] >= 1 else None

        health = wait_for(healthy, 90, "the API and a worker to be up")
        assert health["broker"]["ok"]
        assert httpx.post(f"http://127.0.0.1:{port}/api/runs", json={}).status_code == 401   # the token holds
        # Other containers reach the API by its service name; any other name is refused (DNS rebinding).
        assert api.get("/api/health", headers={"Host": "api:8000"}).status_code == 200
        foreign = api.get("/api/health", headers={"Host": "evil.example"})
        assert foreign.status_code == 400 and "IDLAB_ALLOWED_HOSTS" in foreign.json()["detail"]
        base = {"dataset": "synthetic", "fc_widths": [16], "epochs": 1, "train_size": 128, "test_size": 64}
        created = api.post("/api/experiments", json={"name": "compose", "base": base,
                                                     "grid": {"d": [8, 16]}, "seeds": [0], "baseline": True})
        assert created.status_code == 201, created.text
        experiment = created.json()

        def finished():
            runs = [api.get(f"/api/runs/{run_id}").json() for run_id in experiment["run_ids"]]
            done = all(run["status"] in ("succeeded", "failed", "cancelled", "diverged") for run in runs)
            return runs if done else None

        runs = wait_for(finished, 180, "the experiment's runs to finish", interval=1)
        assert [run["status"] for run in runs] == ["succeeded"] * 3, [run.get("error") for run in runs]
        summary = api.get(f"/api/experiments/{experiment['id']}/summary").json()
        assert [point["d"] for point in summary["groups"][0]["points"]] == [8, 16] and summary["baseline"] > 0
        for secret in ("POSTGRES_PASSWORD", "REDIS_PASSWORD"):
            assert SECRETS[secret] not in api.get("/api/health").text
            for name in ("api", "worker-gpu0"):
                assert SECRETS[secret] not in (tmp_path / f"{name}.log").read_text(), f"{name} logs {secret}"
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
