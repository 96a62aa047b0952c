"""d_int90: the intrinsic dimension of an objective landscape (Li et al., ICLR 2018, §2).

Numpy only: part of the domain's analysis (`backend.domain.analysis`), which never imports torch.
docs/statistics.md explains the choices below and lists the measured calibration.

Given runs (d, a) — one test accuracy a per subspace-training run of intrinsic
dimension d (several seeds per d) — and a baseline accuracy a_base (the direct
training accuracy, or a given number such as 1.0 for MNIST):

    ā(d)     = (1/n_d) Σ_s a_s(d)                  mean test accuracy over the n_d seeds at d
    s(d)     = √( Σ_s (a_s(d) − ā(d))² / (n_d − 1) )   their sample standard deviation
    τ        = fraction · a_base                   the threshold (fraction = 0.9)
    d_int90  = min { d in the grid : ā(d) ≥ τ }    the smallest grid d whose mean reaches τ

The crossing between grid points
--------------------------------
The grid d_1 < d_2 < … < d_K is coarse (and usually spaced evenly on log d), so we
also report where the mean curve crosses τ, interpolating linearly in log d between
the two grid points that bracket τ. With j the first grid index where ā(d_j) ≥ τ
(the first crossing, even if the curve later dips below τ again):

    t        = (τ − ā(d_{j−1})) / (ā(d_j) − ā(d_{j−1}))                ∈ (0, 1]
    d̂_int90  = exp( ln d_{j−1} + t · (ln d_j − ln d_{j−1}) )  =  d_{j−1} · (d_j / d_{j−1})^t

Two edge cases are flagged rather than extrapolated:

    j = 1   (ā(d_1) ≥ τ)   d̂_int90 = d_1, "at_min": the crossing is ≤ d_min, an upper bound
    no j    (ā(d) < τ ∀d)  d̂_int90 = +∞ (None), "not reached": the crossing is > d_max

The interval (method "student_t", the default)
----------------------------------------------
d̂_int90 estimates the crossing of the true mean curve μ(d) on the same grid, with
the same interpolation. Its uncertainty comes from the n_d seeds behind each ā(d).
Each of B replicates draws every mean from its Student-t (fiducial) distribution,
independently across d:

    ā*(d)    = ā(d) + (s(d) / √n_d) · T_d,     T_d ~ t_{n_d − 1}

which, for Gaussian seed noise, is exactly the uncertainty about one mean μ(d) with
unknown variance. A d with a single run borrows the pooled within-d spread of the
others:

    s(d)     = s_pool = √( Σ_{d′: n_d′ ≥ 2} (n_d′ − 1) · s(d′)² / ν ),   T_d ~ t_ν,   ν = Σ_{d′} (n_d′ − 1)

and when no d has two runs there is no spread to go on: no interval. Every replicate
curve gives d̂*_int90 by the estimator above (+∞ when it never reaches τ), and

    interval = [ d̂*_(⌊(B − 1) · α/2⌋), d̂*_(⌈(B − 1) · (1 − α/2)⌉) ],   α = 1 − confidence,

the order statistics (0-based) of the B replicates at the two percentiles; an end at
+∞ is None ("not reached"), and a lower end at d_1 reads "≤ d_min".

The spread of s(d) over seeds is what a plain bootstrap of 3 values misses, and
s(d) per d (not pooled over all d) keeps the interval honest when the seed noise
differs between d (a variance pooled over all d covered only 73–77 % when the noise
is largest near the threshold). Measured with a known curve and Gaussian seed noise
of 0.5–2 accuracy points, a nominal 95 % interval covers the true crossing 96–98 % of
the time at 3 seeds and at 5 (tests/test_intrinsic_dimension.py).

The seed bootstrap (method "seed_bootstrap")
--------------------------------------------
Each replicate resamples, for every d, n_d of its runs with replacement:

    ā*(d)    = (1/n_d) Σ_{i=1..n_d} a_{U_i}(d),   U_i uniform on the n_d runs at d

then the same crossing and percentiles. Its spread of ā*(d) is s(d)·√((n_d − 1)/n_d)/√n_d
and it ignores the uncertainty of s(d), so at 3 seeds it covers only 76–77 % (5 seeds:
86–87 %); a d with a single run never varies. It is kept for comparison.

Runs whose accuracy is NaN or None (diverged, failed) are ignored: n_d counts only
valid runs, and a d with no valid run is left out of the curve.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

Number = float | int

STUDENT_T = "student_t"
SEED_BOOTSTRAP = "seed_bootstrap"
METHODS = (STUDENT_T, SEED_BOOTSTRAP)


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
    method: str = STUDENT_T,
) -> dict:
    """d_int90 from runs [(d, accuracy), …], with its log-d interpolated value and an interval.

    Returns {"points", "baseline", "threshold", "d_int90", "d_int90_interpolated",
    "d_int90_interval", "d_int90_method", "d_int90_confidence", "d_int90_at_min",
    "d_int90_not_reached"}:

    - d_int90, d_int90_interpolated: None when the mean curve never reaches
      τ = fraction · baseline (then d_int90_not_reached is True).
    - d_int90_at_min: the smallest d already reaches τ, so both values are d_min and
      read "≤ d_min".
    - d_int90_interval: [lo, hi] from n_bootstrap replicates of `method` (see the module
      docstring), an end None where it is +∞; None when there is no data, no d with two
      runs, or n_bootstrap = 0. Deterministic for a given `seed`.
    """
    _check_arguments(baseline, n_bootstrap, confidence, method)
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
        "d_int90_method": method,
        "d_int90_confidence": confidence,
        "d_int90_at_min": False,
        "d_int90_not_reached": False,
    }
    if len(grid) == 0:
        return report

    means = np.array([p["mean"] for p in points])
    first = int(first_crossing(means, threshold))
    report["d_int90_at_min"] = first == 0
    report["d_int90_not_reached"] = first < 0
    if first >= 0:
        report["d_int90"] = points[first]["d"]
        report["d_int90_interpolated"] = float(interpolated_crossing(grid, means, threshold))
    if n_bootstrap > 0 and max(len(runs) for runs in runs_per_d) > 1:
        replicates = replicate_mean_curves(_padded(runs_per_d), n_bootstrap, np.random.default_rng(seed), method)
        lo, hi = percentile_interval(interpolated_crossing(grid, replicates, threshold), confidence)
        report["d_int90_interval"] = [_finite_or_none(lo), _finite_or_none(hi)]
    return report


def _check_arguments(baseline: float, n_bootstrap: int, confidence: float, method: str) -> None:
    if not math.isfinite(baseline):
        raise ValueError(f"baseline must be a finite accuracy, got {baseline!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be ≥ 0, got {n_bootstrap!r}")
    _check_method(method)


# ---- the estimator, vectorised over any leading axes (replicates, simulated experiments) -----


def first_crossing(accuracies: np.ndarray, threshold: float) -> np.ndarray:
    """j: the first grid index (last axis) with ā(d_j) ≥ τ, or −1 where none reaches τ."""
    reached = accuracies >= threshold
    return np.where(reached.any(axis=-1), reached.argmax(axis=-1), -1)


def interpolated_crossing(grid: np.ndarray, accuracies: np.ndarray, threshold: float) -> np.ndarray:
    """d̂_int90 of each curve (accuracies: … × grid), on log d; d_1 when j = 1, +∞ when never reached.

        t = (τ − ā(d_{j−1})) / (ā(d_j) − ā(d_{j−1})),   d̂ = exp(ln d_{j−1} + t · (ln d_j − ln d_{j−1}))
                                                             = d_{j−1} · (d_j / d_{j−1})^t
    """
    first = first_crossing(accuracies, threshold)
    at = np.maximum(first, 0)                  # j
    below = np.maximum(first - 1, 0)           # j − 1 (j itself when j = 1, where t = 0)
    a_at = np.take_along_axis(accuracies, at[..., None], axis=-1)[..., 0]
    a_below = np.take_along_axis(accuracies, below[..., None], axis=-1)[..., 0]
    rise = np.where(first > 0, a_at - a_below, 1.0)  # > 0 wherever it is used: ā(d_{j−1}) < τ ≤ ā(d_j)
    t = np.where(first > 0, (threshold - a_below) / rise, 0.0)
    crossing = grid[below] * (grid[at] / grid[below]) ** t   # the exp/ln form, exact at t = 0
    return np.where(first >= 0, crossing, np.inf)


# ---- the interval ----------------------------------------------------------------------------


def replicate_mean_curves(runs: np.ndarray, n_replicates: int, rng: np.random.Generator,
                          method: str = STUDENT_T) -> np.ndarray:
    """Replicates of the mean curve: runs (… × n_max × grid, NaN-padded) → … × n_replicates × grid.

    student_t:      ā*(d) = ā(d) + s(d)/√n_d · T_d, T_d ~ t_{n_d − 1}; n_d = 1 uses s_pool, t_ν.
    seed_bootstrap: ā*(d) = the mean of n_d of d's runs drawn with replacement.
    """
    _check_method(method)
    counts = np.sum(~np.isnan(runs), axis=-2)                     # n_d: … × grid
    means = np.nanmean(runs, axis=-2)
    if method == SEED_BOOTSTRAP:
        shape = (*runs.shape[:-2], n_replicates, *runs.shape[-2:])   # … × B × n_max × grid
        drawn = np.floor(rng.random(shape) * counts[..., None, None, :]).astype(np.intp)
        resampled = np.take_along_axis(np.expand_dims(runs, -3), drawn, axis=-2)
        valid = np.arange(runs.shape[-2])[:, None] < counts[..., None, None, :]
        return np.sum(np.where(valid, resampled, 0.0), axis=-2) / counts[..., None, :]
    squares = np.nansum((runs - np.expand_dims(means, -2)) ** 2, axis=-2)   # (n_d − 1) · s(d)²
    pooled_df = np.sum(counts - 1, axis=-1, keepdims=True)                   # ν
    pooled_sd = np.sqrt(np.sum(squares, axis=-1, keepdims=True) / np.maximum(pooled_df, 1))
    single = counts < 2
    sd = np.where(single, pooled_sd, np.sqrt(squares / np.maximum(counts - 1, 1)))
    df = np.where(single, np.maximum(pooled_df, 1), counts - 1)
    shape = (*means.shape[:-1], n_replicates, means.shape[-1])
    t_draws = rng.standard_t(np.expand_dims(df, -2), size=shape)
    return np.expand_dims(means, -2) + np.expand_dims(sd / np.sqrt(counts), -2) * t_draws


def percentile_interval(estimates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The (α/2, 1 − α/2) empirical quantiles over the last axis (B replicates), α = 1 − confidence.

        lo = d̂*_(⌊(B − 1) · α/2⌋),   hi = d̂*_(⌈(B − 1) · (1 − α/2)⌉)     (order statistics, 0-based)

    Order statistics rather than interpolated quantiles: never narrower, and an end next to
    a replicate at +∞ is either that +∞ ("not reached") or a real replicate, never a blend.
    """
    alpha = 1.0 - confidence
    lo = np.quantile(estimates, alpha / 2, axis=-1, method="lower")
    hi = np.quantile(estimates, 1 - alpha / 2, axis=-1, method="higher")
    return lo, hi


# ---- grouping ----------------------------------------------------------------------------


def _runs_per_d(results: Iterable[tuple[Number, Number | None]]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The sorted grid of d that have at least one valid run, and each d's valid accuracies."""
    by_d: dict[float, list[float]] = {}
    for d, accuracy in results:
        d = float(d)
        if not (math.isfinite(d) and d > 0):
            raise ValueError(f"d must be a positive finite number, got {d!r}")
        runs = by_d.setdefault(d, [])
        if accuracy is not None and not math.isnan(float(accuracy)):
            runs.append(float(accuracy))
    grid = sorted(d for d, runs in by_d.items() if runs)
    return np.array(grid, dtype=float), [np.array(by_d[d]) for d in grid]


def _padded(runs_per_d: list[np.ndarray]) -> np.ndarray:
    """n_max × grid accuracies, NaN below each d's runs."""
    padded = np.full((max(len(runs) for runs in runs_per_d), len(runs_per_d)), np.nan)
    for i, runs in enumerate(runs_per_d):
        padded[: len(runs), i] = runs
    return padded


def _points(grid: np.ndarray, runs_per_d: list[np.ndarray]) -> list[dict]:
    return [
        {
            "d": _plain_number(d),
            "mean": float(runs.mean()),
            "std": float(runs.std(ddof=1)) if len(runs) > 1 else 0.0,
            "n": len(runs),
        }
        for d, runs in zip(grid, runs_per_d, strict=True)
    ]


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _plain_number(value: float) -> Number:
    """A grid value as a JSON-friendly int when it is whole (d = 750, not 750.0)."""
    return int(value) if float(value).is_integer() else float(value)
