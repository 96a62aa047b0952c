"""An experiment's summary: accuracy against d per group, the baseline, and d_int90 with its interval.

Groups are the combinations of every grid field except `d` (and the seeds), e.g.
one curve per augmentation. Within a group, the succeeded member runs give
(d, final test_acc) pairs for backend.domain.analysis.intrinsic_dimension.d_int90 (its
Student-t interval, docs/statistics.md); a point's n counts only those runs.

Nothing is dropped silently: each group reports its runs per status (`counts`) and
the finished runs left out of the curve (`excluded`: diverged, failed, cancelled, and
succeeded runs without a finite test accuracy). A group is `not_converged` when some
succeeded run's best test accuracy came at its last epoch (final test_acc ≥
best_test_acc): it was still improving, so more epochs could move the curve
(`not_converged_run_ids` names those runs).

Each point also carries the mean size of its runs' model files, and the group the
size at d_int90 against θ_D's (`d_int90_model_bytes`, `network_bytes`,
`d_int90_compression`): the compressed description d_int90 bounds.

The baseline is the experiment's global number, or else ("individual") the mean
final test accuracy of its succeeded direct-training runs that match the group on
the fields direct training depends on; until one has succeeded it is None, and so
are the threshold and the d_int90 fields.

A search experiment's groups are summarised the same way, from the d its search
evaluated; each group also carries its search's state (`search`: status, bracket,
rounds), read from the experiment's search groups.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from backend.domain.analysis import intrinsic_dimension
from backend.domain.grid import BASELINE, MEMBER, SUBSPACE_ONLY
from backend.domain.models import CANCELLED, DIVERGED, FAILED, SUCCEEDED, Experiment, Run
from idlab.metrics import MODEL_BYTES, NETWORK_BYTES
from idlab.model_file import BYTES_PER_WEIGHT

FRACTION = 0.9
N_BOOTSTRAP = 1000
CONFIDENCE = 0.95
METHOD = intrinsic_dimension.STUDENT_T
ACCURACY = "test_acc"
BEST_ACCURACY = "best_test_acc"
NO_ACCURACY = "no_accuracy"      # a succeeded run without a finite test accuracy
#: What a group reports of d_int90's result.
ESTIMATE = ("points", "d_int90", "d_int90_interpolated", "d_int90_interval", "d_int90_method", "d_int90_at_min",
            "d_int90_not_reached", "baseline", "threshold")


def summarize(experiment: Experiment, runs: Sequence[Run], search_groups: Sequence = ()) -> dict:
    fields = [name for name in experiment.grid if name not in ("d", "seed")]
    members = [run for run in runs if run.role == MEMBER]
    baselines = [run for run in runs if run.role == BASELINE]
    mode = (experiment.baseline or {}).get("mode")

    groups: dict[str, list[Run]] = {}
    for run in members:
        groups.setdefault(group_key(run.config, fields), []).append(run)

    summaries = []
    for members_of_group in groups.values():
        values = {name: members_of_group[0].config.get(name) for name in fields}
        if mode == "global":
            baseline = float(experiment.baseline["value"])
        elif mode == "individual":
            baseline = _baseline_accuracy(baselines, values)
        else:
            baseline = None
        summaries.append({**values, **_group(members_of_group, baseline)})
    searches = {group_key(group.grid_values, fields): search_state(group) for group in search_groups}
    for summary in summaries if searches else ():
        summary["search"] = searches.get(group_key(summary, fields))

    shared = {g["baseline"] for g in summaries}
    baseline = shared.pop() if len(shared) == 1 else (float(experiment.baseline["value"]) if mode == "global" else None)
    return {
        "kind": experiment.kind or "grid",
        "search": experiment.search,
        "fields": fields,
        "groups": summaries,
        "baseline": baseline,
        "threshold": FRACTION * baseline if baseline is not None else None,
        "baseline_mode": mode,
        "fraction": FRACTION,
        "d_int90_method": METHOD,
        "d_int90_confidence": CONFIDENCE,
    }


def _group(runs: list[Run], baseline: float | None) -> dict:
    succeeded = [run for run in runs if run.status == SUCCEEDED]
    results = [(run.config["d"], final_accuracy(run)) for run in succeeded]
    if baseline is None:
        estimate = dict.fromkeys(ESTIMATE) | {"points": intrinsic_dimension.accuracy_by_d(results),
                                              "d_int90_method": METHOD, "d_int90_at_min": False,
                                              "d_int90_not_reached": False}
    else:
        report = intrinsic_dimension.d_int90(results, baseline, fraction=FRACTION, n_bootstrap=N_BOOTSTRAP,
                                             confidence=CONFIDENCE, method=METHOD)
        estimate = {key: report[key] for key in ESTIMATE}
    unconverged = [run.id for run in succeeded if _best_at_last_epoch(run)]
    return {**estimate, **_sizes(succeeded, estimate, runs[0].D), "D": runs[0].D,
            "counts": dict(Counter(run.status for run in runs)), "excluded": _excluded(runs),
            "not_converged": bool(unconverged), "not_converged_run_ids": unconverged}


def _sizes(succeeded: list[Run], estimate: dict, D: int | None) -> dict:
    """The model file's bytes at every point (mean over its runs) and at d_int90, against θ_D's D × 4 bytes:
    the description length d_int90 bounds, as stored (docs/model-files.md)."""
    by_d: dict = {}
    for run in succeeded:
        if (size := finite((run.final_metrics or {}).get(MODEL_BYTES))) is not None:
            by_d.setdefault(run.config["d"], []).append(size)
    for point in estimate["points"]:
        point[MODEL_BYTES] = float(np.mean(by_d[point["d"]])) if point["d"] in by_d else None
    network_bytes = D * BYTES_PER_WEIGHT if D else None
    at_d_int90 = next((p[MODEL_BYTES] for p in estimate["points"] if p["d"] == estimate["d_int90"]), None)
    return {NETWORK_BYTES: network_bytes, "d_int90_model_bytes": at_d_int90,
            "d_int90_compression": network_bytes / at_d_int90 if network_bytes and at_d_int90 else None}


def _excluded(runs: list[Run]) -> dict[str, int]:
    """Finished runs left out of the curve: {diverged, failed, cancelled, no_accuracy} → count (zeros kept)."""
    counts = Counter(run.status for run in runs)
    missing = sum(1 for run in runs if run.status == SUCCEEDED and final_accuracy(run) is None)
    return {DIVERGED: counts[DIVERGED], FAILED: counts[FAILED], CANCELLED: counts[CANCELLED], NO_ACCURACY: missing}


def _best_at_last_epoch(run: Run) -> bool:
    """The run's best test accuracy came at its last epoch (a tie counts): it had not stopped improving."""
    last, best = final_accuracy(run), finite((run.final_metrics or {}).get(BEST_ACCURACY))
    return last is not None and best is not None and last >= best


def search_state(group) -> dict:
    """A search group as the summary shows it (backend.domain.models.SearchGroup)."""
    return {"status": group.status, "reason": group.reason, "decided": group.status == "decided",
            "bracket": [group.bracket_lo, group.bracket_hi], "threshold": group.threshold,
            "rounds": list(group.rounds or [])}


def matching_baselines(baselines: Sequence, group_values: dict) -> list:
    """The baseline runs of a group: those that match it on the fields direct training depends on."""
    relevant = {name: value for name, value in group_values.items() if name not in SUBSPACE_ONLY}
    return [run for run in baselines
            if all(same_value(run.config.get(name), value) for name, value in relevant.items())]


def _baseline_accuracy(baselines: list[Run], group_values: dict) -> float | None:
    """Mean final accuracy of the succeeded baselines matching the group on the fields direct training uses."""
    accuracies = [final_accuracy(run) for run in matching_baselines(baselines, group_values) if run.status == SUCCEEDED]
    accuracies = [a for a in accuracies if a is not None]
    return float(np.mean(accuracies)) if accuracies else None


def final_accuracy(run: Run) -> float | None:
    """The run's final test accuracy, or None when it reported none (or a non-finite one)."""
    return finite((run.final_metrics or {}).get(ACCURACY))


def finite(value) -> float | None:
    """The value as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def group_key(config: dict, fields: list[str]) -> str:
    """The values of these fields in a config, as one comparable text: runs of one group share it."""
    return json.dumps([config.get(name) for name in fields], sort_keys=True, default=str)


def same_value(a, b) -> bool:
    """Whether two config values have the same JSON text (True and 1 do not)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
