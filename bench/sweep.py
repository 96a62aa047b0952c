"""Wall time of a real sweep through the engine: serial (one `training.train` after another) against batched.

    python -m bench.sweep                                   # li-mnist-fc, 7 d × 3 seeds, 1 epoch
    python -m bench.sweep --epochs 1 --train-size 6000 --k 21 --json
    python -m bench.sweep --forwards --ks 1 4 8 --d 750     # one step: explicit products against vmap

Sweep. The runs are a preset's experiment (`idlab.presets.get(...).request`: base × grid × seeds;
its direct baseline runs, if any, are left out), with epochs, train_size and test_size overridden
to fit a budget. `serial` trains them one after another in one process, `batched` in batches of
at most K compatible runs (`batched.train_batch`), each mode in a fresh process on the same
device, so that its peak memory is its own. For each mode it reports

    wall_s            the whole sweep, data loading excluded
    runs_per_hour     runs / wall_s · 3600
    run_steps_per_s   Σ_runs steps / wall_s   (optimizer steps of single runs per second)
    peak_mb           CPU: the process's maximum resident set (getrusage ru_maxrss, data and torch
                      included); CUDA: torch.cuda.max_memory_allocated
    test_acc          every run's final test accuracy (the batched run equals its serial run)

and the speed-up of batched over serial and the largest difference of a run's test accuracy.

Forwards. The time of one batched training step (`batched._step`: Θ_D, the K networks, backward,
K optimizer steps) of K MNIST-FC runs at one d, with the K networks evaluated by explicit batched
products and by torch.func.vmap, next to one solo step (`training.training_step`); the median of
`--steps` steps after two warm-up steps. Reported per run: ms per run-step and run-steps per second.

On a machine shared with other work, give torch one thread (`--threads 1`): with more, every
parallel operation waits for the busiest core, and the timings measure the other work.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

MODES = ("serial", "batched")


def sweep_configs(preset: str, epochs: int, train_size: int | None, test_size: int | None, device: str) -> list:
    """The preset's subspace runs, base × grid × seeds, with the budget's overrides."""
    from idlab import presets
    from idlab.config import RunConfig

    request = presets.get(preset).request
    grid = request.get("grid", {})
    names = list(grid)
    configs = []
    for values in itertools.product(*(grid[name] for name in names)):
        for seed in request.get("seeds") or [0]:
            fields = {**request["base"], **dict(zip(names, values, strict=True)), "seed": seed, "epochs": epochs,
                      "train_size": train_size, "test_size": test_size, "device": device}
            config = RunConfig(**fields)
            if config.method == "subspace":
                configs.append(config)
    return configs


def batches(configs: list, k: int) -> list[list]:
    """Compatible runs (equal `batch_key`) in batches of at most k, in sweep order."""
    from worker.subspace.batched import batch_key

    groups: dict[tuple, list] = {}
    for config in configs:
        groups.setdefault(batch_key(config), []).append(config)
    return [group[i:i + k] for group in groups.values() for i in range(0, len(group), k)]


def _peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_mode(mode: str, args) -> dict:
    """One mode of the sweep, in this process."""
    import torch

    from backend.domain.settings import Settings
    from worker.subspace.batched import train_batch
    from worker.subspace.data import load_dataset
    from worker.subspace.training import resolve_device, train

    if args.threads:
        torch.set_num_threads(args.threads)
    configs = sweep_configs(args.preset, args.epochs, args.train_size, args.test_size, args.device)
    device = resolve_device(configs[0].device)
    splits = load_dataset(configs[0], Settings().data_dir)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    began = time.perf_counter()
    if mode == "serial":
        results = [train(config, splits) for config in configs]
        groups = [1] * len(configs)
    else:
        results, groups = [], []
        for group in batches(configs, args.k):
            results += train_batch(group, splits, forward=args.forward)
            groups.append(len(group))
    sync()
    wall = time.perf_counter() - began
    steps = sum(result.metrics["steps"] for result in results)
    return {"mode": mode, "preset": args.preset, "device": str(device), "threads": torch.get_num_threads(),
            "runs": len(configs), "batches": groups, "epochs": args.epochs, "train_size": len(splits.train_x),
            "test_size": len(splits.test_x), "wall_s": round(wall, 2),
            "runs_per_hour": round(len(configs) / wall * 3600, 1), "run_steps_per_s": round(steps / wall, 1),
            "steps": steps, "peak_mb": round(_peak_mb(device), 1),
            "statuses": sorted({result.status for result in results}),
            "d": [config.d for config in configs], "seed": [config.seed for config in configs],
            "test_acc": [result.metrics.get("test_acc") for result in results]}


def forwards(args) -> list[dict]:
    """Median time of one batched step, explicit against vmap, for each K; and of one solo step."""
    import torch

    from backend.domain.settings import Settings
    from idlab import presets
    from idlab.config import RunConfig
    from worker.subspace import batched
    from worker.subspace.data import load_dataset
    from worker.subspace.stacked import StackedNetworks
    from worker.subspace.training import resolve_device, training_step

    if args.threads:
        torch.set_num_threads(args.threads)
    base = {**presets.get(args.preset).request["base"], "d": args.d, "train_size": args.train_size,
            "test_size": args.test_size, "device": args.device}
    config = RunConfig(**base)
    device = resolve_device(config.device)
    splits = load_dataset(config, Settings().data_dir)
    x, y = splits.train_x.to(device), splits.train_y.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    solo = _started_runs(base, 1, len(x), device)[0]
    solo_ms = _median_ms(functools.partial(training_step, solo.network, solo.optimizer, x[:config.batch_size],
                                           y[:config.batch_size], config.weight_decay), args.steps, sync)
    rows = [{"K": 1, "forward": "solo", "step_ms": round(solo_ms, 2), "ms_per_run_step": round(solo_ms, 2),
             "run_steps_per_s": round(1000 / solo_ms, 1)}]
    for K in args.ks:
        members = _started_runs(base, K, len(x), device)
        decay = torch.full((K,), config.weight_decay, device=device) if config.weight_decay else None
        for forward in ("explicit", "vmap"):
            stack = StackedNetworks([run.network for run in members], config, forward)
            stacked = [members[i] for i in stack.order]
            objective = batched.stack_objective(stack, decay)
            ms = _median_ms(functools.partial(batched._step, objective, stacked, x, y, config.batch_size),
                            args.steps, sync)
            rows.append({"K": K, "forward": forward, "step_ms": round(ms, 2), "ms_per_run_step": round(ms / K, 2),
                         "run_steps_per_s": round(1000 * K / ms, 1)})
    for row in rows:
        row.update(model=config.model, projection=config.projection, d=config.d, device=str(device),
                   threads=torch.get_num_threads())
    return rows


def _median_ms(step, steps: int, sync) -> float:
    """The median of `steps` timed calls of `step` (after two untimed ones), in milliseconds."""
    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _started_runs(base: dict, K: int, train_size: int, device) -> list:
    """K runs of the config `base` (seeds 0…K−1), each started and at the beginning of its first epoch."""
    from idlab.config import RunConfig
    from worker.subspace import batched

    members = []
    for seed in range(K):
        config = RunConfig(**{**base, "seed": seed})
        run = batched._Run(config, None, None, None, device,
                           steps_per_epoch=train_size // config.batch_size, started=time.perf_counter())
        run.attempt()
        run.begin_epoch(train_size, device)
        members.append(run)
    return members


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.mode:
        print(json.dumps(run_mode(args.mode, args)))
        return 0
    if args.forwards:
        if args.train_size is None:
            args.train_size = 6000
        rows = forwards(args)
        if args.json:
            print(json.dumps(rows))
        else:
            for row in rows:
                print(f"K={row['K']:<3} {row['forward']:<9} step {row['step_ms']:8.2f} ms   "
                      f"{row['ms_per_run_step']:7.2f} ms per run-step   {row['run_steps_per_s']:7.1f} run-steps/s")
        return 0
    return _compare_modes(args, argv)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="li-mnist-fc")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=None, help="first N training examples (all by default)")
    parser.add_argument("--test-size", type=int, default=None, help="first N test examples (all by default)")
    parser.add_argument("--k", type=int, default=64, help="most runs per batch")
    parser.add_argument("--forward", default="auto", choices=["auto", "explicit", "vmap"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (torch's default if unset)")
    parser.add_argument("--forwards", action="store_true", help="time one batched step, explicit against vmap")
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--d", type=int, default=750)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per measurement (--forwards)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    return parser


def _compare_modes(args, argv: list[str] | None) -> int:
    """Each of --modes in a fresh process (its own peak memory), then batched against serial."""
    rows = []
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--json"]
    for mode in args.modes:
        child = subprocess.run([sys.executable, "-m", "bench.sweep", *forwarded, "--mode", mode],
                               capture_output=True, text=True, env=os.environ)
        if child.returncode != 0:
            print(f"{mode} failed:\n{child.stderr}", file=sys.stderr)
            return 1
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        if not args.json:
            row = rows[-1]
            print(f"{mode:<8} {row['runs']} runs in {len(row['batches'])} batch(es)  wall {row['wall_s']:8.1f} s  "
                  f"{row['runs_per_hour']:8.1f} runs/h  {row['run_steps_per_s']:7.1f} run-steps/s  "
                  f"peak {row['peak_mb']:8.1f} MB  ({row['device']}, {row['threads']} threads)", flush=True)
    summary = {"rows": rows}
    if len(rows) == 2:
        serial, batched = rows
        summary["speedup"] = round(serial["wall_s"] / batched["wall_s"], 3)
        summary["max_test_acc_difference"] = max(
            (abs(a - b) for a, b in zip(serial["test_acc"], batched["test_acc"], strict=True)
             if a is not None and b is not None),
            default=None)
        if not args.json:
            print(f"batched / serial: {summary['speedup']:.2f}× faster; largest difference of a run's test "
                  f"accuracy {summary['max_test_acc_difference']}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
