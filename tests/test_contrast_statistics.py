"""Contrast statistics (backend/domain/analysis/contrast.py): Welch's Δ, its interval and one-sided test,
Holm's adjustment, the equivalence test and the paired check — against a computation by hand, and
calibrated by simulation (the rates are printed: `pytest -s`)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backend.domain.analysis.contrast import holm, paired, welch

A = [0.62, 0.60, 0.65, 0.61, 0.63]
B = [0.58, 0.59, 0.57, 0.61, 0.56]


def test_welch_equals_the_textbook_formulas():
    result = welch(A, B, margin=0.05)
    var_a, var_b, n = np.var(A, ddof=1), np.var(B, ddof=1), 5
    se = math.sqrt(var_a / n + var_b / n)
    df = se**4 / ((var_a / n) ** 2 / (n - 1) + (var_b / n) ** 2 / (n - 1))
    delta = np.mean(A) - np.mean(B)
    assert result["delta"] == pytest.approx(delta) and result["df"] == pytest.approx(df)
    from scipy.stats import t
    half = t.ppf(0.975, df) * se
    assert result["ci"] == pytest.approx([delta - half, delta + half])
    assert result["p_value"] == pytest.approx(t.sf(delta / se, df))
    # equivalence within ±0.05: both one-sided tests must reject at α = 0.05
    p_tost = max(t.sf((delta + 0.05) / se, df), t.cdf((delta - 0.05) / se, df))
    assert result["p_equivalence"] == pytest.approx(p_tost)
    assert result["equivalent"] == (p_tost < 0.05)
    assert (result["n_a"], result["n_b"]) == (5, 5) and result["reason"] is None


def test_too_few_runs_or_no_spread_say_why_instead_of_testing():
    one = welch([0.6], B)
    assert one["delta"] == pytest.approx(0.6 - np.mean(B)) and one["ci"] is None and one["p_value"] is None
    assert "fewer than two" in one["reason"]
    flat = welch([0.5, 0.5], [0.4, 0.4], margin=0.1)
    assert flat["ci"] is None and flat["equivalent"] is None and "varies" in flat["reason"]


def test_holm_multiplies_by_the_remaining_count_and_stays_monotone():
    adjusted = holm([0.01, 0.04, 0.03, None])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and adjusted[3] is None
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_paired_uses_the_seed_differences():
    result = paired(list(zip(A, B, strict=True)))
    differences = np.subtract(A, B)
    assert result["pairs"] == 5 and result["delta"] == pytest.approx(differences.mean())
    from scipy.stats import t
    se = differences.std(ddof=1) / math.sqrt(5)
    assert result["p_value"] == pytest.approx(t.sf(differences.mean() / se, 4))
    assert result["ci"] == pytest.approx([differences.mean() - t.ppf(0.975, 4) * se,
                                          differences.mean() + t.ppf(0.975, 4) * se])


REPLICATES = 2000


def test_calibration_by_simulation():
    """Five seeds per arm, unequal spreads (σ 0.01 and 0.02): with Δ = 0 the one-sided test rejects at most
    6 % at α = 0.05; the Welch interval covers the true Δ at least 93 %; Holm over four true nulls keeps the
    family-wise rate at most 6 %; with Δ on the margin, equivalence is declared at most 6 %."""
    rng = np.random.default_rng(20261208)
    rejections = covered = family_errors = false_equivalence = 0
    for _ in range(REPLICATES):
        a, b = rng.normal(0.80, 0.01, 5), rng.normal(0.80, 0.02, 5)
        null = welch(a, b)
        rejections += null["p_value"] < 0.05
        shifted = welch(a + 0.01, b)                                    # true Δ = 0.01
        covered += shifted["ci"][0] <= 0.01 <= shifted["ci"][1]
        family = [welch(rng.normal(0.8, 0.01, 5), rng.normal(0.8, 0.02, 5))["p_value"] for _ in range(3)]
        family_errors += min(p for p in holm([null["p_value"], *family]) if p is not None) < 0.05
        on_margin = welch(a + 0.02, b, margin=0.02)                     # true Δ = δ: not equivalent
        false_equivalence += bool(on_margin["equivalent"])
    rates = {name: count / REPLICATES for name, count in (("rejection", rejections), ("coverage", covered),
                                                          ("family-wise", family_errors),
                                                          ("false equivalence", false_equivalence))}
    print("contrast calibration over", REPLICATES, "replicates:", rates)
    assert rates["rejection"] <= 0.06 and rates["coverage"] >= 0.93
    assert rates["family-wise"] <= 0.06 and rates["false equivalence"] <= 0.06
