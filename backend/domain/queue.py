"""The queue producer: the Celery application; the broker carries only run ids, the database decides what runs.

The domain's queue producer: the API and a search's next round (`search_rounds`)
enqueue through `enqueue_run`, without torch or HTTP. The training task's module
(`worker.tasks`, in `include`) registers on `celery_app` and is imported by worker
processes only.

Reliability settings, and why:
    task_acks_late + task_reject_on_worker_lost   a message is acknowledged only after its run ended,
                                                   and given back if the pool process dies
    worker_prefetch_multiplier = 1                 a worker holds one message at a time
    worker_max_tasks_per_child = 1                 every run gets a fresh process (CUDA memory, leaks);
                                                   `worker.pool` replaces it without delay
    visibility_timeout (Redis)                     longer than the longest run, so Redis does not
                                                   redeliver a run still training
Duplicate deliveries are harmless: the task claims its run in the database first
(queued → running, atomically), and a message for a run that is not queued is dropped.
Neither broker is trusted to redeliver the message of a worker that was killed (the
filesystem transport cannot: a message is a file moved away when it is read; Redis
would, but only after the visibility timeout). The runs table, the heartbeats and
the reaper (`worker.reaper`) decide what still has to run, and send it again.

The embedded broker is Kombu's filesystem transport under <data_dir>/broker:
    queue/       one file per message; producers write and consumers read the same folder
    processed/   a read message is renamed here: a rename is atomic, so two workers
                 polling one queue never both take the same message (the transport's
                 default, a move to the system temp folder, can cross file systems and
                 then copies, which two consumers can both do); the reaper prunes it
    control/     the exchange → queue bindings, which fanout exchanges (remote control:
                 `celery inspect ping`, broadcast) need to reach every worker
"""

from __future__ import annotations

import time

from celery import Celery

from backend.domain.settings import Settings, get_settings

TRAIN_TASK = "idlab.train_run"
#: A model file rebuilt and evaluated on the lab's data (backend.domain.evaluations).
EVALUATE_TASK = "idlab.evaluate_model"
WEEK_SECONDS = 7 * 24 * 3600
QUEUES = ("gpu", "cpu")
BROKER_FOLDERS = ("queue", "processed", "control")
#: Read messages are kept this long in processed/ (for a look when debugging), then deleted.
PROCESSED_KEEP_SECONDS = 3600.0


def queue_for(config: dict) -> str:
    """The queue a run goes to: its device class (`gpu` for cuda and auto, `cpu` for cpu)."""
    return "cpu" if config.get("device") == "cpu" else "gpu"


def broker_options(settings: Settings) -> dict:
    """Transport options for the configured broker."""
    if not settings.broker.startswith("filesystem"):
        return {"visibility_timeout": WEEK_SECONDS}
    folder = settings.embedded_broker_dir
    return {"data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
            "store_processed": True, "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control")}


def create_broker_folders(settings: Settings) -> None:
    """The embedded broker's folders, which its transport expects to exist (nothing for Redis)."""
    if settings.broker.startswith("filesystem"):
        for sub in BROKER_FOLDERS:
            (settings.embedded_broker_dir / sub).mkdir(parents=True, exist_ok=True)


def prune_processed_messages(settings: Settings, keep_seconds: float = PROCESSED_KEEP_SECONDS) -> int:
    """Delete the embedded broker's read messages older than `keep_seconds`; returns how many."""
    if not settings.broker.startswith("filesystem"):
        return 0
    folder = settings.embedded_broker_dir / "processed"
    cutoff, removed = time.time() - keep_seconds, 0
    for path in folder.glob("*.msg") if folder.is_dir() else ():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # pruned by another process meanwhile
            pass
    return removed


def make_celery(settings: Settings | None = None, create_folders: bool = True) -> Celery:
    settings = settings or get_settings()
    if create_folders:
        create_broker_folders(settings)
    # "filesystem://" names no host, which Kombu warns about on every connection.
    broker = "filesystem://localhost//" if settings.broker == "filesystem://" else settings.broker
    app = Celery("idlab", broker=broker, include=["worker.tasks"])
    app.conf.update(
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=1,
        worker_pool="worker.pool:TaskPool",  # prefork, replacing each finished pool process at once
        # A running task keeps running when the broker connection drops: its message is
        # acknowledged by id later, and the database, not a redelivery, owns the run.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue="gpu",
        worker_hijack_root_logger=False,
        # Task events are not used (the database is the record); workers stay quiet on the broker.
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


# Importing this module (a notebook importing the backend, say) creates nothing on disk: the
# API's app and `idlab worker` create the embedded broker's folders when they start.
celery_app = make_celery(create_folders=False)


def enqueue_run(run_id: int, config: dict, app: Celery | None = None) -> None:
    """Send the message that asks a worker to execute run `run_id` (after the run was committed)."""
    (app or celery_app).send_task(TRAIN_TASK, args=[run_id], queue=queue_for(config))
