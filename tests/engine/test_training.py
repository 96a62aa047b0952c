"""The training loop: it learns, it is reproducible, it survives divergence, it stops when asked."""

import math

import pytest
import torch

from idlab import metrics as M
from idlab.config import RunConfig
from worker.subspace.data import load_dataset
from worker.subspace.training import train

TINY = dict(dataset="synthetic", model="fc", fc_widths=[32], d=200, lr=0.05, epochs=2, batch_size=64,
            train_size=640, test_size=256, log_every=2, device="cpu")


def run(callback=None, **fields):
    config = RunConfig(**{**TINY, **fields})
    points = []

    def record(new):
        points.extend(new)
        return callback(new) if callback else False

    result = train(config, load_dataset(config, None), record)
    return result, points


def series(points, key):
    return [(p.step, p.value) for p in points if p.key == key]


def test_subspace_training_learns_and_reports_everything():
    result, points = run(epochs=3)
    assert result.status == "succeeded"
    assert result.metrics[M.TEST_ACC] > 0.3          # 10 classes: chance is 0.1
    assert {"D", "k", "d", "seconds", "steps", M.TEST_LOSS, M.TRAIN_ACC}.issubset(result.metrics)
    assert result.metrics["steps"] == 3 * 10
    losses = [v for _, v in series(points, M.TRAIN_LOSS)]
    assert losses[-1] < losses[0]
    assert [s for s, _ in series(points, M.TEST_ACC)] == [10, 20, 30]
    assert set(result.statistics["P"]) == {"linear"} and "theta_d" in result.statistics["theta_d"]


def test_same_seed_gives_the_same_loss_sequence():
    first, again, other = run()[1], run()[1], run(seed=1)[1]
    assert series(first, M.TRAIN_LOSS) == series(again, M.TRAIN_LOSS)
    assert series(first, M.TRAIN_LOSS) != series(other, M.TRAIN_LOSS)


# A cubic feature with coefficient 1 at a huge learning rate overflows within a few steps.
EXPLODING = dict(lr=100, optimizer="sgd", momentum=0.0, augmentation="power", power_orders=[2, 3],
                 power_coefs=[1.0, 1.0], epochs=1)


def test_divergence_fails_the_run_without_training_through_it():
    result, points = run(**EXPLODING, on_divergence="fail")
    assert result.status == "diverged"
    assert "loss became" in result.error
    assert all(math.isfinite(p.value) for p in points)


def test_reduce_lr_recovers_a_diverging_run():
    result, points = run(**EXPLODING, on_divergence="reduce_lr", max_lr_reductions=6)
    assert result.status == "succeeded", result.error
    assert result.metrics["lr_reductions"] >= 1
    assert result.metrics["lr"] == pytest.approx(100 * 0.1 ** result.metrics["lr_reductions"])
    assert result.metrics[M.TEST_ACC] > 0.2
    lrs = [v for _, v in series(points, M.LR)]
    assert lrs[0] == 100 and lrs[-1] < lrs[0]
    steps = [s for s, _ in series(points, M.TRAIN_LOSS)]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)   # the step counter never goes back


def test_callback_can_cancel_a_run():
    result, points = run(callback=lambda new: any(p.step >= 4 for p in new), epochs=5)
    assert result.status == "cancelled"
    assert max(p.step for p in points) <= 6


def test_early_stopping_stops_when_the_metric_stalls():
    result, _ = run(epochs=30, lr=1e-9, early_stopping_patience=2, early_stopping_metric="train_loss")
    assert result.metrics["epochs"] < 30


def test_lr_decays_every_epoch():
    _, points = run(lr_decay=0.5, epochs=3)
    assert [v for _, v in series(points, M.LR)] == pytest.approx([0.05, 0.025, 0.0125])


def test_direct_training_is_the_baseline():
    result, _ = run(method="direct", epochs=2)
    assert result.status == "succeeded"
    assert result.metrics["d"] == result.metrics["D"] == result.metrics["k"]
    assert result.metrics[M.TEST_ACC] > 0.5
    assert result.statistics == {}


def test_train_p_records_P_before_and_after():
    result, _ = run(projection="dense", train_p=True, epochs=1)
    linear = result.statistics["P"]["linear"]
    assert linear["trained"] is not None
    assert linear["initial"]["std"] != linear["trained"]["std"]
    assert len(linear["edges"]) == len(linear["initial"]["counts"]) + 1


def test_sgd_and_weight_decay_train_too():
    result, _ = run(optimizer="sgd", lr=0.5, weight_decay=1e-3)
    assert result.status == "succeeded" and result.metrics[M.TEST_ACC] > 0.2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_matches_the_cpu_run_closely():
    cpu, _ = run(device="cpu")
    cuda, _ = run(device="cuda")
    assert abs(cpu.metrics[M.TEST_ACC] - cuda.metrics[M.TEST_ACC]) < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("projection", ["dense", "sparse", "fastfood"])
def test_cuda_gives_the_same_loss_sequence_twice(projection):
    first, again = run(device="cuda", projection=projection)[1], run(device="cuda", projection=projection)[1]
    assert series(first, M.TRAIN_LOSS) == series(again, M.TRAIN_LOSS)


def test_every_run_records_its_offset_at_zero_and_a_trained_B_records_its_change():
    plain, _ = run(epochs=1)
    assert plain.metrics[M.OFFSET_AT_ZERO] == 0.0
    uncentred, _ = run(epochs=1, augmentation="rff", d=40)
    assert uncentred.metrics[M.OFFSET_AT_ZERO] > 1.0       # ≈ a·√m = √20 with unit columns
    assert uncentred.statistics["B"]["B"]["trained"] is None
    trained, _ = run(epochs=1, augmentation="rff", d=40, rff_centered=True, train_rff_b=True)
    assert trained.metrics[M.OFFSET_AT_ZERO] == 0.0
    B = trained.statistics["B"]["B"]
    assert B["initial"]["std"] == pytest.approx(1.0, rel=0.1)   # B ~ N(0, σ²), σ = rff_scale = 1
    assert B["trained"]["std"] != B["initial"]["std"]


def test_kernels_only_l2_changes_the_run_and_applies_to_direct_training_too():
    for method in ("subspace", "direct"):
        everything = run(epochs=1, method=method, weight_decay=0.05)[0].metrics[M.TEST_LOSS]
        kernels = run(epochs=1, method=method, weight_decay=0.05, weight_decay_scope="kernels")[0].metrics[M.TEST_LOSS]
        assert kernels != everything, method
