"""Real labs for the worker tests: a database, a broker, and `idlab worker` processes against them.

Two modes, the same code:
    embedded   SQLite and Kombu's filesystem broker, both in a temporary data dir
    deployed   a fresh PostgreSQL database (created from `postgres`, dropped after) and Redis db 5
               (flushed before and after); skipped when either server is not reachable

Workers are started as `idlab worker` subprocesses in their own process group, so a
test can kill one with everything it forked. Runs are created directly through
`backend.domain.lifecycle.new_run` and sent with `enqueue_run`, as the API does.

For the fault tests, a deployed lab can also run on a private `redis-server` (`RedisServer`,
which a test may kill and start again), serve the API as its own process (`ApiProcess`,
docker-compose.yml's command) and be watched by a browser-style event-stream client
(`EventSourceClient`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.domain import lifecycle
from backend.domain.db import make_engine
from backend.domain.migrate import upgrade
from backend.domain.models import FINISHED, MetricPoint, Run, RunArtifact, Worker
from backend.domain.settings import Settings
from idlab import metrics as M
from idlab.config import RunConfig

REPO = Path(__file__).resolve().parents[2]
POSTGRES_SERVER = os.environ.get("IDLAB_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("IDLAB_TEST_REDIS", "redis://127.0.0.1:6379/5")

#: The Host that Starlette's TestClient sends: allowed in the settings of every app a TestClient calls
#: (the lab's default serves localhost names only; the processes here are called on 127.0.0.1).
TESTCLIENT_HOSTS = ["testserver"]

#: Short enough that the crash tests reap within seconds.
TIMINGS = {"IDLAB_HEARTBEAT_SECONDS": "0.5", "IDLAB_STALE_AFTER_SECONDS": "3", "IDLAB_REAPER_SECONDS": "1"}

#: The tiny run every scenario starts from.
TINY = dict(dataset="synthetic", model="fc", fc_widths=[16], d=20, train_size=256, test_size=128, epochs=2,
            device="cpu")
#: A run that logs every step and trains long enough to be cancelled or killed mid-run on a fast CPU
#: too: 3,200 steps, about 3 s on the CI machine and 10 s on two slow cores (12 epochs once finished
#: in 0.5 s there, before the test's cancel arrived).
LONG = dict(TINY, epochs=100, batch_size=8, log_every=1)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def expected_point_keys(config: RunConfig) -> set[tuple[str, int]]:
    """Every (key, step) a run that completes logs (the engine's contract, `idlab.metrics`)."""
    steps_per_epoch = math.ceil(config.train_size / config.batch_size)
    keys, step = set(), 0
    for _ in range(config.epochs):
        keys.add((M.LR, step))
        for i in range(steps_per_epoch):
            step += 1
            if step % config.log_every == 0 or i == steps_per_epoch - 1:
                keys |= {(M.TRAIN_LOSS, step), (M.TRAIN_ACC, step)}
        keys |= {(key, step) for key in (M.TEST_ACC, M.TEST_LOSS, M.EPOCH_TRAIN_LOSS, M.EPOCH_TRAIN_ACC)}
    return keys


class WorkerProcess:
    """An `idlab worker` subprocess, leader of its own process group; its output goes to a log file."""

    def __init__(self, name: str, env: dict, log_path: Path, queues: str | None = None, concurrency: int | None = 1):
        # It runs in the lab's folder, so no .env of the repository reaches its settings. One training process
        # unless asked (None: the worker's own default, one per core on a CPU), so a test knows what runs at once.
        self.name = f"{name}@{socket.gethostname()}"
        self.log_path = log_path
        command = [sys.executable, "-m", "idlab.launchers.cli", "worker", "--name", self.name]
        if concurrency is not None:
            command += ["--concurrency", str(concurrency)]
        if queues:
            command += ["--queues", queues]
        with open(log_path, "ab") as log:   # the child writes to its own copy of the descriptor
            self.process = subprocess.Popen(command, env=env, cwd=log_path.parent, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker's whole process group: main process and pool processes, no cleanup."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM (warm shutdown, as docker stop or `idlab serve` do); SIGKILL what is left after `timeout`."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        code = self.process.poll()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # pool processes left behind, if any
        self.process.wait(10)
        return code

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def claimed(self, run_id: int) -> int:
        """How many times this worker claimed run `run_id` (started executing it), from its log."""
        return len(re.findall(rf"\brun {run_id} claimed by ", self.output()))


class Lab:
    """A database, a broker and the settings a worker gets, with helpers to create runs and read results."""

    def __init__(self, mode: str, data_dir: Path, database_url: str | None = None, broker_url: str | None = None):
        self.mode, self.data_dir = mode, data_dir
        self.settings = Settings(_env_file=None, data_dir=data_dir, database_url=database_url, broker_url=broker_url,
                                 allowed_hosts=TESTCLIENT_HOSTS,
                                 **{key.removeprefix("IDLAB_").lower(): float(v) for key, v in TIMINGS.items()})
        upgrade(self.settings.database)
        self.engine = make_engine(self.settings.database)
        self.sessions: sessionmaker[Session] = sessionmaker(bind=self.engine, expire_on_commit=False)
        from backend.domain.queue import make_celery

        self.celery = make_celery(self.settings)
        self.workers: list[WorkerProcess] = []
        self.apis: list[ApiProcess] = []

    # ---- processes -------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("IDLAB_")}
        env.update(TIMINGS, IDLAB_DATA_DIR=str(self.data_dir), IDLAB_TORCH_THREADS="1", PYTHONUNBUFFERED="1")
        env["IDLAB_DATASET_MIRRORS"] = os.environ["IDLAB_DATASET_MIRRORS"]   # tests/conftest.py's: never outside
        if self.settings.database_url:
            env["IDLAB_DATABASE_URL"] = self.settings.database_url
        if self.settings.broker_url:
            env["IDLAB_BROKER_URL"] = self.settings.broker_url
        return env

    def start_worker(self, name: str | None = None, queues: str | None = None, ready: bool = True,
                     batch_runs: int | None = None, concurrency: int | None = 1) -> WorkerProcess:
        """`idlab worker`; `batch_runs` sets how many runs it trains as one batch (its default otherwise),
        `concurrency` its training processes (None: its default, one per core on a CPU)."""
        name = name or f"w{len(self.workers) + 1}-{uuid.uuid4().hex[:6]}"
        env = self.env() | ({"IDLAB_BATCH_RUNS": str(batch_runs)} if batch_runs else {})
        if concurrency is None:
            env.pop("IDLAB_TORCH_THREADS", None)   # the worker divides the cores itself
        worker = WorkerProcess(name, env, self.data_dir / f"{name}.log", queues, concurrency)
        self.workers.append(worker)
        if ready:
            self.wait_until_registered(worker)
        return worker

    def wait_until_registered(self, worker: WorkerProcess, timeout: float = 60) -> None:
        def registered():
            assert worker.alive(), f"worker {worker.name} exited:\n{worker.output()[-3000:]}"
            with self.sessions() as session:
                return session.get(Worker, worker.name) is not None
        wait_for(registered, timeout, f"worker {worker.name} to register")

    def start_api(self, port: int | None = None) -> ApiProcess:
        """The API as its own process on `port` (a free one by default), ready to answer."""
        api = ApiProcess(self.env(), self.data_dir / f"api-{len(self.apis) + 1}.log", port or free_port())
        self.apis.append(api)
        api.wait_ready()
        return api

    def executions(self, run_id: int) -> int:
        """How many times any of the lab's workers claimed run `run_id`, from their logs."""
        return sum(worker.claimed(run_id) for worker in self.workers)

    def close(self) -> None:
        for worker in self.workers:  # the tests that need a graceful stop do it themselves
            worker.kill()
        for api in self.apis:
            api.kill()
        self.celery.close()
        self.engine.dispose()

    # ---- runs ------------------------------------------------------------------------

    def create_run(self, send: bool = True, **fields) -> int:
        config = RunConfig.model_validate({**TINY, **fields})
        with self.sessions() as session:
            run = lifecycle.new_run(config)
            session.add(run)
            session.commit()
            run_id, raw = run.id, run.config
        if send:
            self.send(run_id, raw)
        return run_id

    def send(self, run_id: int, config: dict | None = None) -> None:
        from backend.domain.queue import enqueue_run

        if config is None:
            config = self.run(run_id).config
        enqueue_run(run_id, config, app=self.celery)

    def run(self, run_id: int) -> Run:
        with self.sessions() as session:
            return session.get(Run, run_id)

    def wait_finished(self, run_id: int, timeout: float = 60) -> Run:
        run = wait_for(lambda: (r := self.run(run_id)).status in FINISHED and r, timeout,
                       f"run {run_id} to finish ({self.mode})")
        return run

    def wait_status(self, run_id: int, status: str, timeout: float = 60) -> Run:
        return wait_for(lambda: (r := self.run(run_id)).status == status and r, timeout,
                        f"run {run_id} to be {status} ({self.mode})")

    def point_keys(self, run_id: int) -> list[tuple[str, int]]:
        """Every stored (key, step) of the run, one entry per row (so a duplicate would show twice)."""
        with self.sessions() as session:
            return [tuple(row) for row in session.execute(
                select(MetricPoint.key, MetricPoint.step).where(MetricPoint.run_id == run_id))]

    def point_count(self, run_id: int) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(MetricPoint).where(MetricPoint.run_id == run_id))

    def artifact(self, run_id: int, name: str = "statistics") -> dict | None:
        with self.sessions() as session:
            return session.scalar(select(RunArtifact.data).where(RunArtifact.run_id == run_id,
                                                                 RunArtifact.name == name))

    def worker_row(self, name: str) -> Worker | None:
        with self.sessions() as session:
            return session.get(Worker, name)

    def queue_length(self, queue: str) -> int:
        """Messages waiting in `queue` on the broker."""
        from kombu.exceptions import ChannelError

        with self.celery.connection_for_write() as connection:
            try:
                return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
            except ChannelError:  # Redis: an empty queue is no key at all
                return 0

    def describe(self, run_id: int) -> str:
        """What to print when an assertion about a run fails: the run and its workers' logs."""
        run = self.run(run_id)
        logs = "\n".join(f"--- {w.name}\n{w.output()[-4000:]}" for w in self.workers)
        return f"run {run_id}: {run.status}, attempt {run.attempt}, error {run.error!r}\n{logs}"


# ---- servers ---------------------------------------------------------------------------


def postgres_reachable() -> bool:
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_SERVER)
    return _port_open(url.host or "127.0.0.1", url.port or 5432)


def redis_reachable() -> bool:
    from urllib.parse import urlsplit

    url = urlsplit(REDIS_URL)
    return _port_open(url.hostname or "127.0.0.1", url.port or 6379)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def create_database() -> str:
    """A fresh, uniquely named PostgreSQL database; returns its URL."""
    name = f"idlab_test_worker_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    return f"{POSTGRES_SERVER}/{name}"


def drop_database(url: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _admin(statement: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


class RedisServer:
    """A private `redis-server` on a free port of 127.0.0.1, for tests that kill the broker.

    It keeps nothing on disk (no RDB snapshot, no append-only file): a SIGKILL loses every
    message it held, as a crash of an unpersisted Redis does. The shared server is never touched.
    """

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        """Start it (again) on its port; returns once it answers."""
        with open(self.folder / f"redis-{self.port}.log", "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.folder)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.answers, 20, f"redis-server on port {self.port} to answer")

    def answers(self) -> bool:
        import redis

        assert self.process is not None and self.process.poll() is None, \
            (self.folder / f"redis-{self.port}.log").read_text(errors="replace")[-2000:]
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing saved."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class ApiProcess:
    """The API as deployed: docker-compose.yml's `uvicorn backend.api.app:create_app --factory`, as its own
    process (and process group) on a fixed port, so that a test can kill it and start it again there."""

    def __init__(self, env: dict, log_path: Path, port: int):
        self.env, self.log_path, self.port = env, log_path, port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "backend.api.app:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env, cwd=self.log_path.parent, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = 60) -> None:
        import httpx

        def healthy():
            assert self.alive(), f"the API exited:\n{self.output()[-3000:]}"
            try:
                return httpx.get(f"{self.url}/api/health", timeout=2).json()["database"]["ok"]
            except (httpx.HTTPError, ValueError, KeyError):
                return False
        wait_for(healthy, timeout, f"the API on port {self.port} to answer", interval=0.2)

    def kill(self) -> None:
        """SIGKILL of its process group: open connections drop without a goodbye."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, as `docker stop` sends; returns its exit status (uvicorn re-raises the signal once it
        has shut down: -SIGTERM), or None if it did not stop within `timeout` and was killed."""
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def restart(self) -> None:
        self.start()
        self.wait_ready()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def sse_blocks(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """The fields of each Server-Sent Events block, yielded at the blank line that ends it.

    Only the fields the block has: "event", "data" (its lines joined by newlines), "id", "retry",
    as the server wrote them; comment lines (keep-alives) are skipped, and a block cut off by the
    end of the stream is never yielded.
    """
    block: dict[str, str] = {}
    for line in lines:
        if line == "":
            yield block
            block = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                block["data"] = f"{block['data']}\n{value}" if "data" in block else value
            elif name in ("event", "id", "retry"):
                block[name] = value


class EventSourceClient(threading.Thread):
    """A browser's EventSource, in a thread: reads a Server-Sent Events stream and reconnects as browsers do.

    As the HTML standard has it: an event is dispatched at its blank line (an event cut off by
    a dropped connection is discarded, and its id not remembered); the last event id persists
    across events without one and is sent back as the Last-Event-ID header on reconnecting;
    a dropped or refused connection is retried after the `retry` the server gave (3 s by
    default); an answer that is not a 200 event stream ends it for good. It closes the stream
    itself on the event named `close_on`, as the dashboard does on `end`.
    """

    def __init__(self, url: str, close_on: str = "end", read_timeout: float = 60):
        super().__init__(name="event-source", daemon=True)
        self.url, self.close_on, self.read_timeout = url, close_on, read_timeout
        self.retry_ms = 3000
        self.last_event_id = ""
        self.events: list[dict] = []          # {"event", "data" (parsed JSON), "id", "connection"}
        self.connections: list[dict] = []     # {"last_event_id": the header sent ("" for none), "error": …}
        self.failure: str | None = None
        self.closing = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            self._follow()
        except Exception as error:  # noqa: BLE001 - reported to the test, which asserts there was none
            self.failure = f"{type(error).__name__}: {error}"

    def _follow(self) -> None:
        import httpx

        timeout = httpx.Timeout(10.0, read=self.read_timeout)
        with httpx.Client(timeout=timeout) as http:
            while not self.closing.is_set():
                attempt = {"last_event_id": self.last_event_id, "error": None}
                self.connections.append(attempt)
                headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
                if self.last_event_id:
                    headers["Last-Event-ID"] = self.last_event_id
                try:
                    with http.stream("GET", self.url, headers=headers) as response:
                        if response.status_code != 200 or not response.headers.get(
                                "content-type", "").startswith("text/event-stream"):
                            self.failure = f"answered {response.status_code}: {response.read()[:500]!r}"
                            return
                        self._read(response.iter_lines(), len(self.connections) - 1)
                except httpx.TransportError as error:   # refused, reset, cut off mid-body: reconnect
                    attempt["error"] = f"{type(error).__name__}: {error}"
                if not self.closing.is_set():
                    self.closing.wait(self.retry_ms / 1000)

    def _read(self, lines, connection: int) -> None:
        for block in sse_blocks(lines):
            if "id" in block and "\0" not in block["id"]:
                self.last_event_id = block["id"]
            if block.get("retry", "").isdigit():
                self.retry_ms = int(block["retry"])
            if "data" not in block:
                continue
            event = {"event": block.get("event") or "message", "data": json.loads(block["data"]),
                     "id": self.last_event_id, "connection": connection}
            with self.lock:
                self.events.append(event)
            if event["event"] == self.close_on:
                self.closing.set()
                return

    def received(self, name: str) -> list[dict]:
        with self.lock:
            return [event for event in self.events if event["event"] == name]

    def points(self) -> list[dict]:
        """Every point received, in order, with the connection it came on."""
        return [dict(point, connection=event["connection"]) for event in self.received("points")
                for point in event["data"]]

    def close(self, timeout: float = 10) -> None:
        self.closing.set()
        self.join(timeout)


def flush_redis(url: str = REDIS_URL) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


MODES = ("embedded", "deployed")


@contextlib.contextmanager
def open_lab(mode: str, folder: Path, broker_url: str | None = None) -> Iterator[Lab]:
    """A lab of `mode` in `folder`, torn down after: workers stopped, database dropped, Redis flushed.

    A deployed lab uses the Redis at `broker_url` when given (a private server: left as it is)."""
    import pytest

    if mode == "embedded":
        lab = Lab(mode, folder)
        try:
            yield lab
        finally:
            lab.close()
        return
    shared_redis = broker_url is None
    if not (postgres_reachable() and (redis_reachable() or not shared_redis)):  # both modes are supported
        pytest.fail(f"the deployed mode needs PostgreSQL ({POSTGRES_SERVER}, $IDLAB_TEST_POSTGRES) and Redis "
                    f"({REDIS_URL}, $IDLAB_TEST_REDIS): start them")
    if shared_redis:
        flush_redis()
    url = create_database()
    lab = None
    try:
        lab = Lab(mode, folder, database_url=url, broker_url=broker_url or REDIS_URL)
        yield lab
    finally:
        if lab is not None:
            lab.close()
        drop_database(url)
        if shared_redis:
            flush_redis()
