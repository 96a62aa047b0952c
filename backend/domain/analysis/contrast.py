"""Does A beat B? Contrast statistics between two groups of an experiment, d by d.

Group a holds the runs whose grid field `field` is a, group b those where it is b; the other grid
fields but d stay equal (each combination of them is a stratum, one contrast each). At every d both
groups ran, on the metric y of their succeeded runs (final test accuracy, or best test accuracy):

    Δ        = ȳ_a − ȳ_b
    SE       = √(s_a²/n_a + s_b²/n_b)
    ν        = SE⁴ / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1))      Welch–Satterthwaite
    ci       = Δ ± t_{ν, (1 + confidence)/2} · SE                          two-sided
    p_value  = P(T_ν ≥ Δ / SE)                                             one-sided: H₁ a > b
    p_adjusted  Holm's step-down over the d of the stratum: the i-th smallest of m p-values times
             (m − i + 1), made non-decreasing, at most 1 — the family-wise error rate of the stratum
             held at α whatever the dependence between the d
    equivalent  with a margin δ, two one-sided tests (Schuirmann 1987) at α = 1 − confidence:
             H₀ Δ ≤ −δ and H₀ Δ ≥ δ both rejected; p_equivalence = the larger of their p-values
    paired   the seeds both groups ran at that d: the differences y_a(s) − y_b(s), their mean, a
             t interval and the one-sided p (ν = pairs − 1) — a sensitivity check, since the same
             seed gives the same θ_0 and data order

Where a group has fewer than two runs at a d, or neither has any spread, the interval and tests are
None and `reason` says why. The distributions are scipy.stats' (ttest_ind with equal_var=False,
ttest_rel); tests/test_contrast_statistics.py checks their calibration by simulation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from backend.domain.analysis.summary import finite, group_key, same_value
from backend.domain.grid import MEMBER
from backend.domain.models import SUCCEEDED, Experiment, Run

METRICS = ("test_acc", "best_test_acc")
CONFIDENCE = 0.95


class ContrastError(ValueError):
    """A contrast that cannot be computed as asked: `field` names the parameter to fix."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def welch(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE,
          margin: float | None = None) -> dict:
    """Welch's comparison of two samples: Δ = mean(a) − mean(b), its interval, the one-sided p (a > b), and
    with a margin the equivalence test."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    result = {"n_a": len(a), "n_b": len(b), "mean_a": _mean(a), "mean_b": _mean(b), "delta": None, "ci": None,
              "p_value": None, "df": None, "margin": margin, "p_equivalence": None, "equivalent": None,
              "reason": None}
    if len(a) and len(b):
        result["delta"] = float(a.mean() - b.mean())
    reason = _untestable(a, b)
    if reason:
        return {**result, "reason": reason}
    two_sided = stats.ttest_ind(a, b, equal_var=False)
    interval = two_sided.confidence_interval(confidence_level=confidence)
    result.update(ci=[float(interval.low), float(interval.high)], df=float(two_sided.df),
                  p_value=float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue))
    if margin is not None:
        above = stats.ttest_ind(a + margin, b, equal_var=False, alternative="greater").pvalue   # H₀ Δ ≤ −δ
        below = stats.ttest_ind(a - margin, b, equal_var=False, alternative="less").pvalue      # H₀ Δ ≥ δ
        result["p_equivalence"] = float(max(above, below))
        result["equivalent"] = bool(result["p_equivalence"] < 1 - confidence)
    return result


def paired(pairs: Sequence[tuple[float, float]], confidence: float = CONFIDENCE) -> dict:
    """The seed-matched differences y_a − y_b: their count, mean, t interval and one-sided p (a > b)."""
    a, b = (np.asarray([pair[i] for pair in pairs], dtype=float) for i in (0, 1))
    result = {"pairs": len(a), "delta": float((a - b).mean()) if len(a) else None, "ci": None, "p_value": None}
    if len(a) < 2 or np.ptp(a - b) == 0:
        return result
    two_sided = stats.ttest_rel(a, b)
    interval = two_sided.confidence_interval(confidence_level=confidence)
    return {**result, "ci": [float(interval.low), float(interval.high)],
            "p_value": float(stats.ttest_rel(a, b, alternative="greater").pvalue)}


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: not tested, left out of the family)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def contrast(experiment: Experiment, runs: Sequence[Run], field: str, a: str, b: str, metric: str = "test_acc",
             confidence: float = CONFIDENCE, margin: float | None = None) -> dict:
    """The contrast a − b of the experiment's member runs on `field`, per stratum and d (the module's formulas).

    a and b are grid values as a query gives them: the value's JSON (`true`, `0.001`, `"rff"`) or its text.
    """
    grid = experiment.grid or {}
    _check(grid, field, a, b, metric, confidence, margin)
    value_a, value_b = (_grid_value(grid[field], text) for text in (a, b))
    others = [name for name in grid if name not in ("d", "seed", field)]
    cells: dict[str, dict] = {}
    for run in runs:
        if run.role != MEMBER or run.status != SUCCEEDED:
            continue
        y = finite((run.final_metrics or {}).get(metric))
        value = run.config.get(field)
        side = "a" if same_value(value, value_a) else "b" if same_value(value, value_b) else None
        if y is None or side is None:
            continue
        stratum = cells.setdefault(group_key(run.config, others), {"values": {n: run.config.get(n) for n in others},
                                                               "by_d": {}})
        stratum["by_d"].setdefault(run.config["d"], {"a": {}, "b": {}})[side][run.config.get("seed")] = y
    strata = [_stratum(cell, confidence, margin) for cell in cells.values()]
    return {"field": field, "a": value_a, "b": value_b, "metric": metric, "confidence": confidence,
            "margin": margin, "fields": others, "strata": strata}


#: The columns of a contrast's table (`table`), after the strata's fields.
TABLE_COLUMNS = ["d", "n_a", "n_b", "mean_a", "mean_b", "delta", "ci_low", "ci_high", "df", "p_value", "p_adjusted",
                 "margin", "p_equivalence", "equivalent", "reason", "paired_pairs", "paired_delta", "paired_ci_low",
                 "paired_ci_high", "paired_p_value"]


def table(result: dict) -> tuple[list[str], list[dict]]:
    """A `contrast` as one row per stratum × d (the export's CSV): columns, rows."""
    rows = []
    for stratum in result["strata"]:
        for row in stratum["rows"]:
            (low, high), pair = row["ci"] or (None, None), row["paired"]
            paired_low, paired_high = pair["ci"] or (None, None)
            rows.append({**{name: stratum.get(name) for name in result["fields"]},
                         **{name: row.get(name) for name in TABLE_COLUMNS if name in row},
                         "ci_low": low, "ci_high": high, "paired_pairs": pair["pairs"], "paired_delta": pair["delta"],
                         "paired_ci_low": paired_low, "paired_ci_high": paired_high,
                         "paired_p_value": pair["p_value"]})
    return [*result["fields"], *TABLE_COLUMNS], rows


def _stratum(cell: dict, confidence: float, margin: float | None) -> dict:
    rows = []
    for d in sorted(cell["by_d"]):
        seeds_a, seeds_b = cell["by_d"][d]["a"], cell["by_d"][d]["b"]
        if not seeds_a or not seeds_b:
            continue
        row = {"d": d, **welch(list(seeds_a.values()), list(seeds_b.values()), confidence, margin)}
        row["paired"] = paired([(seeds_a[s], seeds_b[s]) for s in seeds_a if s in seeds_b], confidence)
        rows.append(row)
    for row, adjusted in zip(rows, holm([row["p_value"] for row in rows]), strict=True):
        row["p_adjusted"] = adjusted
    return {**cell["values"], "rows": rows}


def _check(grid: dict, field: str, a: str, b: str, metric: str, confidence: float, margin: float | None) -> None:
    if field not in grid or field in ("d", "seed"):
        sweepable = [name for name in grid if name not in ("d", "seed")]
        raise ContrastError("field", f"{field!r} is not a grid field of this experiment besides d: use one of "
                                     f"{sweepable}" if sweepable else "this experiment sweeps no field but d: "
                                     "there are no two groups to contrast")
    for name, text in (("a", a), ("b", b)):
        if _grid_value(grid[field], text) is _MISSING:
            raise ContrastError(name, f"{text!r} is not one of the values of {field}: "
                                      f"{[json.dumps(v) for v in grid[field]]}")
    if same_value(_grid_value(grid[field], a), _grid_value(grid[field], b)):
        raise ContrastError("b", "a and b name the same group: contrast two different values")
    if metric not in METRICS:
        raise ContrastError("metric", f"unknown metric {metric!r}: use one of {list(METRICS)}")
    if not 0.5 <= confidence < 1:
        raise ContrastError("confidence", f"confidence must be in [0.5, 1), got {confidence}")
    if margin is not None and not (math.isfinite(margin) and margin > 0):
        raise ContrastError("margin", f"the equivalence margin must be a positive number, got {margin}")


_MISSING = object()


def _grid_value(values: list, text: str):
    """The grid value a query's text names: its JSON, or its plain text (`rff`, `True`)."""
    for value in values:
        if text in (json.dumps(value), str(value)):
            return value
    return _MISSING


def _untestable(a: np.ndarray, b: np.ndarray) -> str | None:
    if len(a) < 2 or len(b) < 2:
        return "fewer than two runs in a group: no spread to test against"
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return "neither group varies across its runs: no spread to test against"
    return None


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None
