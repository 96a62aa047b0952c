"""torch.compile of the training step: when it is used, that it trains as the eager step does, and the fallback.

Compiled runs equal eager ones within float32 rounding (inductor may fuse and sum in another order):
1e-5 relative over every logged point. Each compilation takes seconds on this machine, so the runs
are tiny (fc 784-32-10 on the synthetic dataset, a few dozen steps).
"""

from __future__ import annotations

import logging

import pytest
import torch

from idlab.config import RunConfig
from worker.subspace import compiled
from worker.subspace.batched import train_batch
from worker.subspace.compiled import Objective, should_compile
from worker.subspace.data import load_dataset
from worker.subspace.training import train

TINY = dict(dataset="synthetic", model="fc", fc_widths=[32], lr=0.05, epochs=2, batch_size=64, train_size=640,
            test_size=256, log_every=2, device="cpu", projection="fastfood", d=40)
RTOL = 1e-5
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_always_and_never_are_what_they_say_and_auto_compiles_only_where_it_pays(monkeypatch):
    assert should_compile("always", CPU, steps=1, step_seconds=1e-3)
    assert not should_compile("never", CPU, steps=10**9, step_seconds=1.0)
    if compiled.COMPILED_RATIO["cpu"] >= 1:   # measured slower compiled: no run is long enough
        assert not should_compile("auto", CPU, steps=10**9, step_seconds=1.0)
    monkeypatch.setitem(compiled.COMPILED_RATIO, "cpu", 0.97)   # a device where compiling does pay
    saving = 1 - compiled.COMPILED_RATIO["cpu"]
    pays = compiled.COMPILE_SECONDS["cpu"] / saving          # seconds of training after which it pays
    assert not should_compile("auto", CPU, steps=46_900, step_seconds=2.5e-3)   # a 100-epoch MNIST run
    assert not should_compile("auto", CPU, steps=round(pays / 1e-3 * 0.9), step_seconds=1e-3)
    assert should_compile("auto", CPU, steps=round(pays / 1e-3 * 1.1), step_seconds=1e-3)
    assert not should_compile("auto", torch.device("meta"), steps=10**9, step_seconds=1.0)  # never measured
    with pytest.raises(ValueError, match="compile_step"):
        should_compile("sometimes", CPU, 1, 1.0)


class Points:
    def __init__(self):
        self.values = []

    def __call__(self, points):
        self.values += [p.value for p in points]
        return False


def curve(cfg: RunConfig, compile_step: str) -> torch.Tensor:
    recorder = Points()
    result = train(cfg, load_dataset(cfg, None), recorder, compile_step=compile_step)
    assert result.status == "succeeded"
    return torch.tensor(recorder.values, dtype=torch.float64)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return len(a) == len(b) and bool((a - b).norm() <= RTOL * b.norm())


@pytest.mark.parametrize("fields", [dict(augmentation="linear"), dict(augmentation="power"),
                                    dict(augmentation="rff", weight_decay=1e-3),
                                    dict(augmentation="power", projection="dense", train_p=True, lr=0.005)],
                         ids=["linear", "power", "rff", "trained-P"])
def test_a_compiled_step_trains_as_the_eager_step(fields):
    cfg = RunConfig(**{**TINY, **fields})
    assert close(curve(cfg, "always"), curve(cfg, "never"))


def test_a_compiled_batch_trains_as_the_eager_batch():
    cfgs = [RunConfig(**{**TINY, "seed": seed, "d": d, "augmentation": augmentation})
            for seed, d, augmentation in ((0, 40, "linear"), (1, 60, "rff"), (2, 30, "linear"))]
    cfgs[2] = cfgs[2].model_copy(update={"epochs": 1})     # leaves early: the stack is rebuilt and compiled anew
    splits = load_dataset(cfgs[0], None)

    def curves(compile_step: str):
        recorders = [Points() for _ in cfgs]
        train_batch(cfgs, splits, callbacks=recorders, compile_step=compile_step)
        return [torch.tensor(r.values, dtype=torch.float64) for r in recorders]

    assert all(close(a, b) for a, b in zip(curves("always"), curves("never"), strict=True))


def test_where_inductor_cannot_compile_the_step_falls_back_to_eager_with_one_warning(monkeypatch, caplog):
    from torch._inductor import config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", ("/no/such/c++",))   # a machine without a C++ compiler
    monkeypatch.setattr(inductor, "fx_graph_cache", False)
    torch._dynamo.reset()
    cfg = RunConfig(**{**TINY, "epochs": 1})
    with caplog.at_level(logging.WARNING, logger="worker.subspace.compiled"):
        fallen_back = curve(cfg, "always")
    torch._dynamo.reset()
    failures = [r for r in caplog.records if "training eagerly" in r.getMessage()]
    assert len(failures) == 1
    assert close(fallen_back, curve(cfg, "never"))


def test_auto_decides_after_timing_its_first_steps():
    calls = []
    objective = Objective(lambda x: calls.append(x) or x, "auto", CPU, steps=50)
    for i in range(compiled.SAMPLE_STEPS + 5):
        objective(i)
    assert not objective.deciding and not objective.is_compiled     # 50 fast steps never pay for a compilation
    assert calls == list(range(compiled.SAMPLE_STEPS + 5))
