"""d_int90: the intrinsic dimension of an objective landscape (Li et al., ICLR 2018, §2).

Numpy only — the backend's analysis imports this module and never imports torch.

Given runs (d, a) — one test accuracy a per subspace-training run of intrinsic
dimension d (several seeds per d) — and a baseline accuracy a_base (the direct
training accuracy, or a given number such as 1.0 for MNIST):

    ā(d)     = (1/n_d) Σ_s a_s(d)                  mean test accuracy over the n_d seeds at d
    τ        = 0.9 · a_base                        the threshold
    d_int90  = min { d in the grid : ā(d) ≥ τ }    the smallest grid d whose mean reaches τ

The grid d_1 < d_2 < … is coarse, so we also report where the accuracy curve
crosses τ between grid points. With j the first grid index where ā(d_j) ≥ τ
(the first crossing, even if the curve later dips below τ again):

    d̂_int90 = d_j                                                  if j = 1,
    d̂_int90 = d_{j-1} + (τ − ā(d_{j-1})) / (ā(d_j) − ā(d_{j-1})) · (d_j − d_{j-1})   otherwise,

linear interpolation between the two grid points that bracket τ.

Its uncertainty is a percentile bootstrap over seeds that resamples *one run per
d*: a replicate draws, independently for every d, one of the runs at that d and
recomputes d̂_int90 from those single accuracies (as if the experiment had been
run with one seed). A replicate that never reaches τ has d̂_int90 = +∞. The
interval is the (α/2, 1 − α/2) percentiles of the replicates, α = 1 − confidence;
an end that falls on +∞ is reported as None ("not reached").

Runs whose accuracy is NaN or None (diverged, failed) are ignored: n_d counts
only valid runs, and a d with no valid run is left out of the curve.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

Number = float | int


def accuracy_by_d(results: Iterable[tuple[Number, Number | None]]) -> list[dict]:
    """Mean test accuracy over runs at each d: [{"d", "mean", "std", "n"}, …] sorted by d.

    std is the sample standard deviation √(Σ (a_s − ā)² / (n − 1)), or 0.0 when n = 1.
    """
    return _points(*_runs_per_d(results))


def d_int90(
    results: Iterable[tuple[Number, Number | None]],
    baseline: float,
    fraction: float = 0.9,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """d_int90 from runs [(d, accuracy), …], with its interpolated value and a bootstrap interval.

    Returns {"points", "baseline", "threshold", "d_int90", "d_int90_interpolated",
    "d_int90_interval"}. d_int90 and d_int90_interpolated are None when the mean curve
    never reaches τ = fraction · baseline; d_int90_interval is [lo, hi] with an end None
    where it is +∞, or None when there is no data (or n_bootstrap = 0).
    The bootstrap is deterministic for a given `seed`.
    """
    if not math.isfinite(baseline):
        raise ValueError(f"baseline must be a finite accuracy, got {baseline!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be ≥ 0, got {n_bootstrap!r}")

    threshold = fraction * baseline
    grid, runs_per_d = _runs_per_d(results)
    points = _points(grid, runs_per_d)
    report = {
        "points": points,
        "baseline": float(baseline),
        "threshold": float(threshold),
        "d_int90": None,
        "d_int90_interpolated": None,
        "d_int90_interval": None,
    }
    if len(grid) == 0:
        return report

    means = np.array([[p["mean"] for p in points]])
    first = _first_crossing(means, threshold)[0]
    if first >= 0:
        report["d_int90"] = points[first]["d"]
        report["d_int90_interpolated"] = float(_interpolated_crossing(grid, means, threshold)[0])
    if n_bootstrap > 0:
        replicates = _bootstrap_one_run_per_d(runs_per_d, n_bootstrap, np.random.default_rng(seed))
        estimates = _interpolated_crossing(grid, replicates, threshold)
        report["d_int90_interval"] = _percentile_interval(estimates, confidence, upper_bound=grid[-1])
    return report


# ---- the estimator, vectorised over replicates -----------------------------------------


def _first_crossing(accuracies: np.ndarray, threshold: float) -> np.ndarray:
    """For each row of accuracies (rows × grid), the first grid index with a ≥ τ, or −1."""
    reached = accuracies >= threshold
    return np.where(reached.any(axis=1), reached.argmax(axis=1), -1)


def _interpolated_crossing(grid: np.ndarray, accuracies: np.ndarray, threshold: float) -> np.ndarray:
    """d̂_int90 for each row of accuracies (rows × grid): linear between the bracketing points, +∞ if never reached."""
    first = _first_crossing(accuracies, threshold)
    rows = np.arange(len(accuracies))
    at = np.maximum(first, 0)          # first index reaching τ
    before = np.maximum(first - 1, 0)  # the grid point below it (itself when the first point reaches τ)
    a_at, a_before = accuracies[rows, at], accuracies[rows, before]
    rise = np.where(first > 0, a_at - a_before, 1.0)  # > 0 wherever it is used: ā(d_{j-1}) < τ ≤ ā(d_j)
    step = np.where(first > 0, (threshold - a_before) / rise, 0.0)
    crossing = grid[before] + step * (grid[at] - grid[before])
    return np.where(first >= 0, crossing, np.inf)


def _bootstrap_one_run_per_d(runs_per_d: list[np.ndarray], n_replicates: int, rng: np.random.Generator) -> np.ndarray:
    """Replicates × grid accuracies, each entry one run drawn uniformly from that d's runs."""
    counts = np.array([len(runs) for runs in runs_per_d])
    padded = np.full((len(runs_per_d), counts.max()), np.nan)
    for i, runs in enumerate(runs_per_d):
        padded[i, : len(runs)] = runs
    drawn = rng.integers(0, counts, size=(n_replicates, len(runs_per_d)))
    return padded[np.arange(len(runs_per_d)), drawn]


def _percentile_interval(estimates: np.ndarray, confidence: float, upper_bound: float) -> list[float | None]:
    """The (α/2, 1 − α/2) percentiles of the estimates; ends that involve a +∞ replicate are None.

    Every finite estimate lies within the grid (≤ upper_bound), so +∞ is replaced by a
    larger finite stand-in and any percentile landing beyond the grid is an infinite end.
    """
    alpha = 1.0 - confidence
    beyond_grid = 2.0 * abs(upper_bound) + 1.0
    finite = np.where(np.isinf(estimates), beyond_grid, estimates)
    ends = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return [float(end) if end <= upper_bound else None for end in ends]


# ---- grouping ----------------------------------------------------------------------------


def _runs_per_d(results: Iterable[tuple[Number, Number | None]]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The sorted grid of d that have at least one valid run, and each d's valid accuracies."""
    by_d: dict[float, list[float]] = {}
    for d, accuracy in results:
        d = float(d)
        if not math.isfinite(d):
            raise ValueError(f"d must be finite, got {d!r}")
        runs = by_d.setdefault(d, [])
        if accuracy is not None and not math.isnan(float(accuracy)):
            runs.append(float(accuracy))
    grid = sorted(d for d, runs in by_d.items() if runs)
    return np.array(grid, dtype=float), [np.array(by_d[d]) for d in grid]


def _points(grid: np.ndarray, runs_per_d: list[np.ndarray]) -> list[dict]:
    return [
        {
            "d": _plain_number(d),
            "mean": float(runs.mean()),
            "std": float(runs.std(ddof=1)) if len(runs) > 1 else 0.0,
            "n": len(runs),
        }
        for d, runs in zip(grid, runs_per_d)
    ]


def _plain_number(value: float) -> Number:
    """A grid value as a JSON-friendly int when it is whole (d = 750, not 750.0)."""
    return int(value) if float(value).is_integer() else float(value)
