"""What this machine computes on: CUDA or not, the device's name, torch's CPU threads, the default queues.

The Celery worker's main process forks one child per run. CUDA cannot be used in a
child forked from a process that initialised it, so the main process only asks
NVML whether a GPU is there (PYTORCH_NVML_BASED_CUDA_CHECK), which initialises
nothing; the child names the device once it runs on it.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")


def has_cuda() -> bool:
    """Whether a CUDA device is usable, without initialising CUDA in this process."""
    try:
        import torch
    except ImportError:  # a lab without the engine installed cannot train at all; it has no GPU for us either
        return False
    return torch.cuda.is_available()


def default_queues(cuda: bool | None = None) -> list[str]:
    """The queues a worker consumes when --queues is not given.

    A GPU machine takes `gpu` runs and also `cpu` runs, so every run finds a worker on
    a single-machine lab (a cpu run then holds the GPU worker's slot while it trains:
    start dedicated `--queues cpu` workers to keep GPUs for GPU runs). A CPU-only
    machine takes `cpu` and also `gpu` runs, whose device `auto` falls back to the
    CPU: that is how the embedded lab runs everything (a run that insists on
    device `cuda` fails there with a clear message). In a cluster with GPU workers,
    start CPU-only workers with `--queues cpu` so they do not take GPU runs.
    """
    cuda = has_cuda() if cuda is None else cuda
    return ["gpu", "cpu"] if cuda else ["cpu", "gpu"]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def configure_torch_threads(threads: int | None) -> int:
    """Give torch `threads` CPU threads (all usable cores when None); returns the number set."""
    import torch

    count = threads or usable_cores()
    torch.set_num_threads(count)
    return count


def configure_native_kernels(cache: Path | None, compiler: str | None) -> None:
    """Where the engine's native kernels are built and cached (the settings kernel_cache_dir, c_compiler)."""
    from worker.subspace import native

    native.configure(cache, compiler)


def lower_priority(niceness: int) -> int:
    """Raise this process's niceness to `niceness` (never lower it: that needs privileges); returns it."""
    current = os.nice(0)
    if niceness > current:
        current = os.nice(niceness - current)
    return current


def device_label(device_name: str = "auto") -> str:
    """What a run executes on, for the workers table: the CUDA device's name, or "cpu".

    Initialises CUDA: call it in the process that trains, never in the forking parent.
    """
    import torch

    if device_name == "cpu" or not torch.cuda.is_available():
        return "cpu"
    device = torch.device("cuda" if device_name == "auto" else device_name)
    return torch.cuda.get_device_name(device)


def training_processes(cuda: bool | None = None) -> int:
    """Runs a worker trains at once, each in its own process, when --concurrency is not given.

    A GPU: one process, batching many runs into each device pass (one worker per GPU). A CPU-only
    machine: one process per usable core, one torch thread each — on a CPU the arithmetic is the
    time, torch's intra-op threads scale poorly at the sizes of subspace training, and a second
    process per core oversubscribes it (bench/worker_sweep.py on the 2-core development machine,
    li-mnist-fc, 21 runs: docs/benchmarks.md). Training processes run at `train_niceness`, so the
    API stays responsive beside them.
    """
    cuda = has_cuda() if cuda is None else cuda
    return 1 if cuda else usable_cores()


#: Runs trained as one batch when the setting leaves it open. A GPU that one small run leaves
#: >95 % idle gains from many; on a CPU the arithmetic is the time (bench/sweep.py: batched
#: 0.96–1.04× serial), and a small batch saves only each run's process start and data load.
GPU_BATCH_RUNS, CPU_BATCH_RUNS = 32, 4


def default_batch_runs(device_name: str) -> int:
    """How many runs of device `device_name` (cpu, cuda, cuda:1, auto) to train together by default."""
    on_cuda = device_name != "cpu" and has_cuda()
    return GPU_BATCH_RUNS if on_cuda else CPU_BATCH_RUNS
