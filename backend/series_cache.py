"""Recently drawn series, kept in memory so zooming into a long curve does not re-read it.

Reading 10⁵ points from the database costs ~0.1 s; slicing and downsampling them in
numpy costs ~1 ms. An entry is valid while the run's largest point id is unchanged
(ids only grow, even when a point is overwritten: see backend.points), so a finished
run's curves stay cached and a live run's are re-read when they have grown.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

Series = tuple[np.ndarray, np.ndarray, np.ndarray]  # steps, values, epochs
DEFAULT_MAX_POINTS = 4_000_000                      # ~100 MB of float64/int64 columns


class SeriesCache:
    """A thread-safe LRU of (run_id, key) → series, bounded by the total number of points."""

    def __init__(self, max_points: int = DEFAULT_MAX_POINTS) -> None:
        self.max_points = max_points
        self._entries: OrderedDict[tuple[int, str], tuple[int, Series]] = OrderedDict()
        self._points = 0
        self._lock = threading.Lock()

    def get(self, run_id: int, key: str, version: int, load: Callable[[], Series]) -> Series:
        with self._lock:
            entry = self._entries.get((run_id, key))
            if entry is not None and entry[0] == version:
                self._entries.move_to_end((run_id, key))
                return entry[1]
        series = load()                     # outside the lock: other requests go on meanwhile
        with self._lock:
            self._put((run_id, key), version, series)
        return series

    def _put(self, name: tuple[int, str], version: int, series: Series) -> None:
        old = self._entries.pop(name, None)
        if old is not None:
            self._points -= len(old[1][0])
        if len(series[0]) > self.max_points:
            return
        self._entries[name] = (version, series)
        self._points += len(series[0])
        while self._points > self.max_points:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._points -= len(evicted[0])
