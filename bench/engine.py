"""Cost of a projected training step against direct training of the same network.

    python -m bench.engine                 # a table
    python -m bench.engine --json          # the rows as one JSON list
    python -m bench.engine --models fc --projections fastfood --ds 100 1000
    python -m bench.engine --models fc --projections fastfood --augmentations linear rff --batch-size 32 --json
    python -m bench.engine --preset li-mnist-fc --models fc --projections fastfood --ds 100 300 750 1000
    python -m bench.engine --products 100 750 1500     # the fastfood product alone: native kernel against torch ops

For each model (MNIST-FC, D = 199,210; LeNet, D = 44,426), projection, augmentation and d it
times the real training step (`training.training_step`: θ_D = θ_0 + P·φ(θ_d),
forward, backward, Adam) on a random MNIST-shaped batch (128, or --batch-size), and reports

    step_ms      median time of one projected step
    direct_ms    median time of one direct-training step of the same network, in the same process
    step_ratio   step_ms / direct_ms
    plain_ms     median time of the same network written by hand as torch.nn.Sequential, trained with
                 torch.optim.Adam (its defaults) on the same batch and the same L2, in the same process:
                 what a researcher would write without the lab
    direct_vs_plain  direct_ms / plain_ms
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
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

MODELS = {"fc": "MNIST-FC", "lenet": "LeNet"}
PROJECTIONS = ("dense", "sparse", "fastfood")
AUGMENTATIONS = ("linear", "power", "rff", "power+rff")
DS = (100, 1000, 10_000)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _stepper(network, config, x, y):
    """The lab's training step of `network` on the batch (x, y), as a callable."""
    from worker.subspace.training import make_optimizer, training_step

    optimizer = make_optimizer(config, [p for p in network.parameters() if p.requires_grad], config.lr)
    return lambda: training_step(network, optimizer, x, y, config.weight_decay)


def _interleaved(steps: dict, seconds: float, cuda: bool, rounds: int = 3, min_steps: int = 10) -> dict[str, float]:
    """Median time (ms) of each step, timed in `rounds` alternating rounds; each step's best round.

    Alternating means a slower stretch of a shared machine slows every step alike, so their ratios hold.
    """
    import torch

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    best = {name: float("inf") for name in steps}
    for step in steps.values():
        for _ in range(3):
            step()
    for _ in range(rounds):
        for name, step in steps.items():
            sync()
            times, began = [], time.perf_counter()
            while len(times) < min_steps or time.perf_counter() - began < seconds / rounds:
                start = time.perf_counter()
                step()
                sync()
                times.append(time.perf_counter() - start)
            best[name] = min(best[name], statistics.median(times) * 1000)
    return best


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


def _plain_network(model: str, config):
    """The network as a researcher writes it: torch.nn.Sequential of torch's own layers."""
    from torch import nn

    channels, height, width = config.dataset_spec.input_shape
    classes = config.dataset_spec.classes
    if model == "fc":
        sizes = [channels * height * width, *config.fc_widths, classes]
        layers: list = [nn.Flatten()]
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        return nn.Sequential(*layers[:-1])
    flat = 16 * ((((height - 4) // 2) - 4) // 2) * ((((width - 4) // 2) - 4) // 2)
    return nn.Sequential(nn.Conv2d(channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, classes))


def _plain_stepper(model: str, config, x, y):
    """The hand-written step: Sequential forward, cross-entropy + the same L2, backward, torch's Adam (defaults)."""
    import torch
    import torch.nn.functional as F

    network = _plain_network(model, config).to(x.device)
    penalized = [p for name, p in network.named_parameters()
                 if config.weight_decay_scope == "all" or name.endswith("weight")]
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, betas=tuple(config.adam_betas))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(network(x), y) + config.weight_decay * sum(W.square().sum() for W in penalized)
        loss.backward()
        optimizer.step()

    return step


def measure_row(model: str, projection: str, d: int, device: str, seconds: float, augmentation: str = "linear",
                batch_size: int = 128, preset: str | None = None) -> dict:
    """One row, in this process: the projected step, then direct training and the hand-written network,
    timed in alternating rounds (`_interleaved`). Peak memory is the projected run's, measured first."""
    import torch

    from idlab.config import RunConfig
    from worker.subspace.network import build_network
    from worker.subspace.training import resolve_device

    config = RunConfig(**{**preset_base(preset), "dataset": "mnist", "model": model, "projection": projection, "d": d,
                          "device": device, "augmentation": augmentation, "batch_size": batch_size})
    dev = resolve_device(config.device)
    torch.manual_seed(0)
    x = torch.randn(config.batch_size, *config.dataset_spec.input_shape, device=dev)
    y = torch.randint(0, config.dataset_spec.classes, (config.batch_size,), device=dev)

    from worker.subspace import fastfood_kernel

    # The process's own memory first: the kernel's library, and the BLAS buffers the first products allocate.
    fastfood_kernel.load()
    plain = _plain_stepper(model, config, x, y)
    plain()
    baseline_mb, peak_before_mb = _rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        baseline_mb = torch.cuda.memory_allocated(dev) / 2**20
    network = build_network(config).to(dev)
    projected = _stepper(network, config, x, y)
    for _ in range(3):
        projected()
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(dev) / 2**20 - baseline_mb
    else:   # what the run holds, or how far it raised the process's peak (imports may have peaked higher)
        peak_mb = max(_rss_mb() - baseline_mb,
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - peak_before_mb)
    direct = build_network(config.model_copy(update={"method": "direct"})).to(dev)
    times = _interleaved({"step": projected, "direct": _stepper(direct, config, x, y),
                          "plain": plain}, 3 * seconds, dev.type == "cuda")
    step_ms, direct_ms, plain_ms = times["step"], times["direct"], times["plain"]
    row = {"model": model, "projection": projection, "augmentation": augmentation, "d": d, "batch_size": batch_size,
           "preset": preset,
           "D": config.D, "k": config.k, "device": str(dev), "step_ms": round(step_ms, 3),
           "direct_ms": round(direct_ms, 3), "step_ratio": round(step_ms / direct_ms, 3),
           "plain_ms": round(plain_ms, 3), "direct_vs_plain": round(direct_ms / plain_ms, 3),
           "peak_mb": round(max(peak_mb, 0.0), 1)}
    if projection == "dense":
        matvec_ms = _time_matvecs(network, seconds / 2)
        row["matvec_ms"] = round(matvec_ms, 3)
        row["dense_ratio"] = round(step_ms / (direct_ms + matvec_ms), 3)
    return row


def measure_products(ks: list[int], seconds: float) -> list[dict]:
    """The fastfood product alone at D = 199,210 (MNIST-FC): θ_0 + P·v and its backward Pᵀ·g, with the native
    kernel and with the torch ops (`native.disabled`), alternating; ms per product."""
    return [_product_row(199_210, k, seconds) for k in ks]


def _product_row(D: int, k: int, seconds: float) -> dict:
    import torch

    from worker.subspace import fastfood_kernel, native
    from worker.subspace.projection import FastfoodProjection

    P = FastfoodProjection(D, k, [slice(0, D)], "unit_columns", 1.0, torch.Generator().manual_seed(0))
    theta_0, g, v = torch.randn(D), torch.randn(D), torch.randn(k)

    def forward():
        P.affine(theta_0, v)

    def backward():
        P.transpose(g)

    def torch_ops(step):
        def run():
            with native.disabled():
                step()
        return run

    with torch.no_grad():
        times = _interleaved({"native_forward": forward, "native_backward": backward,
                              "torch_forward": torch_ops(forward), "torch_backward": torch_ops(backward)},
                             seconds, cuda=False)
    return {"D": D, "k": k, "L": P.L, "blocks": P.G.shape[0], "native": fastfood_kernel.available(),
            **{name: round(ms, 3) for name, ms in times.items()}}


def preset_base(preset: str | None) -> dict:
    """The training settings of a paper preset's base (`idlab presets`), or {} for RunConfig's defaults.

    The row's model, projection, augmentation, d and batch size replace the preset's; fc keeps its widths.
    """
    if preset is None:
        return {}
    from idlab import presets

    base = dict(presets.get(preset).request["base"])
    for name in ("method", "train_p", "p_init", "from_run_mean", "epochs"):
        base.pop(name, None)
    return base


def fits(model: str, projection: str, d: int) -> bool:
    from pydantic import ValidationError

    from idlab.config import RunConfig

    try:
        RunConfig(dataset="mnist", model=model, projection=projection, d=d)
        return True
    except ValidationError:
        return False


def _row_in_child(model: str, projection: str, augmentation: str, d: int, args) -> dict | None:
    """One row measured in a fresh process (its peak memory its own); None when skipped or failed (said on stderr)."""
    if not fits(model, projection, d):
        print(f"skip {model} {projection} d={d}: dense P over the memory budget", file=sys.stderr)
        return None
    child = subprocess.run([sys.executable, "-m", "bench.engine", "--row", model, projection, augmentation, str(d),
                            "--device", args.device, "--seconds", str(args.seconds),
                            "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                            *(["--preset", args.preset] if args.preset else [])],
                           capture_output=True, text=True)
    if child.returncode != 0:
        print(f"{model} {projection} {augmentation} d={d} failed:\n{child.stderr}", file=sys.stderr)
        return None
    return json.loads(child.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--projections", nargs="+", default=list(PROJECTIONS), choices=PROJECTIONS)
    parser.add_argument("--ds", nargs="+", type=int, default=list(DS))
    parser.add_argument("--augmentations", nargs="+", default=["linear"], choices=AUGMENTATIONS)
    parser.add_argument("--batch-size", type=int, default=128, help="examples per step (Li et al. 128, Lam & Lee 32)")
    parser.add_argument("--preset", help="take the training settings of a paper preset (li-mnist-fc, lam-lee: its L2, "
                                         "scaling, optimizer, RFF options); default: RunConfig's defaults")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per measurement")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: a sweep's worker gives each training process one core)")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    parser.add_argument("--products", nargs="*", type=int, metavar="K",
                        help="time the fastfood product alone (D = 199,210) at these k: native kernel, torch ops")
    parser.add_argument("--row", nargs=4, metavar=("MODEL", "PROJECTION", "AUGMENTATION", "D"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.products is not None:
        import torch

        torch.set_num_threads(args.threads)
        rows = measure_products(args.products or [100, 300, 750, 1000, 1500, 3000], args.seconds)
        if args.json:
            print(json.dumps(rows))
        for row in [] if args.json else rows:
            print(f"k={row['k']:<6} L={row['L']:<6} blocks={row['blocks']:<5} θ_0 + P·v: native "
                  f"{row['native_forward']:.3f} ms, torch ops {row['torch_forward']:.3f} ms;  Pᵀ·g: native "
                  f"{row['native_backward']:.3f} ms, torch ops {row['torch_backward']:.3f} ms")
        return 0
    if args.row:
        import torch

        torch.set_num_threads(args.threads)
        model, projection, augmentation, d = args.row
        print(json.dumps(measure_row(model, projection, int(d), args.device, args.seconds, augmentation,
                                     args.batch_size, args.preset)))
        return 0

    rows = []
    for model, projection, augmentation, d in itertools.product(args.models, args.projections, args.augmentations,
                                                                args.ds):
        row = _row_in_child(model, projection, augmentation, d, args)
        if row is None:
            continue
        rows.append(row)
        if not args.json:
            extra = f"  dense_ratio {row['dense_ratio']:.2f} (matvec {row['matvec_ms']:.1f} ms)" \
                if "dense_ratio" in row else ""
            print(f"{MODELS[model]:<8} {projection:<8} {augmentation:<9} d={d:<6} b={args.batch_size:<4} "
                  f"step {row['step_ms']:8.2f} ms  direct {row['direct_ms']:7.2f} ms  ratio {row['step_ratio']:6.2f}  "
                  f"plain {row['plain_ms']:7.2f} ms (direct/plain {row['direct_vs_plain']:.2f})  "
                  f"peak {row['peak_mb']:8.1f} MB{extra}", flush=True)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
