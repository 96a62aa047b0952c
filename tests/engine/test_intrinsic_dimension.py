"""d_int90 (Li et al. 2018): the grid value, the interpolated crossing and the one-run-per-d bootstrap."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from worker.subspace.intrinsic_dimension import accuracy_by_d, d_int90


def runs(curve: dict[int, list[float]]) -> list[tuple[int, float]]:
    return [(d, accuracy) for d, accuracies in curve.items() for accuracy in accuracies]


# ---- accuracy vs d -------------------------------------------------------------------------


def test_accuracy_by_d_groups_sorts_and_uses_the_sample_std():
    points = accuracy_by_d([(300, 0.8), (100, 0.5), (300, 0.9), (100, 0.7), (1000, 0.95)])
    assert [p["d"] for p in points] == [100, 300, 1000]
    assert [p["n"] for p in points] == [2, 2, 1]
    assert points[0]["mean"] == pytest.approx(0.6)
    assert points[0]["std"] == pytest.approx(math.sqrt(((0.5 - 0.6) ** 2 + (0.7 - 0.6) ** 2) / 1))  # ddof = 1
    assert points[2]["std"] == 0.0  # a single run has no spread


def test_nan_and_missing_accuracies_are_ignored():
    points = accuracy_by_d([(100, 0.5), (100, float("nan")), (100, None), (200, float("nan")), (300, 0.9)])
    assert [(p["d"], p["n"], p["mean"]) for p in points] == [(100, 1, 0.5), (300, 1, 0.9)]


def test_grid_values_stay_plain_numbers():
    points = accuracy_by_d([(np.int64(100), np.float32(0.5)), (250.0, 0.75), (2.5, 0.25)])
    assert [p["d"] for p in points] == [2.5, 100, 250]
    assert [type(p["d"]) for p in points] == [float, int, int]
    assert all(type(p["mean"]) is float for p in points)


# ---- the estimate --------------------------------------------------------------------------


def test_hand_computed_grid_and_interpolated_values():
    # means 0.55, 0.825, 0.96 at d = 100, 300, 1000; threshold 0.9 · 1.0
    result = d_int90(runs({100: [0.5, 0.6], 300: [0.8, 0.85], 1000: [0.95, 0.97]}), baseline=1.0)
    assert result["threshold"] == pytest.approx(0.9)
    assert result["d_int90"] == 1000
    # 300 + (0.9 − 0.825) / (0.96 − 0.825) · (1000 − 300) = 688.8…
    assert result["d_int90_interpolated"] == pytest.approx(300 + 0.075 / 0.135 * 700, abs=1e-9)
    assert [p["mean"] for p in result["points"]] == pytest.approx([0.55, 0.825, 0.96])


def test_interpolation_is_exact_on_representable_numbers():
    # threshold 0.875 lies halfway between the means 0.75 (d = 200) and 1.0 (d = 300): d = 250
    result = d_int90(runs({100: [0.5], 200: [0.75], 300: [1.0]}), baseline=1.0, fraction=0.875)
    assert result["d_int90"] == 300
    assert result["d_int90_interpolated"] == 250.0


def test_threshold_reached_at_the_first_grid_point_interpolates_to_it():
    result = d_int90(runs({50: [0.95, 0.97], 100: [0.98]}), baseline=1.0)
    assert result["d_int90"] == 50
    assert result["d_int90_interpolated"] == 50.0
    assert result["d_int90_interval"] == [50.0, 50.0]


def test_individual_baseline_scales_the_threshold():
    result = d_int90(runs({100: [0.5], 200: [0.7], 400: [0.8]}), baseline=0.8)
    assert result["threshold"] == pytest.approx(0.72)
    assert result["d_int90"] == 400
    assert result["d_int90_interpolated"] == pytest.approx(200 + (0.72 - 0.7) / 0.1 * 200)


def test_non_monotone_curve_uses_the_first_crossing():
    # reaches 0.9 at d = 200, dips below at 300, reaches again at 400
    result = d_int90(runs({100: [0.5], 200: [0.92], 300: [0.85], 400: [0.95]}), baseline=1.0)
    assert result["d_int90"] == 200
    assert result["d_int90_interpolated"] == pytest.approx(100 + (0.9 - 0.5) / (0.92 - 0.5) * 100)


def test_never_reaching_the_threshold_gives_none():
    result = d_int90(runs({100: [0.5, 0.52], 300: [0.7, 0.71], 1000: [0.85, 0.86]}), baseline=1.0)
    assert result["d_int90"] is None
    assert result["d_int90_interpolated"] is None
    assert result["d_int90_interval"] == [None, None]
    assert len(result["points"]) == 3


def test_no_data():
    for results in ([], [(100, float("nan"))]):
        result = d_int90(results, baseline=1.0)
        assert result["points"] == []
        assert result["d_int90"] is None and result["d_int90_interpolated"] is None
        assert result["d_int90_interval"] is None
        assert result["threshold"] == pytest.approx(0.9)


def test_a_single_d():
    assert d_int90([(750, 0.95), (750, 0.93)], baseline=1.0)["d_int90_interval"] == [750.0, 750.0]
    assert d_int90([(750, 0.95)], baseline=1.0)["d_int90_interpolated"] == 750.0
    assert d_int90([(750, 0.5)], baseline=1.0)["d_int90"] is None


def test_rejects_meaningless_arguments():
    with pytest.raises(ValueError):
        d_int90([(100, 0.5)], baseline=float("nan"))
    with pytest.raises(ValueError):
        d_int90([(100, 0.5)], baseline=1.0, confidence=1.0)
    with pytest.raises(ValueError):
        d_int90([(float("inf"), 0.5)], baseline=1.0)


# ---- the bootstrap interval ----------------------------------------------------------------


def saturating_curve(d):
    """a(d) = 1 − exp(−d / 300): crosses 0.9 at d* = 300 ln 10 ≈ 690.8."""
    return 1.0 - np.exp(-np.asarray(d, dtype=float) / 300.0)


TRUE_CROSSING = 300.0 * math.log(10.0)
GRID = list(range(100, 2001, 100))  # 20 values of d


def noisy_runs(noise: float, seeds: int = 5, seed: int = 1):
    rng = np.random.default_rng(seed)
    return [(d, float(saturating_curve(d) + noise * rng.standard_normal())) for d in GRID for _ in range(seeds)]


def test_interval_contains_the_true_crossing_of_a_noisy_monotone_curve():
    result = d_int90(noisy_runs(noise=0.01), baseline=1.0)
    lo, hi = result["d_int90_interval"]
    assert lo < hi
    assert lo <= TRUE_CROSSING <= hi
    assert lo <= result["d_int90_interpolated"] <= hi
    assert result["d_int90"] == 700


def test_zero_noise_gives_a_degenerate_interval_at_the_point_estimate():
    result = d_int90(noisy_runs(noise=0.0), baseline=1.0)
    lo, hi = result["d_int90_interval"]
    assert lo == pytest.approx(result["d_int90_interpolated"], abs=1e-9)
    assert hi == pytest.approx(result["d_int90_interpolated"], abs=1e-9)
    assert result["d_int90_interpolated"] == pytest.approx(TRUE_CROSSING, abs=2.0)  # linear between 600 and 700


def test_replicates_that_never_reach_make_an_open_end():
    # one run of two reaches 0.9: half of the replicates never reach the threshold (+∞)
    result = d_int90([(100, 0.5), (200, 0.95), (200, 0.6)], baseline=1.0)
    assert result["d_int90"] is None  # mean 0.775
    lo, hi = result["d_int90_interval"]
    assert lo == pytest.approx(100 + 0.4 / 0.45 * 100)
    assert hi is None


def test_bootstrap_is_deterministic_for_a_seed():
    results = noisy_runs(noise=0.02, seeds=40)  # many distinct replicates, so the seed shows
    assert d_int90(results, 1.0, seed=7) == d_int90(results, 1.0, seed=7)
    assert d_int90(results, 1.0, seed=7)["d_int90_interval"] != d_int90(results, 1.0, seed=8)["d_int90_interval"]


def test_module_imports_without_torch():
    code = (
        "import sys, worker.subspace.intrinsic_dimension as m; "
        "assert 'torch' not in sys.modules, 'torch was imported'; "
        "print(m.d_int90([(1, 1.0)], 1.0)['d_int90'])"
    )
    repo_root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=repo_root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
