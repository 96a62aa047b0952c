"""Downsampling curves (numpy only): spikes survive, bounds hold, short series pass through."""

from __future__ import annotations

import time

import numpy as np
import pytest

from backend.domain.analysis.downsample import downsample, lttb, minmax_envelope


@pytest.mark.parametrize("n, max_points", [(100_000, 1000), (12_345, 100), (1001, 1000), (50, 10)])
def test_envelope_keeps_every_bucket_extreme_within_the_budget(n, max_points):
    rng = np.random.default_rng(n)
    y = rng.normal(size=n)
    kept = minmax_envelope(y, max_points)
    assert len(kept) <= max_points and np.all(np.diff(kept) > 0)
    assert kept[0] == 0 and kept[-1] == n - 1
    size = -(-n // (max_points // 4))
    for start in range(0, n, size):
        bucket = y[start:start + size]
        assert start + int(np.argmin(bucket)) in kept and start + int(np.argmax(bucket)) in kept


def test_single_spikes_survive_both_methods():
    x = np.arange(100_000)
    y = np.sin(x / 500.0)
    y[31_337], y[77_777] = 50.0, -50.0
    for method in ("minmax", "lttb"):
        kept = downsample(x, y, 1000, method)
        assert len(kept) <= 1000 and 31_337 in kept and 77_777 in kept, method


def test_short_series_are_returned_whole():
    x = np.arange(10)
    assert downsample(x, x * 1.0, 10).tolist() == list(range(10))
    assert lttb(x, x * 1.0, 20).tolist() == list(range(10))


def test_a_100k_series_downsamples_in_milliseconds():
    x = np.arange(100_000)
    y = np.random.default_rng(0).normal(size=100_000)
    started = time.perf_counter()
    downsample(x, y, 1000)
    assert time.perf_counter() - started < 0.05
