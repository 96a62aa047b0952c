"""The adaptive search for d_int90 (backend/domain/analysis/search.py) against known accuracy-vs-d curves.

In place of training, accuracy is a known function of d — a logistic in log d of several
shapes, a step, noisy seeds — whose true d_int90 (the smallest integer d reaching the
threshold) is computed exactly. The search must land within its tolerance of it, and use
fewer evaluations than the log-spaced grid of the same resolution.
"""

from __future__ import annotations

import math
import random

import pytest

from backend.domain.analysis import intrinsic_dimension
from backend.domain.analysis.search import (
    DECIDED,
    SEARCHING,
    STOPPED,
    Parameters,
    bracket,
    log_grid,
    max_rounds_needed,
    next_step,
    round_outcome,
    simulate,
)


def logistic(d0: float, slope: float, floor: float = 0.1, top: float = 0.98):
    """a(d) = floor + (top − floor) / (1 + (d0 / d)^slope): a logistic in log d, centred on d0."""
    return lambda d: floor + (top - floor) / (1 + (d0 / d) ** slope)


def true_d_int90(accuracy, threshold: float, d_max: int) -> int | None:
    """The smallest integer d with accuracy(d) ≥ threshold (accuracy increasing in d), by bisection."""
    if accuracy(d_max) < threshold:
        return None
    lo, hi = 0, d_max                 # accuracy(lo) < threshold ≤ accuracy(hi), with accuracy(0) taken as below
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if accuracy(mid) >= threshold else (mid, hi)
    return hi


SHAPES = [  # (d0, slope, floor, top, threshold)
    (750, 2.0, 0.1, 0.98, 0.9 * 0.98),       # MNIST-FC-like: Li et al.'s d_int90 ≈ 750 scale
    (290, 4.0, 0.1, 0.99, 0.9 * 0.99),       # steep (LeNet-like)
    (5000, 0.8, 0.1, 0.95, 0.9 * 0.95),      # shallow, far from d_start
    (40, 1.5, 0.1, 1.0, 0.9),                # near d_start
    (3, 3.0, 0.0, 1.0, 0.5),                 # below d_start: bracketing goes down
    (20_000, 2.5, 0.2, 0.9, 0.7),            # a different threshold fraction
    (1200, 1.0, 0.1, 0.97, 0.6),
]


@pytest.mark.parametrize("tolerance", [0.1, 0.05, 0.3])
@pytest.mark.parametrize("d0, slope, floor, top, threshold", SHAPES)
def test_the_search_lands_within_its_tolerance_with_fewer_evaluations_than_a_grid(d0, slope, floor, top,
                                                                                  threshold, tolerance):
    parameters = Parameters(d_start=8, tolerance=tolerance, d_max=100_000, max_rounds=40)
    accuracy = logistic(d0, slope, floor, top)
    truth = true_d_int90(accuracy, threshold, parameters.d_max)

    step, rounds = simulate(parameters, accuracy, threshold)

    assert step.status == DECIDED, step
    lo, hi = step.bracket
    assert (lo or 0) < truth <= hi, (step, truth)
    assert hi <= truth * (1 + tolerance), f"d_int90 {hi} is more than {tolerance:.0%} above the true {truth}"
    assert hi - (lo or 0) <= 1 or hi <= (lo or 0) * (1 + tolerance)
    grid = log_grid(parameters)
    assert len(rounds) < len(grid), f"{len(rounds)} evaluations, not fewer than the {len(grid)}-point log grid"
    assert len(rounds) <= max_rounds_needed(parameters)
    # The summary's estimator over the evaluated points finds the same d_int90: the bracket's hi.
    report = intrinsic_dimension.d_int90([(d, mean) for d, mean, _ in rounds], baseline=threshold / 0.9, n_bootstrap=0)
    assert report["d_int90"] == hi
    assert lo is None or lo <= report["d_int90_interpolated"] <= hi


def test_the_log_grid_of_the_same_resolution_runs_from_d_start_to_d_max_in_steps_of_1_plus_tolerance():
    grid = log_grid(Parameters(d_start=8, tolerance=0.1, d_max=100_000))
    assert grid[0] == 8 and grid[-1] == 100_000
    assert all((b + 0.5) / (a - 0.5) > 1.1 - 1e-9 >= (b - 0.5) / (a + 0.5)
               for a, b in zip(grid, grid[1:-1], strict=False) if a > 20)
    assert 90 <= len(grid) <= 100          # ⌈ln(12,500) / ln 1.1⌉ + 1 = 100, fewer once rounded to integers


def test_doubling_then_log_bisection_visits_these_d():
    parameters = Parameters(d_start=8, tolerance=0.1, d_max=100_000)
    step, rounds = simulate(parameters, lambda d: 1.0 if d >= 700 else 0.5, threshold=0.9)
    # Doubling to the first d reaching 0.9, then geometric midpoints: √(512·1024) = 724, √(512·724) = 609,
    # √(609·724) = 664; 724 / 664 ≤ 1.1.
    assert [d for d, _, _ in rounds] == [8, 16, 32, 64, 128, 256, 512, 1024, 724, 609, 664]
    assert [reached for _, _, reached in rounds] == [False] * 7 + [True, True, False, False]
    assert step.status == DECIDED and step.bracket == (664, 724)
    assert step.reason == "d_int90 lies in (664, 724]: hi / lo = 1.09 ≤ 1 + 0.1"


def test_a_threshold_reached_at_d_start_is_bracketed_by_halving():
    step, rounds = simulate(Parameters(d_start=64, tolerance=0.1, d_max=1000), lambda d: 1.0 if d >= 3 else 0.0, 0.9)
    assert [d for d, _, _ in rounds][:6] == [64, 32, 16, 8, 4, 2]
    assert step.status == DECIDED and step.bracket == (2, 3)
    step, rounds = simulate(Parameters(d_start=4, tolerance=0.1, d_max=1000), lambda d: 1.0, 0.9)
    assert [d for d, _, _ in rounds] == [4, 2, 1] and step.status == DECIDED and step.bracket == (None, 1)


def test_a_threshold_never_reached_stops_at_d_max():
    parameters = Parameters(d_start=8, tolerance=0.1, d_max=1000)
    step, rounds = simulate(parameters, lambda d: 0.5, 0.9)
    assert [d for d, _, _ in rounds] == [8, 16, 32, 64, 128, 256, 512, 1000]       # the last doubling capped
    assert step.status == STOPPED and step.bracket == (1000, None)
    assert step.reason == "the threshold was not reached up to d_max = 1000"


def test_max_rounds_stops_an_undecided_search_with_its_bracket():
    step, rounds = simulate(Parameters(d_start=8, tolerance=0.01, d_max=100_000, max_rounds=10),
                            logistic(750, 2.0), 0.9 * 0.98)
    assert len(rounds) == 10 and step.status == STOPPED
    lo, hi = step.bracket
    assert lo is not None and hi is not None and hi / lo > 1.01
    assert step.reason.startswith("max_rounds = 10 rounds evaluated without a decision")
    assert f"({lo}, {hi}]" in step.reason


def test_seeds_are_averaged_and_a_diverged_seed_fails_its_d():
    assert round_outcome([0.95, 0.87], 0.9) == (pytest.approx(0.91), True)
    assert round_outcome([0.95, 0.84], 0.9) == (pytest.approx(0.895), False)
    assert round_outcome([0.99, None], 0.9) == (0.99, False)       # diverged: mean of the rest, not reached
    assert round_outcome([None, None], 0.9) == (None, False)
    # Three seeds with noise around a logistic: the mean curve decides.
    rng = random.Random(7)
    curve = logistic(300, 3.0)
    noise = {}

    def seeds(d):
        return [curve(d) + noise.setdefault((d, s), rng.uniform(-0.01, 0.01)) for s in range(3)]

    step, rounds = simulate(Parameters(d_start=8, tolerance=0.1, d_max=100_000), seeds, 0.9 * 0.98)
    assert step.status == DECIDED
    for d, mean, reached in rounds:
        assert mean == pytest.approx(sum(seeds(d)) / 3) and reached == (mean >= 0.9 * 0.98)


def test_each_next_d_lies_inside_the_bracket_so_the_bracket_only_narrows():
    rng = random.Random(3)
    for _ in range(300):   # noisy, non-monotone curves: the bracket must stay consistent all the same
        parameters = Parameters(d_start=rng.choice([1, 2, 8, 50]), tolerance=rng.choice([0.02, 0.1, 0.5]),
                                d_max=rng.choice([100, 5000, 100_000]), max_rounds=60)
        flips = {}
        step, rounds = simulate(parameters, lambda d, flips=flips: flips.setdefault(d, rng.random()), threshold=0.5)
        outcomes = []
        for d, _, reached in rounds:
            lo, hi = bracket(outcomes)
            assert (lo is None or d > lo) and (hi is None or d < hi) and 1 <= d <= parameters.d_max
            outcomes.append((d, reached))
        lo, hi = step.bracket
        assert all(d <= (lo or 0) for d, r in outcomes if not r) and all(d >= hi for d, r in outcomes if r)
        assert step.status in (DECIDED, STOPPED) and len(rounds) <= max_rounds_needed(parameters)


def test_the_first_step_is_d_start_and_parameters_are_checked():
    assert next_step(Parameters(d_start=8), []).status == SEARCHING and next_step(Parameters(d_start=8), []).d == 8
    for bad in (dict(d_start=0), dict(d_start=10, d_max=5), dict(tolerance=0.0), dict(tolerance=math.inf),
                dict(max_rounds=0)):
        with pytest.raises(ValueError):
            Parameters(**bad)
