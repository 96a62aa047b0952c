"""Downsampling long curves for drawing, so that spikes survive.

Both methods return the *indices* of the points to keep, in x order, so the caller
can take the same points from every column (step, value, epoch).

min/max envelope: the points are cut into equal-count buckets; each bucket keeps
its first, its lowest, its highest and its last point. A single spike of any
height therefore always survives, and consecutive buckets join up (first/last).
At most 4 points per bucket, so max_points // 4 buckets.

LTTB (largest triangle three buckets, Steinarsson 2013): keeps the first and last
point and, from each of max_points − 2 buckets, the point forming the largest
triangle with the point kept before and the mean of the next bucket; smoother
looking, but only one point per bucket.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Method = Literal["minmax", "lttb"]
POINTS_PER_ENVELOPE_BUCKET = 4


def downsample(x: np.ndarray, y: np.ndarray, max_points: int, method: Method = "minmax") -> np.ndarray:
    """Indices of at most max_points points (all of them if there are no more than that)."""
    n = len(x)
    if n <= max_points:
        return np.arange(n)
    if method == "lttb":
        return lttb(x, y, max_points)
    return minmax_envelope(y, max_points)


def minmax_envelope(y: np.ndarray, max_points: int) -> np.ndarray:
    """First, min, max and last index of each of max_points // 4 equal-count buckets, sorted."""
    n = len(y)
    buckets = max(1, max_points // POINTS_PER_ENVELOPE_BUCKET)
    size = -(-n // buckets)                     # ceil(n / buckets)
    buckets = -(-n // size)                     # every bucket non-empty
    padded = np.full(buckets * size, np.nan)
    padded[:n] = y
    grid = padded.reshape(buckets, size)        # padding (NaN) only in the last row, never all of it
    starts = np.arange(buckets) * size
    lowest = starts + np.nanargmin(grid, axis=1)
    highest = starts + np.nanargmax(grid, axis=1)
    lasts = np.minimum(starts + size, n) - 1
    return np.unique(np.concatenate([starts, lowest, highest, lasts]))


def lttb(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Largest-triangle-three-buckets indices (max_points ≥ 3)."""
    n = len(x)
    if max_points < 3 or n <= max_points:
        return np.arange(min(n, max_points))
    x = x.astype(np.float64)
    edges = np.linspace(1, n - 1, max_points - 1).astype(np.int64)  # buckets between the fixed ends
    kept = np.empty(max_points, dtype=np.int64)
    kept[0], kept[-1] = 0, n - 1
    previous = 0
    for b in range(max_points - 2):
        lo, hi = edges[b], max(edges[b + 1], edges[b] + 1)
        next_lo, next_hi = hi, (edges[b + 2] if b + 2 < len(edges) else n)
        next_x = x[next_lo:max(next_hi, next_lo + 1)].mean()
        next_y = y[next_lo:max(next_hi, next_lo + 1)].mean()
        px, py = x[previous], y[previous]
        area = np.abs((px - next_x) * (y[lo:hi] - py) - (px - x[lo:hi]) * (next_y - py))
        previous = lo + int(np.argmax(area))
        kept[b + 1] = previous
    return np.unique(kept)
