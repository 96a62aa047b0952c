"""Wall time of a sweep through a real `idlab worker`: one run per execution against batches of K.

    python -m bench.worker_sweep                               # li-mnist-fc, 21 runs, 1 epoch of 1,000 examples
    python -m bench.worker_sweep --batch-runs 1 7 21 --epochs 2 --train-size 6000 --json

`bench.sweep` times the engine alone; this times what a user waits for. Each setting gets a fresh
embedded lab (SQLite, the filesystem queue) in a temporary folder, whose datasets are the ones
of IDLAB_DATA_DIR (linked, not copied), and one worker process started with `--batch-runs K`.
Once the worker has registered, the preset's subspace runs (`bench.sweep.sweep_configs`: base
× grid × seeds, with the budget's overrides) are queued and sent, and the clock runs until the
last one has finished. Per setting it reports

    wall_s           queueing the first run → the last run finished
    runs_per_hour    runs / wall_s · 3600
    executions       pool processes that trained (one per batch; a batchmate's own message is dropped)
    test_acc         every run's final test accuracy, in run order

and each setting's speed-up over K = 1 and its largest difference of a run's test accuracy from K = 1.
What batches save on a CPU is the per-run overhead — a pool process per run, the data loaded
per run, the database per run — so short runs gain most; on a GPU a batch also fills the device.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def data_source() -> Path:
    folder = os.environ.get("IDLAB_DATA_DIR")
    if not folder:
        raise SystemExit("set IDLAB_DATA_DIR to the folder that holds the datasets (e.g. ../shared/data)")
    return Path(folder).resolve()


def one_setting(batch_runs: int, args, source: Path) -> dict:
    from sqlalchemy import select
    from sqlalchemy.orm import sessionmaker

    from backend.domain.db import make_engine
    from backend.domain.migrate import upgrade
    from backend.domain.models import Run
    from backend.domain.queue import make_celery
    from backend.domain.settings import Settings
    from bench.sweep import sweep_configs

    with tempfile.TemporaryDirectory(prefix="idlab-bench-") as folder:
        lab = Path(folder)
        for entry in source.iterdir():          # the datasets, without copying them
            (lab / entry.name).symlink_to(entry)
        settings = Settings(_env_file=None, data_dir=lab)
        upgrade(settings.database)
        engine = make_engine(settings.database)
        sessions = sessionmaker(bind=engine, expire_on_commit=False)
        celery = make_celery(settings)
        env = {key: value for key, value in os.environ.items() if not key.startswith("IDLAB_")}
        env.update(IDLAB_DATA_DIR=str(lab), IDLAB_BATCH_RUNS=str(batch_runs), PYTHONUNBUFFERED="1")
        if args.threads:
            env["IDLAB_TORCH_THREADS"] = str(args.threads)
        with open(lab / "worker.log", "wb") as log:   # the worker writes to its own copy of the descriptor
            worker = subprocess.Popen([sys.executable, "-m", "idlab.launchers.cli", "worker", "--name", "bench@%h",
                                       "--loglevel", "WARNING"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            _wait_registered(sessions, worker, lab)
            configs = sweep_configs(args.preset, args.epochs, args.train_size, args.test_size, "cpu"
                                    if args.device == "cpu" else args.device)
            ids, wall = _sweep(sessions, celery, worker, lab, configs)
            with sessions() as session:
                finished = {run.id: run for run in session.scalars(select(Run).where(Run.id.in_(ids)))}
            batches = {run.batch_id or f"alone-{run.id}" for run in finished.values()}
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
            engine.dispose()
        return {"batch_runs": batch_runs, "preset": args.preset, "runs": len(ids), "epochs": args.epochs,
                "train_size": args.train_size, "wall_s": round(wall, 2),
                "runs_per_hour": round(len(ids) / wall * 3600, 1), "executions": len(batches),
                "statuses": sorted({run.status for run in finished.values()}),
                "test_acc": [finished[i].final_metrics.get("test_acc") for i in ids]}


def _wait_registered(sessions, worker: subprocess.Popen, lab: Path) -> None:
    """Until the worker has registered in the lab's database (at most two minutes)."""
    from sqlalchemy import func, select

    from backend.domain.models import Worker

    deadline = time.monotonic() + 120
    while not _scalar(sessions, select(func.count()).select_from(Worker)):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker did not start:\n{(lab / 'worker.log').read_text()[-3000:]}")
        time.sleep(0.2)


def _sweep(sessions, celery, worker: subprocess.Popen, lab: Path, configs: list) -> tuple[list[int], float]:
    """Queue and send a run per config; returns their ids and the seconds until the last one finished."""
    from sqlalchemy import func, select

    from backend.domain import lifecycle
    from backend.domain.models import FINISHED, Run
    from backend.domain.queue import enqueue_run

    began = time.perf_counter()
    with sessions() as session:
        runs = [lifecycle.new_run(config) for config in configs]
        session.add_all(runs)
        session.commit()
        ids = [run.id for run in runs]
    for run in runs:
        enqueue_run(run.id, run.config, app=celery)
    while True:
        done = _scalar(sessions, select(func.count()).select_from(Run).where(Run.status.in_(FINISHED)))
        if done == len(ids):
            break
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited:\n{(lab / 'worker.log').read_text()[-3000:]}")
        time.sleep(0.1)
    return ids, time.perf_counter() - began


def _scalar(sessions, statement):
    with sessions() as session:
        return session.scalar(statement)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="li-mnist-fc")
    parser.add_argument("--batch-runs", nargs="+", type=int, default=[1, 7, 21], help="K of each setting")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads of the worker")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    source = data_source()
    results = []
    for batch_runs in args.batch_runs:
        result = one_setting(batch_runs, args, source)
        results.append(result)
        if not args.json:
            print(f"K = {batch_runs:>3}: {result['runs']} runs in {result['wall_s']:7.2f} s "
                  f"({result['runs_per_hour']:8.1f} runs/h, {result['executions']} executions), "
                  f"statuses {','.join(result['statuses'])}", flush=True)
    base = results[0]
    for result in results:
        result["speedup"] = round(base["wall_s"] / result["wall_s"], 2)
        result["max_test_acc_difference"] = max(
            (abs(a - b) for a, b in zip(result["test_acc"], base["test_acc"], strict=True)
             if a is not None and b is not None),
            default=None)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results[1:]:
            print(f"K = {result['batch_runs']}: {result['speedup']:.2f}× K = {base['batch_runs']}, largest test_acc "
                  f"difference {result['max_test_acc_difference']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
