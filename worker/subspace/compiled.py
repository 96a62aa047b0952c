"""torch.compile of a training step's objective, where it pays for its compilation.

The objective of one step is a pure function of the minibatch,

    (x, y) ↦ ( CE(f(x; θ_D), y) + λ·‖θ_D‖²_penalised,  CE,  logits ),    θ_D = θ_0 + P·φ(θ_d),

whose graph — φ, the projection (the native fastfood kernel as an opaque custom operator),
the network, the loss — TorchInductor can fuse; the backward follows from the compiled graph,
the optimizer step stays eager. Compiled with dynamic=False: one graph per minibatch shape (the
full batch, and an epoch's shorter last one), shared by every run of the same shapes through
inductor's on-disk cache (its FX graph cache, on by default; TORCHINDUCTOR_CACHE_DIR), so a sweep
compiles once and each later process only re-traces (seconds).

`compile_step` (the worker's setting `compile_step`, `idlab train --compile`):

    always   compile every run's step
    never    eager
    auto     compile only where the expected saving exceeds the compilation,
             steps × step_seconds × (1 − COMPILED_RATIO[device]) > COMPILE_SECONDS[device],
             with the ratio and the cost measured on that kind of device; a device not measured
             stays eager.

Measured on the development machine (2-core CPU, PyTorch 2.13, one thread; MNIST-FC fastfood
d = 750, batch 128, native kernel): with the kernel's `point`, which is eager only (a compiled step
computes θ_D with the custom operator and splits it, as before `point`), the compiled step is the
slower, 4.74–4.91 ms against 4.48–4.77 eager in alternating rounds (an hour when the machine ran
slow; the ratio 1.04), with a first call of 12 s (3.4 s from inductor's cache). Before `point` it
was 2.85–2.91 against 2.91–3.07 ms (0.97). So on a CPU `auto` stays eager whatever the run's
length. On CUDA it has not been measured (bench/gpu.sh measures it): eager until it is.

Where compilation fails — no C++ compiler for inductor's CPU code, an operation it cannot trace —
the step falls back to eager with one warning, and the run goes on with the same results. A
compiled objective equals the eager one within float32 rounding (inductor may sum in another
order): 1e-5 relative over the curves of tests/engine/test_compiled.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

MODES = ("auto", "always", "never")

#: Compiled step time / eager step time, measured per device type (see the module docstring).
COMPILED_RATIO = {"cpu": 1.04}
#: Seconds a run's first compiled call costs (tracing, and compiling unless cached), per device type.
COMPILE_SECONDS = {"cpu": 24.0}


def should_compile(mode: str, device: torch.device, steps: int, step_seconds: float) -> bool:
    """Whether a run of `steps` steps of about `step_seconds` each on `device` compiles its step (`mode`)."""
    if mode not in MODES:
        raise ValueError(f"compile_step must be one of {MODES}, got {mode!r}")
    if mode != "auto":
        return mode == "always"
    ratio, cost = COMPILED_RATIO.get(device.type), COMPILE_SECONDS.get(device.type)
    if ratio is None or cost is None:
        return False
    return steps * step_seconds * (1 - ratio) > cost


#: Steps an `auto` objective times eagerly before it decides.
SAMPLE_STEPS = 20


class Objective:
    """A step's objective under `compile_step` `mode`: eager, compiled, or (auto) eager for SAMPLE_STEPS
    steps, then compiled if `should_compile` says the rest of the run's `steps` pays for it. Eager from
    a compilation's first failure on."""

    def __init__(self, function: Callable, mode: str, device: torch.device, steps: int):
        if mode not in MODES:
            raise ValueError(f"compile_step must be one of {MODES}, got {mode!r}")
        self.eager, self.device, self.steps = function, device, steps
        self.compiled = torch.compile(function, dynamic=False) if mode == "always" else None
        self.calls, self.first_call = 0, 0.0
        self.deciding = mode == "auto"

    def __call__(self, *args):
        if self.deciding:
            self._time_a_step()
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as problem:   # inductor or dynamo: whatever it raises, the eager step is the same
                text = str(problem).strip()
                log.warning("torch.compile of the training step failed, training eagerly (%s: %s)",
                            type(problem).__name__, text.splitlines()[0][:300] if text else "")
                self.compiled = None
        return self.eager(*args)

    def _time_a_step(self) -> None:
        self.calls += 1
        now = time.perf_counter()
        if self.calls == 1:
            self.first_call = now
        elif self.calls > SAMPLE_STEPS:
            self.deciding = False
            step_seconds = (now - self.first_call) / (self.calls - 1)
            if should_compile("auto", self.device, self.steps - self.calls, step_seconds):
                log.info("compiling the training step: %d steps of %.2f ms to go", self.steps - self.calls,
                         step_seconds * 1000)
                self.compiled = torch.compile(self.eager, dynamic=False)

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None
