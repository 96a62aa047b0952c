"""The adaptive search for d_int90: bracket d by doubling, then bisect on a log scale.

Pure Python and numpy: no database, no torch. The service (`backend.domain.search_rounds`) stores the
outcomes and queues the runs; this module only decides which d comes next.

A search runs per group (one combination of the grid fields other than d), with the
threshold τ = 0.9 · a_base of Li et al. Each round evaluates one d with every seed s:

    ā(d)      = (1/n) Σ_s a_s(d)          the mean final test accuracy over the seeds at d
    reached   ⇔ ā(d) ≥ τ and no seed diverged at d

(a diverged seed has no accuracy to average: it makes its d fall short, so a run that
blew up never pulls d_int90 down). After the rounds (d_1, r_1), …, (d_t, r_t):

    lo = max { d_i : not r_i }        the largest d known to fall short (None: none yet)
    hi = min { d_i : r_i }            the smallest d known to reach τ   (None: none yet)

Every next d lies strictly inside (lo, hi), so every evaluated d ≤ lo fell short and
every evaluated d ≥ hi reached τ: the smallest evaluated d reaching τ — d_int90 as the
summary computes it from the same points — is hi, and the crossing lies in (lo, hi].

The next d, with growth factor g = 2:

    bracketing up     hi unknown:   d' = min(g · lo, d_max)            (the first round: d' = d_start)
    bracketing down   lo unknown:   d' = max(⌊hi / g⌋, 1)              (d_start already reached τ)
    bisecting         both known:   d' = round(√(lo · hi)), clamped to [lo + 1, hi − 1]

√(lo · hi) is the midpoint of log lo and log hi: accuracy is close to a function of log d,
and the tolerance is relative. The search is

    decided   when hi / lo ≤ 1 + tolerance, or hi − lo ≤ 1 (no integer lies between),
              or hi = 1 (nothing is smaller);
    stopped   when lo = d_max (τ is not reached up to d_max), or after max_rounds rounds
              without a decision (the bracket so far is kept).

Cost. Bracketing from d_start to a crossing at d* takes ⌈log2(d*/d_start)⌉ + 1 rounds;
bisecting a bracket of ratio 2 down to 1 + tolerance takes ⌈log2(ln 2 / ln(1 + tolerance))⌉
(3 for a tolerance of 0.1). A log-spaced grid of the same resolution, d_start · (1 + tolerance)^i
up to d_max, has ⌈ln(d_max / d_start) / ln(1 + tolerance)⌉ + 1 points (100 from 8 to 100,000):
`log_grid` lists it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SEARCHING, DECIDED, STOPPED, BLOCKED = "searching", "decided", "stopped", "blocked"
#: A group is "blocked" by the service, not here: a run of its round failed or was cancelled.
STATUSES = (SEARCHING, DECIDED, STOPPED, BLOCKED)
GROWTH = 2


@dataclass(frozen=True)
class Parameters:
    d_start: int = 8
    tolerance: float = 0.1
    d_max: int = 20_000
    max_rounds: int = 30

    def __post_init__(self) -> None:
        if not 1 <= self.d_start <= self.d_max:
            raise ValueError(f"need 1 ≤ d_start ≤ d_max, got d_start = {self.d_start}, d_max = {self.d_max}")
        if not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise ValueError(f"tolerance must be a positive number, got {self.tolerance!r}")
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {self.max_rounds}")


@dataclass(frozen=True)
class Step:
    """Where a group's search stands after its evaluated rounds, and what to evaluate next."""

    status: str              # SEARCHING, DECIDED or STOPPED
    d: int | None            # the next d to evaluate (SEARCHING only)
    lo: int | None           # largest d that fell short
    hi: int | None           # smallest d that reached τ
    reason: str | None       # why it stopped, or how it was decided

    @property
    def bracket(self) -> tuple[int | None, int | None]:
        return self.lo, self.hi


def bracket(outcomes: Sequence[tuple[int, bool]]) -> tuple[int | None, int | None]:
    """(lo, hi) of evaluated rounds [(d, reached), …]: the largest d short of τ, the smallest reaching it."""
    short = [d for d, reached in outcomes if not reached]
    reaching = [d for d, reached in outcomes if reached]
    return (max(short) if short else None, min(reaching) if reaching else None)


def narrow_enough(lo: int | None, hi: int | None, tolerance: float) -> bool:
    """hi / lo ≤ 1 + tolerance, or no integer d strictly between them, or hi = 1."""
    if hi is None:
        return False
    if lo is None:
        return hi <= 1
    return hi - lo <= 1 or hi <= lo * (1 + tolerance)


def next_step(parameters: Parameters, outcomes: Sequence[tuple[int, bool]]) -> Step:
    """The next d of a group, or its decision, from its evaluated rounds [(d, reached), …] in order."""
    p = parameters
    if not outcomes:
        return Step(SEARCHING, p.d_start, None, None, None)
    lo, hi = bracket(outcomes)
    if narrow_enough(lo, hi, p.tolerance):
        if lo is None:
            why = "hi = 1"
        elif hi - lo > 1:
            why = f"hi / lo = {hi / lo:.3g} ≤ 1 + {p.tolerance:g}"
        else:
            why = "no integer d lies between"
        return Step(DECIDED, None, lo, hi, f"d_int90 lies in ({_show(lo, 0)}, {hi}]: {why}")
    if hi is None and lo >= p.d_max:
        return Step(STOPPED, None, lo, hi, f"the threshold was not reached up to d_max = {p.d_max}")
    if len(outcomes) >= p.max_rounds:
        where = (f"d_int90 lies in ({_show(lo, 0)}, {hi}]" if hi is not None
                 else f"the threshold was not reached up to d = {lo}")
        return Step(STOPPED, None, lo, hi, f"max_rounds = {p.max_rounds} rounds evaluated without a decision: {where}")
    if hi is None:
        d = min(GROWTH * lo, p.d_max)
    elif lo is None:
        d = max(hi // GROWTH, 1)
    else:
        d = min(max(round(math.sqrt(lo * hi)), lo + 1), hi - 1)
    return Step(SEARCHING, d, lo, hi, None)


def round_outcome(accuracies: Sequence[float | None], threshold: float) -> tuple[float | None, bool]:
    """(ā, reached) of one round: the mean over the seeds that have an accuracy, and whether it counts
    as reaching τ — it does not if any seed diverged (None)."""
    valid = [a for a in accuracies if a is not None and math.isfinite(a)]
    # numpy's mean, as backend.domain.analysis.intrinsic_dimension takes it: the summary reaches the same verdicts.
    mean = float(np.mean(valid)) if valid else None
    return mean, bool(valid) and len(valid) == len(accuracies) and mean >= threshold


def simulate(parameters: Parameters, accuracy: Callable[[int], float | Sequence[float | None]],
             threshold: float) -> tuple[Step, list[tuple[int, float | None, bool]]]:
    """The whole search against a known accuracy-vs-d function (a float, or one value per seed):
    its last step and every evaluated round (d, ā, reached), in order."""
    rounds: list[tuple[int, float | None, bool]] = []
    while (step := next_step(parameters, [(d, reached) for d, _, reached in rounds])).status == SEARCHING:
        value = accuracy(step.d)
        mean, reached = round_outcome([value] if isinstance(value, (int, float)) or value is None else value, threshold)
        rounds.append((step.d, mean, reached))
    return step, rounds


def log_grid(parameters: Parameters) -> list[int]:
    """The log-spaced grid of the same resolution: the distinct integers round(d_start · (1 + tolerance)^i)
    from d_start up to d_max, d_max included."""
    p = parameters
    n = math.ceil(math.log(p.d_max / p.d_start) / math.log1p(p.tolerance) - 1e-12)
    return sorted({min(round(p.d_start * (1 + p.tolerance) ** i), p.d_max) for i in range(n + 1)})


def max_rounds_needed(parameters: Parameters) -> int:
    """Rounds a search can take at most: bracketing all the way up to d_max (or down to 1), then bisecting
    a bracket of ratio 2 down to 1 + tolerance, plus one for rounding — or max_rounds, if fewer."""
    p = parameters
    up = math.ceil(math.log2(p.d_max / p.d_start)) + 1 if p.d_max > p.d_start else 1
    down = math.ceil(math.log2(p.d_start)) + 1 if p.d_start > 1 else 0
    bisect = max(0, math.ceil(math.log2(math.log(GROWTH) / math.log1p(p.tolerance))))
    return min(p.max_rounds, max(up, down) + bisect + 1)


def _show(value: int | None, empty: int) -> int:
    return empty if value is None else value
