"""Wall time of a sweep through a real `idlab worker`: one run per execution against batches of K.

    python -m bench.worker_sweep                               # li-mnist-fc, 21 runs, 1 epoch of 1,000 examples
    python -m bench.worker_sweep --batch-runs 1 7 21 --epochs 2 --train-size 6000 --json
    python -m bench.worker_sweep --batch-runs 21 --concurrency 1 2 --threads 1 --train-size 6000 --api
    python -m bench.worker_sweep --batch-runs 21 --train-size 60000 --test-size 10000 --epochs 100   # full budget

`bench.sweep` times the engine alone; this times what a user waits for. Each setting gets a fresh
embedded lab (SQLite, the filesystem queue) in a temporary folder, whose datasets are the ones
of IDLAB_DATA_DIR (linked, not copied), and one worker started with `--batch-runs K` and
`--concurrency C` (its training processes; default: the worker's own, one per core on a CPU).
Once the worker has registered, the preset's subspace runs (`bench.sweep.sweep_configs`: base
× grid × seeds, with the budget's overrides) are queued and sent, and the clock runs until the
last one has finished. Per setting it reports

    wall_s           queueing the first run → the last run finished
    runs_per_hour    runs / wall_s · 3600
    executions       pool processes that trained (one per batch; a batchmate's own message is dropped)
    test_acc         every run's final test accuracy, in run order

and each setting's speed-up over the first and its largest difference of a run's test accuracy from it.
With --api the lab's API runs beside the worker (uvicorn, as `idlab serve` starts it) and is asked
for the runs table (GET /api/runs?limit=50) every half second, idle before the sweep and while it
trains: `api_idle_ms` and `api_busy_ms` are the median and the slowest answer of each.
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


def one_setting(batch_runs: int, concurrency: int | None, args, source: Path) -> dict:
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
        command = [sys.executable, "-m", "idlab.launchers.cli", "worker", "--name", "bench@%h", "--loglevel", "WARNING"]
        if concurrency is not None:
            command += ["--concurrency", str(concurrency)]
        with open(lab / "worker.log", "wb") as log:   # the worker writes to its own copy of the descriptor
            worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        api = _start_api(lab, env) if args.api else None
        try:
            _wait_registered(sessions, worker, lab)
            probe = ApiProbe(api[1]) if api else None
            idle = probe.sample(seconds=5) if probe else []
            configs = sweep_configs(args.preset, args.epochs, args.train_size, args.test_size, "cpu"
                                    if args.device == "cpu" else args.device)
            if probe:
                probe.start()
            ids, wall = _sweep(sessions, celery, worker, lab, configs, progress=args.progress)
            busy = probe.stop() if probe else []
            with sessions() as session:
                finished = {run.id: run for run in session.scalars(select(Run).where(Run.id.in_(ids)))}
            batches = {run.batch_id or f"alone-{run.id}" for run in finished.values()}
        finally:
            for process in [worker] + ([api[0]] if api else []):
                _stop(process)
            engine.dispose()
        result = {"batch_runs": batch_runs, "concurrency": concurrency or "default", "threads": args.threads,
                  "preset": args.preset, "runs": len(ids), "epochs": args.epochs, "train_size": args.train_size,
                  "wall_s": round(wall, 2), "runs_per_hour": round(len(ids) / wall * 3600, 1),
                  "executions": len(batches), "statuses": sorted({run.status for run in finished.values()}),
                  "test_acc": [finished[i].final_metrics.get("test_acc") for i in ids]}
        if args.api:
            result["api_idle_ms"] = _latency(idle)
            result["api_busy_ms"] = _latency(busy)
        return result


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def _start_api(lab: Path, env: dict) -> tuple[subprocess.Popen, str]:
    """The lab's API on a free loopback port, as `idlab serve` starts it; returns the process and its URL."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(lab / "api.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", "backend.api.app:create_app", "--factory",
                                    "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process, f"http://127.0.0.1:{port}"


class ApiProbe:
    """Asks the API for the runs table every half second, in a thread; keeps each answer's time in ms."""

    def __init__(self, url: str):
        import threading

        import httpx

        self.client = httpx.Client(base_url=url, timeout=30)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.client.get("/api/health").status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API did not start (see api.log in the lab's folder)")
            time.sleep(0.2)
        self.times: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def once(self) -> float:
        start = time.perf_counter()
        self.client.get("/api/runs", params={"limit": 50}).raise_for_status()
        return (time.perf_counter() - start) * 1000

    def sample(self, seconds: float) -> list[float]:
        times, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            times.append(self.once())
            time.sleep(0.5)
        return times

    def _loop(self) -> None:
        while not self.done.wait(0.5):
            self.times.append(self.once())

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> list[float]:
        self.done.set()
        self.thread.join(30)
        return self.times


def _latency(times: list[float]) -> dict:
    import statistics

    if not times:
        return {}
    return {"median": round(statistics.median(times), 1), "max": round(max(times), 1), "n": len(times)}


def _wait_registered(sessions, worker: subprocess.Popen, lab: Path) -> None:
    """Until the worker has registered in the lab's database (at most two minutes)."""
    from sqlalchemy import func, select

    from backend.domain.models import Worker

    deadline = time.monotonic() + 120
    while not _scalar(sessions, select(func.count()).select_from(Worker)):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker did not start:\n{(lab / 'worker.log').read_text()[-3000:]}")
        time.sleep(0.2)


def _sweep(sessions, celery, worker: subprocess.Popen, lab: Path, configs: list, progress: bool = False,
           ) -> tuple[list[int], float]:
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
    reported = 0
    while True:
        done = _scalar(sessions, select(func.count()).select_from(Run).where(Run.status.in_(FINISHED)))
        if progress and done != reported:
            reported = done
            print(f"{time.perf_counter() - began:8.1f} s: {done} of {len(ids)} runs finished", file=sys.stderr,
                  flush=True)
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
    parser.add_argument("--concurrency", nargs="+", type=int, default=[None],
                        help="the worker's training processes, one setting each (default: the worker's own)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads of each training process")
    parser.add_argument("--api", action="store_true", help="run the API beside the worker and time its answers")
    parser.add_argument("--progress", action="store_true", help="say on stderr each time a run finishes")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    source = data_source()
    results = []
    for batch_runs in args.batch_runs:
        for concurrency in args.concurrency:
            result = one_setting(batch_runs, concurrency, args, source)
            results.append(result)
            if not args.json:
                api = (f", API {result['api_idle_ms']} idle, {result['api_busy_ms']} training"
                       if args.api else "")
                print(f"K = {batch_runs:>3}, processes {result['concurrency']}: {result['runs']} runs in "
                      f"{result['wall_s']:7.2f} s ({result['runs_per_hour']:8.1f} runs/h, {result['executions']} "
                      f"executions), statuses {','.join(result['statuses'])}{api}", flush=True)
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
            print(f"K = {result['batch_runs']}, processes {result['concurrency']}: {result['speedup']:.2f}× the "
                  f"first setting, largest test_acc difference {result['max_test_acc_difference']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
