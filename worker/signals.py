"""Celery's worker signals, wired to the lab: registration, maintenance, graceful stop.

Main process:
    worker_ready          register the worker (idle, its device class and queues) and start the
                          maintenance thread (alive stamps + reaper)
    worker_shutting_down  forward SIGTERM to the pool process that executes a run (and to any
                          that starts one until the worker has stopped), so the run is handed
                          back to the queue at once instead of being waited for (hours) or
                          killed and left to the reaper; stop reaping (a re-sent message could
                          come straight back to this worker)
    worker_shutdown       (the pool has stopped) stop the maintenance thread, send again the
                          messages of the runs handed back, record that the worker runs nothing
Pool process:
    worker_process_init   have the kernel send SIGTERM, not Celery's SIGKILL, when the main
                          process dies, so an orphaned run is handed back too (`worker.shutdown`);
                          `kill -USR2 <pid>` prints the process's stacks to the log; lower its
                          priority to `train_niceness`
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

from celery import platforms
from celery.signals import worker_process_init, worker_ready, worker_shutdown, worker_shutting_down
from sqlalchemy.orm import Session

from backend.domain.db import make_engine
from backend.domain.queue import celery_app
from backend.domain.settings import get_settings
from idlab import plugins
from worker import presence, shutdown
from worker.devices import has_cuda, lower_priority
from worker.fork_guard import guarded
from worker.maintenance import Maintenance
from worker.reaper import resend_handed_back

log = logging.getLogger(__name__)

_state: dict = {}
FORWARD_SECONDS = 0.2


@contextlib.contextmanager
def _main_process_session() -> Iterator[Session]:
    # This process forks a pool process per run: no fork mid-query, no pooled connection kept.
    engine = make_engine(get_settings().database, pooled=False)
    try:
        with guarded(), Session(engine) as session:
            yield session
    finally:
        engine.dispose()


@worker_ready.connect
def on_worker_ready(sender=None, **_) -> None:
    consumer = sender
    name = consumer.hostname
    queues = sorted(queue.name for queue in consumer.task_consumer.queues) if consumer.task_consumer else []
    device = "cuda" if has_cuda() else "cpu"
    with _main_process_session() as session:
        presence.register(session, name, device, queues)
    maintenance = Maintenance(get_settings(), consumer.app, name)
    maintenance.start()
    _state.update(name=name, maintenance=maintenance)
    log.info("worker %s ready: device %s, queues %s", name, device, ",".join(queues))
    log.info("worker %s: %s", name, plugins.summary())     # discovered now: a broken plugin is logged at start


@worker_shutting_down.connect
def on_worker_shutting_down(**_) -> None:
    shutdown.worker_stopping.set()
    if "maintenance" in _state:  # no more reaping here: it could send this worker a message it would take
        _state["maintenance"].stopping.set()
    if "forwarder" not in _state:
        _state["forwarder"] = forwarder = threading.Thread(target=_forward_sigterm, name="idlab-stop-runs",
                                                           daemon=True)
        forwarder.start()


def _forward_sigterm() -> None:
    """Until this process exits, SIGTERM every pool process that executes a run.

    Not only once: until the consumer has closed (a second or two), it may still hand
    the pool another run's message.
    """
    from celery.worker import state

    signalled: set[int] = set()
    while True:
        try:
            pids = {request.worker_pid for request in list(state.active_requests) if request.worker_pid}
        except RuntimeError:  # the set changed while it was read: read it again
            continue
        for pid in pids - signalled:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            signalled.add(pid)
        time.sleep(FORWARD_SECONDS)


@worker_shutdown.connect
def on_worker_shutdown(sender=None, **_) -> None:
    maintenance = _state.pop("maintenance", None)
    if maintenance is not None:
        maintenance.stop()
    name = _state.pop("name", None)
    if name is not None:
        try:
            with _main_process_session() as session:
                presence.stopped(session, name)
                resent = resend_handed_back(session, sender.app if sender else celery_app, name)
            if resent:
                log.info("runs handed back to the queue: %s", ", ".join(map(str, resent)))
        except Exception:
            log.exception("could not record that worker %s stopped", name)


@worker_process_init.connect
def on_pool_process_start(**_) -> None:
    platforms.set_pdeathsig("SIGTERM")
    # Pool processes train; the main process (its loop, its heartbeats) and the API are scheduled first.
    lower_priority(get_settings().train_niceness)
    # `kill -USR2 <pid>` prints every thread's stack to the worker's log: for a run that seems stuck.
    faulthandler.register(signal.SIGUSR2, file=sys.__stderr__, all_threads=True)
