"""The Celery task: execute one run, given its id. Imported by worker processes only (it loads torch).

The message carries only the run id; everything else is in the database. The task
claims the run first (queued → running, atomically): a message delivered twice, or
a message for a run cancelled while queued, executes nothing. See
`worker.execution` for the execution itself and `worker.reaper` for what happens
when a worker vanishes.
"""

from __future__ import annotations

import logging

from celery.exceptions import Reject

from backend.domain.queue import EVALUATE_TASK, TRAIN_TASK, celery_app
from backend.domain.settings import get_settings
from worker import shutdown
from worker import signals as _hooks  # noqa: F401 - connects the worker's signal handlers
from worker.evaluation import evaluate_stored
from worker.execution import execute

log = logging.getLogger(__name__)


def preload_engine() -> None:
    """Import the engine and what its first step imports lazily, once, in the worker's main process.

    Each run executes in a freshly forked pool process (one task per child): whatever
    the parent imported is there already, instead of costing each run seconds.
    Importing starts no thread and touches no GPU, so forking stays safe.
    """
    import torch._dynamo  # noqa: F401 - the optimizers import it on their first step

    import worker.subspace.data  # noqa: F401
    import worker.subspace.training  # noqa: F401


preload_engine()


@celery_app.task(name=TRAIN_TASK, bind=True)
def train_run(self, run_id: int) -> str:
    with shutdown.executing() as stopping:
        if shutdown.worker_stopping.is_set() or stopping.is_set():
            # The worker is shutting down: start nothing, give the message back to the broker.
            raise Reject(f"worker {self.request.hostname} is shutting down", requeue=True)
        outcome = execute(int(run_id), self.request.hostname, get_settings(), stopping)
    log.info("run %s: %s", run_id, outcome)
    return outcome


@celery_app.task(name=EVALUATE_TASK, bind=True)
def evaluate_model(self, evaluation_id: int) -> str:
    """Rebuild a model file sent to `POST /api/models/evaluate` and test it on the lab's data."""
    with shutdown.executing() as stopping:
        if shutdown.worker_stopping.is_set() or stopping.is_set():
            raise Reject(f"worker {self.request.hostname} is shutting down", requeue=True)
        outcome = evaluate_stored(int(evaluation_id), self.request.hostname, get_settings())
    log.info("model evaluation %s: %s", evaluation_id, outcome)
    return outcome
