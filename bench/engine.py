"""Cost of a projected training step against direct training of the same network.

    python -m bench.engine                 # a table
    python -m bench.engine --json          # the rows as one JSON list
    python -m bench.engine --models fc --projections fastfood --ds 100 1000

For each model (MNIST-FC, D = 199,210; LeNet, D = 44,426), projection and d it
times the real training step (`training.training_step`: θ_D = θ_0 + P·φ(θ_d),
forward, backward, Adam) on a random MNIST-shaped batch of 128, and reports

    step_ms      median time of one projected step
    direct_ms    median time of one direct-training step of the same network, in the same process
    step_ratio   step_ms / direct_ms
    matvec_ms    (dense) time of the products the method cannot avoid: P·v and Pᵀ·g
    dense_ratio  (dense) step_ms / (direct_ms + matvec_ms)
    peak_mb      peak memory of the run beyond the process's baseline (CPU: resident set
                 size; CUDA: allocator peak), P and the optimizer state included

Each row runs in a fresh process so its peak memory is its own. Rows whose dense P
exceeds the memory budget (IDLAB_DENSE_P_BUDGET_MB) are skipped, as the lab would
reject them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

MODELS = {"fc": "MNIST-FC", "lenet": "LeNet"}
PROJECTIONS = ("dense", "sparse", "fastfood")
DS = (100, 1000, 10_000)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _time_steps(network, config, x, y, seconds: float, min_steps: int = 10) -> float:
    import torch

    from worker.subspace.training import make_optimizer, training_step

    params = [p for p in network.parameters() if p.requires_grad]
    optimizer = make_optimizer(config, params, config.lr)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    for _ in range(3):
        training_step(network, optimizer, x, y, config.weight_decay)
    sync()
    times, began = [], time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - began < seconds:
        start = time.perf_counter()
        training_step(network, optimizer, x, y, config.weight_decay)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _time_matvecs(network, seconds: float) -> float:
    """P·v then Pᵀ·g: the two products a dense step cannot avoid."""
    import torch

    P = network.P.materialize()
    v = torch.randn(P.shape[1], device=P.device)
    g = torch.randn(P.shape[0], device=P.device)
    times, began = [], time.perf_counter()
    while len(times) < 5 or time.perf_counter() - began < seconds:
        start = time.perf_counter()
        _ = P @ v
        _ = P.T @ g
        if P.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure_row(model: str, projection: str, d: int, device: str, seconds: float) -> dict:
    """One row, in this process: direct first, then the projected step."""
    import torch

    from idlab.config import RunConfig
    from worker.subspace.network import build_network
    from worker.subspace.training import resolve_device

    config = RunConfig(dataset="mnist", model=model, projection=projection, d=d, device=device)
    dev = resolve_device(config.device)
    torch.manual_seed(0)
    x = torch.randn(config.batch_size, *config.dataset_spec.input_shape, device=dev)
    y = torch.randint(0, config.dataset_spec.classes, (config.batch_size,), device=dev)

    direct = build_network(config.model_copy(update={"method": "direct"})).to(dev)
    direct_ms = _time_steps(direct, config, x, y, seconds)
    del direct

    baseline_mb = _rss_mb()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        baseline_mb = torch.cuda.memory_allocated(dev) / 2**20
    network = build_network(config).to(dev)
    step_ms = _time_steps(network, config, x, y, seconds)
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(dev) / 2**20 - baseline_mb
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline_mb
    row = {"model": model, "projection": projection, "d": d, "D": config.D, "k": config.k,
           "device": str(dev), "step_ms": round(step_ms, 3), "direct_ms": round(direct_ms, 3),
           "step_ratio": round(step_ms / direct_ms, 3), "peak_mb": round(max(peak_mb, 0.0), 1)}
    if projection == "dense":
        matvec_ms = _time_matvecs(network, seconds / 2)
        row["matvec_ms"] = round(matvec_ms, 3)
        row["dense_ratio"] = round(step_ms / (direct_ms + matvec_ms), 3)
    return row


def fits(model: str, projection: str, d: int) -> bool:
    from pydantic import ValidationError

    from idlab.config import RunConfig

    try:
        RunConfig(dataset="mnist", model=model, projection=projection, d=d)
        return True
    except ValidationError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--projections", nargs="+", default=list(PROJECTIONS), choices=PROJECTIONS)
    parser.add_argument("--ds", nargs="+", type=int, default=list(DS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per measurement")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    parser.add_argument("--row", nargs=3, metavar=("MODEL", "PROJECTION", "D"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.row:
        model, projection, d = args.row
        print(json.dumps(measure_row(model, projection, int(d), args.device, args.seconds)))
        return 0

    rows = []
    for model in args.models:
        for projection in args.projections:
            for d in args.ds:
                if not fits(model, projection, d):
                    print(f"skip {model} {projection} d={d}: dense P over the memory budget", file=sys.stderr)
                    continue
                child = subprocess.run([sys.executable, "-m", "bench.engine", "--row", model, projection, str(d),
                                        "--device", args.device, "--seconds", str(args.seconds)],
                                       capture_output=True, text=True)
                if child.returncode != 0:
                    print(f"{model} {projection} d={d} failed:\n{child.stderr}", file=sys.stderr)
                    continue
                row = json.loads(child.stdout.strip().splitlines()[-1])
                rows.append(row)
                if not args.json:
                    extra = f"  dense_ratio {row['dense_ratio']:.2f} (matvec {row['matvec_ms']:.1f} ms)" \
                        if "dense_ratio" in row else ""
                    print(f"{MODELS[model]:<8} {projection:<8} d={d:<6} step {row['step_ms']:8.2f} ms  "
                          f"direct {row['direct_ms']:7.2f} ms  ratio {row['step_ratio']:6.2f}  "
                          f"peak {row['peak_mb']:8.1f} MB{extra}", flush=True)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
