"""`idlab serve`: the whole lab from one command, with no server to install.

    idlab serve                      http://127.0.0.1:8000, data in ./idlab-data
    idlab serve --port 8080 --data-dir ~/lab

Unless IDLAB_DATABASE_URL / IDLAB_BROKER_URL say otherwise, the database is SQLite
(<data_dir>/idlab.db) and the broker Kombu's filesystem queue (<data_dir>/broker).
This process supervises two children:

    api      uvicorn serving backend.api.app:create_app (--factory) on --host/--port
    worker   `idlab worker` (one training process per core on a CPU; consumes cpu and gpu runs)

and runs the reaper itself, so a run whose worker died is requeued even while the
worker restarts. A worker that exits is restarted, after 1, 2, 4 … up to 30 seconds
(back to 1 once it has stayed up a minute). The API exiting (port taken, a crash)
stops the lab. Ctrl-C or SIGTERM stops both children together: each gets SIGTERM (a
running run is handed back to the queue, and resumes from its start at the next
`idlab serve`), and whatever still runs after STOP_GRACE_SECONDS is killed with its
process group. The children die with this process even when it is killed outright
(`idlab.launchers.supervised`).

In the embedded mode the API and the training share the machine's cores: the worker
trains one run (or batch) per core, each with one torch thread (`idlab worker`'s
default on a CPU, `worker.devices.training_processes`), at niceness `train_niceness`,
so every core trains and the API, scheduled first, stays responsive.

Listening on anything but loopback (`--host 0.0.0.0`, a LAN address) exposes the lab to
the network, so serve then refuses to start without an API token (IDLAB_API_TOKEN; the
message says how to make one), and adds the names the lab is reached by to the host names
it answers to (IDLAB_ALLOWED_HOSTS): the address given, or for a wildcard address this
machine's host name and fully qualified name (a loopback address other than 127.0.0.1 is
added too, without needing a token). Any other name or address a browser uses
(an IP address, a DNS alias) must be added to IDLAB_ALLOWED_HOSTS; serve prints the list.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("idlab.serve")

STOP_GRACE_SECONDS = 20.0
API_GRACE_SECONDS = 5
RESTART_BACKOFF_SECONDS = (1, 2, 4, 8, 16, 30)
STABLE_AFTER_SECONDS = 60.0
POLL_SECONDS = 0.5


@dataclass
class Child:
    """A supervised child process: its command, and when it may start again."""

    name: str
    argv: list[str]
    restart: bool
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0
    start_after: float = 0.0
    env: dict = field(default_factory=dict)

    def start(self) -> None:
        command = [sys.executable, "-m", "idlab.launchers.supervised", str(os.getpid()), *self.argv]
        # Its own session: Ctrl-C reaches only serve, which stops the children in order.
        self.process = subprocess.Popen(command, env=self.env, start_new_session=True)
        self.started_at = time.monotonic()
        log.info("started %s (pid %s)", self.name, self.process.pid)

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def kill_group(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # the worker's pool processes share its group

    def schedule_restart(self) -> float:
        """After an exit: wait longer the more often it failed quickly; returns the delay."""
        lived = time.monotonic() - self.started_at
        self.failures = 1 if lived >= STABLE_AFTER_SECONDS else self.failures + 1
        delay = RESTART_BACKOFF_SECONDS[min(self.failures, len(RESTART_BACKOFF_SECONDS)) - 1]
        self.start_after = time.monotonic() + delay
        self.process = None
        return delay


class Stop(Exception):
    pass


def serve(host: str, port: int, data_dir: str | None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = child_environment(data_dir)
    os.environ["IDLAB_DATA_DIR"] = env["IDLAB_DATA_DIR"]

    from backend.api.guard import LOCAL_HOSTS, normalise
    from backend.domain.migrate import upgrade
    from backend.domain.queue import make_celery
    from backend.domain.settings import get_settings
    from worker.maintenance import Maintenance

    get_settings.cache_clear()
    settings = get_settings()
    exposed = not is_loopback(host)
    if exposed and not settings.api_token:
        print(no_token_message(host), file=sys.stderr, flush=True)
        return 2
    hosts = [*settings.allowed_hosts, *(name for name in served_names(host)
                                        if name not in settings.allowed_hosts and normalise(name) not in LOCAL_HOSTS)]
    if hosts:
        env["IDLAB_ALLOWED_HOSTS"] = ",".join(hosts)
    upgrade(settings.database)  # once here, before the API and the worker both try
    api, worker = lab_children(host, port, env)
    children = [api, worker]
    maintenance = Maintenance(settings, make_celery(settings))

    def request_stop(signum, _frame):
        raise Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        for child in children:
            child.start()
        maintenance.start()
        announce(host, port, settings, hosts if exposed else None)
        code = supervise(api, worker)
    except Stop as stop:
        log.info("%s: stopping the lab", stop)
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the stopping
        stop_children(children)
        maintenance.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def lab_children(host: str, port: int, env: dict[str, str]) -> tuple[Child, Child]:
    """The API (not restarted: its exit stops the lab) and the worker (restarted when it exits)."""
    api = Child("api", [sys.executable, "-m", "uvicorn", "backend.api.app:create_app", "--factory",
                        "--host", host, "--port", str(port),
                        # open event streams must not hold the stop up
                        "--timeout-graceful-shutdown", str(API_GRACE_SECONDS),
                        # the browser polls and streams: a line per request would bury the lab's own messages
                        "--no-access-log"],
                restart=False, env=env)
    worker = Child("worker", [sys.executable, "-m", "idlab.launchers.cli", "worker",
                              "--name", f"embedded@{socket.gethostname()}"],
                   restart=True, env=env)
    return api, worker


def announce(host: str, port: int, settings, exposed_hosts: list[str] | None) -> None:
    """Where the lab is; on a non-loopback address (`exposed_hosts` not None), the host names it answers to."""
    print(f"idlab: the lab is at http://{host}:{port}  (data: {settings.data_dir.resolve()}, database: "
          f"{redact(settings.database)}, broker: {redact(settings.broker)}); Ctrl-C stops it", flush=True)
    if exposed_hosts is not None:
        print(f"idlab: listening on {host}: writes need the API token; the lab answers to the host names "
              f"{', '.join(['localhost', '127.0.0.1', '[::1]', *exposed_hosts])}. To reach it by another name or "
              "address (an IP address, a DNS alias), add that to IDLAB_ALLOWED_HOSTS (comma-separated).",
              flush=True)


def supervise(api: Child, worker: Child) -> int:
    """Watch both children until the API exits; restart the worker when it exits."""
    while True:
        code = api.exited()
        if code is not None:
            log.error("the API exited with code %s: stopping the lab", code)
            return code or 1
        if worker.process is None:
            if time.monotonic() >= worker.start_after:
                worker.start()
        elif (code := worker.exited()) is not None:
            delay = worker.schedule_restart()
            log.warning("the worker exited with code %s; restarting it in %s s", code, delay)
        time.sleep(POLL_SECONDS)


def stop_children(children: list[Child]) -> None:
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while any(child.running() for child in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    for child in children:
        if child.running():
            log.warning("%s did not stop within %s s: killing it", child.name, STOP_GRACE_SECONDS)
        child.kill_group()  # also any pool process left behind by a worker that exited
        if child.process is not None:
            child.process.wait()


def child_environment(data_dir: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["IDLAB_DATA_DIR"] = str(Path(data_dir or env.get("IDLAB_DATA_DIR") or "idlab-data").expanduser().resolve())
    return env


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the lab to this machine: localhost, 127.0.0.0/8, ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False   # a host name: whatever it resolves to, others may reach it


def served_names(host: str) -> list[str]:
    """The names a browser reaches a lab listening on `host` by, as IDLAB_ALLOWED_HOSTS spells them: the
    address itself, or for a wildcard (0.0.0.0, ::) this machine's host name and fully qualified name."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return [host.lower()]
    if address.is_unspecified:
        names = [socket.gethostname().lower(), socket.getfqdn().lower()]
        return [name for i, name in enumerate(names) if name and name not in names[:i] and not is_loopback(name)]
    return [f"[{address}]" if address.version == 6 else str(address)]


def no_token_message(host: str) -> str:
    return (f"idlab serve: refusing to listen on {host} without an API token: anyone who reaches this machine could "
            "queue, cancel and retry runs. Set one first, then give it to the dashboard (its Token box) and to "
            "idlab.client:\n"
            "    export IDLAB_API_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\n"
            "(or put IDLAB_API_TOKEN=... in the .env file of the folder you start from). Without --host the lab "
            "listens on 127.0.0.1, for this machine only, and needs no token.")


def redact(url: str) -> str:
    """A URL without its password, for printing."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"
