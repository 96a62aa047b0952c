"""`idlab worker`: a Celery worker that executes runs, against the configured database and broker.

    idlab worker                                 queues by hardware; one process per core on a CPU, one on a GPU
    idlab worker --queues cpu --concurrency 2    two CPU runs (or batches) at a time
    idlab worker --batch-runs 64                 up to 64 compatible subspace runs trained as one batch
    IDLAB_DATABASE_URL=postgresql+psycopg2://… IDLAB_BROKER_URL=redis://…:6379/0 idlab worker --name gpu0@%h

It binds no port. It applies the database migrations first (safe when several
start at once), then runs Celery's prefork pool: every run executes in a fresh
child process. Give each worker on one machine its own --name (one per GPU, with
CUDA_VISIBLE_DEVICES): the name identifies it in the workers table.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

DEFAULT_NAME = "idlab@%h"
LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queues", help="comma-separated queues to consume: gpu, cpu (default: gpu,cpu with CUDA, "
                                         "cpu,gpu without — a CPU-only worker also runs device-auto runs)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="runs (or batches) executed at once, each in its own process (default: one per core on a "
                             "CPU-only machine, with one torch thread each; 1 with a GPU)")
    parser.add_argument("--batch-runs", type=int, metavar="K",
                        help="subspace runs trained together as one batch when they share data, model and batch "
                             "size (default: $IDLAB_BATCH_RUNS, else 32 on a GPU, 4 on a CPU; 1: each run alone)")
    parser.add_argument("--name", default=DEFAULT_NAME, help="the worker's node name; %%h is the host name")
    parser.add_argument("--data-dir", help="the lab's folder: datasets and the embedded database and queue "
                                           "(default: $IDLAB_DATA_DIR or ./idlab-data)")
    parser.add_argument("--loglevel", default="INFO", help="DEBUG, INFO, WARNING or ERROR")


def command_worker(args: argparse.Namespace) -> int:
    if args.concurrency is None:
        from worker.devices import training_processes

        args.concurrency = training_processes()
    if args.concurrency < 1:
        raise SystemExit("--concurrency must be at least 1")
    if args.batch_runs is not None and not 1 <= args.batch_runs <= 256:
        raise SystemExit("--batch-runs must be between 1 and 256")
    configure_environment(args.data_dir, args.concurrency, args.batch_runs)
    logging.basicConfig(level=args.loglevel.upper(), format=LOG_FORMAT)

    from backend.domain.migrate import upgrade
    from backend.domain.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings.database)

    from backend.domain.queue import celery_app, create_broker_folders
    from worker.devices import default_queues

    create_broker_folders(settings)
    queues = args.queues or ",".join(default_queues())
    celery_app.worker_main([
        "worker", "--queues", queues, "--concurrency", str(args.concurrency), "--pool", "prefork",  # worker.pool's
        "--hostname", args.name, "--loglevel", args.loglevel.upper(),
        # Gossip, mingle and worker heartbeats are Celery's cluster events: the lab's record of
        # workers is the database, and on the filesystem broker they would only add traffic.
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ])
    return 0


def configure_environment(data_dir: str | None, concurrency: int, batch_runs: int | None = None) -> None:
    """Settings reach this process and its pool processes through the environment (written here, read
    by Settings)."""
    from backend.domain.settings import Settings

    if data_dir:
        os.environ["IDLAB_DATA_DIR"] = str(Path(data_dir).expanduser().resolve())
    if batch_runs is not None:
        os.environ["IDLAB_BATCH_RUNS"] = str(batch_runs)
    os.environ["IDLAB_WORKER_PROCESSES"] = str(concurrency)
    # Ask NVML, not CUDA, whether there is a GPU: a forking parent must not initialise CUDA.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    if concurrency > 1 and Settings().torch_threads is None:
        from worker.devices import usable_cores

        # Runs that execute side by side share the cores instead of oversubscribing them.
        os.environ["IDLAB_TORCH_THREADS"] = str(max(1, usable_cores() // concurrency))
