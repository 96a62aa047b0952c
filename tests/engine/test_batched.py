"""Batched training: a run trains in a batch exactly as it trains alone, whatever its batchmates do."""

import pytest
import torch

from idlab import metrics as M
from idlab.config import RunConfig
from worker.subspace import batched
from worker.subspace.batched import BatchIncompatible, BatchSetupError, batch_key, compatible, train_batch
from worker.subspace.data import load_dataset
from worker.subspace.training import train

TINY = dict(dataset="synthetic", model="fc", fc_widths=[32], d=200, lr=0.05, epochs=2, batch_size=64,
            train_size=640, test_size=256, log_every=2, device="cpu")
# As in test_training: a cubic feature with coefficient 1 at a huge learning rate overflows within a few steps.
EXPLODING = dict(lr=100, optimizer="sgd", momentum=0.0, augmentation="power", power_orders=[2, 3],
                 power_coefs=[1.0, 1.0], epochs=1)
RTOL, ATOL = 1e-5, 1e-7
FILE_SIZES = (M.MODEL_BYTES, M.COMPRESSION)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These networks are tiny: one torch thread is the fastest, and no neighbour's busy core slows every op."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(**fields) -> RunConfig:
    return RunConfig(**{**TINY, **fields})


class Recorder:
    """A run's callback and on_phase: keeps every call; stops the run at call number `cancel_at` (1-based)."""

    def __init__(self, cancel_at: int | None = None, cancel_if=None):
        self.calls, self.phases = [], []
        self.cancel_at, self.cancel_if = cancel_at, cancel_if

    def __call__(self, points) -> bool:
        self.calls.append(list(points))
        if self.cancel_if is not None and self.cancel_if(points):
            return True
        return self.cancel_at is not None and len(self.calls) >= self.cancel_at

    def phase(self, name: str) -> None:
        self.phases.append(name)

    @property
    def points(self):
        return [p for call in self.calls for p in call]


def solo(cfg: RunConfig, recorder: Recorder):
    return train(cfg, load_dataset(cfg, None), recorder, on_phase=recorder.phase)


def batch(cfgs: list[RunConfig], recorders: list[Recorder], **options):
    return train_batch(cfgs, load_dataset(cfgs[0], None), recorders,
                       on_phase=[r.phase for r in recorders], **options)


def assert_same_run(alone, alone_recorder, batched, batched_recorder, label=""):
    """Same status, error, calls (points: keys, steps, epochs; values within RTOL), phases, metrics, statistics."""
    assert batched.status == alone.status, label
    assert batched.error == alone.error, label
    assert [len(c) for c in batched_recorder.calls] == [len(c) for c in alone_recorder.calls], label
    assert batched_recorder.phases == alone_recorder.phases, label
    got, want = batched_recorder.points, alone_recorder.points
    assert [(p.step, p.epoch, p.key) for p in got] == [(p.step, p.epoch, p.key) for p in want], label
    for g, w in zip(got, want, strict=True):
        assert g.value == pytest.approx(w.value, rel=RTOL, abs=ATOL), (label, w)
    assert set(batched.metrics) == set(alone.metrics), label
    for key, value in alone.metrics.items():
        if key in FILE_SIZES:  # the model file writes its probe's floats as text: their length varies a little
            assert batched.metrics[key] == pytest.approx(value, rel=0.05), (label, key)
        elif key != "seconds":
            assert batched.metrics[key] == pytest.approx(value, rel=RTOL, abs=ATOL), (label, key)
    assert _close(batched.statistics, alone.statistics), label


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        # histogram edges and summaries of θ_d after training: the same up to the rounding of the curves
        return a == pytest.approx(b, rel=1e-4, abs=1e-6)
    return a == b


def check_batch_against_solo(cfgs, make_recorder=lambda i: Recorder(), **options):
    alone = [(solo(cfg, rec := make_recorder(i)), rec) for i, cfg in enumerate(cfgs)]
    recorders = [make_recorder(i) for i in range(len(cfgs))]
    results = batch(cfgs, recorders, **options)
    for i, ((result, recorder), in_batch, batch_recorder) in enumerate(zip(alone, results, recorders, strict=True)):
        assert_same_run(result, recorder, in_batch, batch_recorder, label=f"run {i}: {cfgs[i].model_dump()}")
    return results


# ---- a run is the same alone and in a batch ---------------------------------------------------


@pytest.mark.parametrize("projection,augmentation,ds", [
    ("dense", "linear", [200, 120, 200]),
    ("sparse", "power", [100, 60, 100]),
    ("fastfood", "linear", [200, 150, 300]),       # L = 256, 256, 512: two stacked transforms
    ("fastfood", "rff", [60, 40, 60]),
    ("fastfood", "power+rff", [40, 40, 30]),
])
def test_a_run_is_the_same_alone_and_in_a_batch_of_mixed_seeds_and_d(projection, augmentation, ds):
    cfgs = [config(projection=projection, augmentation=augmentation, d=d, seed=seed)
            for seed, d in zip([0, 1, 2], ds, strict=True)]
    results = check_batch_against_solo(cfgs)
    assert all(r.status == "succeeded" for r in results)
    assert results[0].metrics[M.TEST_ACC] > 0.15                          # it learned (chance: 0.1)


@pytest.mark.parametrize("forward", ["explicit", "vmap"])
def test_both_forwards_and_per_tensor_features_match_solo(forward):
    cfgs = [config(augmentation="rff", rff_per_tensor=True, d=50, seed=3),
            config(augmentation="rff", rff_per_tensor=True, d=50, seed=4, projection="dense", theta_d_init="normal")]
    check_batch_against_solo(cfgs, forward=forward)


@pytest.mark.filterwarnings("ignore:normalize_p 'block_sum'")
def test_runs_that_share_only_the_data_and_network_share_a_batch():
    """Projection, augmentation, optimizer, lr schedule, epochs, logging and early stopping are each run's own."""
    cfgs = [config(seed=0),
            config(seed=1, projection="dense", augmentation="power", optimizer="sgd", lr=0.3, lr_decay=0.5),
            config(seed=2, projection="sparse", theta_d_init="normal", log_every=3, weight_decay=0.0, epochs=3),
            config(seed=3, augmentation="rff", d=40, rff_centered=True, train_rff_b=True, epochs=1),
            config(seed=4, projection="dense", train_p=True, d=30, lr=1e-9, epochs=6,
                   early_stopping_patience=1, early_stopping_metric="train_acc"),
            config(seed=5, d=100, normalize_p="block_sum", lr_decay=0.9)]     # fastfood with its own product
    results = check_batch_against_solo(cfgs)
    assert [r.metrics["epochs"] for r in results][:4] == [2, 2, 3, 1]
    assert results[4].metrics["epochs"] < 6                               # stopped early, alone


def test_a_batch_of_one_is_its_solo_run():
    check_batch_against_solo([config(seed=9, augmentation="power", d=64)])


def test_lenet_batches_through_vmap():
    cfgs = [config(model="lenet", d=80, seed=s, epochs=1) for s in (0, 1)]
    check_batch_against_solo(cfgs)


# ---- one run's end leaves the others alone -----------------------------------------------------


@pytest.mark.parametrize("cancel_at", [1, 5, 12, 13, 20])
def test_cancelling_one_run_leaves_the_others_unchanged(cancel_at):
    """Call 1 is the first lr point, 2–11 the steps of epoch 1, 12 the evaluation's check, 13 the epoch's points."""
    cfgs = [config(seed=0), config(seed=1, d=150), config(seed=2, projection="dense")]
    results = check_batch_against_solo(cfgs, lambda i: Recorder(cancel_at if i == 1 else None))
    assert results[1].status == "cancelled"
    assert results[0].status == results[2].status == "succeeded"


def test_cancelling_by_what_the_points_say_matches_solo():
    cfgs = [config(seed=0), config(seed=1, epochs=5)]
    results = check_batch_against_solo(cfgs, lambda i: Recorder(cancel_if=(lambda new: any(p.step >= 4 for p in new))
                                                                if i == 1 else None))
    assert results[1].status == "cancelled" and results[1].metrics["steps"] <= 6


def test_a_diverging_run_fails_alone():
    cfgs = [config(seed=0), config(seed=1, **EXPLODING, on_divergence="fail"), config(seed=2, d=100)]
    results = check_batch_against_solo(cfgs)
    assert results[1].status == "diverged" and "loss became" in results[1].error
    assert results[0].status == results[2].status == "succeeded"


def test_a_run_restarting_with_a_lower_lr_restarts_alone(monkeypatch):
    """600 examples in minibatches of 64: nine full and one of 24. After its restart the diverged run's
    epochs no longer align with the others', so its short minibatch shares steps with their full ones."""
    sizes = []
    step = batched._step
    monkeypatch.setattr(batched, "_step", lambda *args: sizes.append((out := step(*args))[2]) or out)
    cfgs = [config(seed=0, train_size=600, epochs=3),
            config(seed=1, train_size=600, **{**EXPLODING, "epochs": 2, "lr": 10}, on_divergence="reduce_lr"),
            config(seed=2, train_size=600, epochs=2, projection="sparse")]
    results = check_batch_against_solo(cfgs)
    assert results[1].status == "succeeded" and results[1].metrics["lr_reductions"] >= 1
    assert results[1].metrics["steps"] == 6 + 2 * 10                # it restarted at step 6, mid-epoch
    assert [24, 64] in [sorted(set(seen)) for seen in sizes]        # a padded, weighted-out minibatch


# ---- what may share a batch ---------------------------------------------------------------------


def test_batch_key_ignores_what_is_each_runs_own():
    a = config(seed=0, d=100, projection="dense", augmentation="power", lr=0.1)
    b = config(seed=7, d=300, projection="fastfood", augmentation="rff", optimizer="sgd")
    assert batch_key(a) == batch_key(b)
    compatible([a, b])


@pytest.mark.parametrize("field,value", [("model", "lenet"), ("fc_widths", [16]), ("batch_size", 32),
                                         ("train_size", 320), ("input_scaling", "unit"),
                                         ("weight_decay_scope", "kernels"), ("dataset", "mnist")])
def test_incompatible_runs_are_rejected_naming_the_field(field, value):
    with pytest.raises(BatchIncompatible, match=field) as error:
        train_batch([config(), config(seed=1, **{field: value})], load_dataset(config(), None))
    assert error.value.field == field


def test_direct_runs_are_not_batched():
    with pytest.raises(BatchIncompatible, match="method") as error:
        compatible([config(), config(method="direct")])
    assert error.value.field == "method"


def test_a_run_that_cannot_be_built_stops_the_batch_before_anything_trains():
    cfgs = [config(), config(seed=1, projection="dense", p_init="from_run:abc", normalize_p="none")]
    recorders = [Recorder(), Recorder()]
    with pytest.raises(BatchSetupError, match="run 1") as error:
        batch(cfgs, recorders)          # no statistics of run abc were given
    assert error.value.index == 1
    assert recorders[0].calls == recorders[1].calls == []
