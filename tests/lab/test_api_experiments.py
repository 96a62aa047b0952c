"""/api/experiments: expanding sweeps, refusing bad ones whole, listing, summary and export."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from sqlalchemy import func, select

from backend.domain.analysis.intrinsic_dimension import d_int90
from backend.domain.models import CANCELLED, DIVERGED, FAILED, SUCCEEDED, Experiment, Run
from tests.lab.conftest import queued_run_ids
from tests.lab.test_api_runs import finish

BASE = {"dataset": "synthetic", "epochs": 1}


def create(client, **request) -> dict:
    response = client.post("/api/experiments", json={"name": "sweep", "base": BASE, **request})
    assert response.status_code == 201, response.text
    return response.json()


def stored_counts(sessions) -> tuple[int, int]:
    with sessions() as session:
        return (session.scalar(select(func.count()).select_from(Experiment)),
                session.scalar(select(func.count()).select_from(Run)))


def runs_of(sessions, experiment_id: int) -> list[Run]:
    with sessions() as session:
        return session.scalars(select(Run).where(Run.experiment_id == experiment_id).order_by(Run.id)).all()


# ---- expansion -----------------------------------------------------------------------------------


def test_grid_times_seeds_plus_individual_baselines(client, settings, sessions):
    body = create(client, grid={"augmentation": ["linear", "power", "rff"], "d": [10, 20]}, seeds=[0, 1, 2],
                  baseline=True)
    assert len(body["run_ids"]) == 3 * 2 * 3 + 3 and body["run_count"] == 21 and body["counts"] == {"queued": 21}
    assert body["baseline"] == {"mode": "individual", "value": None}
    assert body["grid"] == {"augmentation": ["linear", "power", "rff"], "d": [10, 20]} and body["seeds"] == [0, 1, 2]
    runs = runs_of(sessions, body["id"])
    members = [r for r in runs if r.role == "member"]
    baselines = [r for r in runs if r.role == "baseline"]
    assert {(r.config["augmentation"], r.config["d"], r.config["seed"]) for r in members} == {
        (a, d, s) for a in ("linear", "power", "rff") for d in (10, 20) for s in (0, 1, 2)}
    assert all(r.config["dataset"] == "synthetic" and r.config["epochs"] == 1 for r in runs)
    assert sorted(r.config["seed"] for r in baselines) == [0, 1, 2]
    assert all(r.config["method"] == "direct" and r.d == r.D for r in baselines)
    assert sorted(queued_run_ids(settings)) == sorted(body["run_ids"])


def test_dry_run_previews_sizes_and_stores_nothing(client, settings, sessions):
    before = stored_counts(sessions)
    response = client.post("/api/experiments", params={"dry_run": "true"}, json={
        "name": "preview", "base": {**BASE, "projection": "dense"}, "grid": {"d": [10, 20]}, "seeds": [0, 1],
        "baseline": True})
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["run_count"] == 6 and plan["baseline_count"] == 2
    D = plan["runs"][0]["D"]
    assert D == 199_210                                  # synthetic data is MNIST-shaped
    assert plan["total_dense_p_bytes"] == sum(4 * D * d for d in (10, 20)) * 2
    assert plan["max_dense_p_bytes"] == 4 * D * 20
    assert stored_counts(sessions) == before and queued_run_ids(settings) == []
    bad = client.post("/api/experiments", params={"dry_run": "true"},
                      json={"name": "preview", "base": BASE, "grid": {"d": [10, 0]}})
    assert bad.status_code == 422


def test_global_baseline_and_no_baseline(client, sessions):
    glob = create(client, grid={"d": [10, 20]}, seeds=[0, 1], baseline=1.0)
    assert len(glob["run_ids"]) == 4 and glob["baseline"] == {"mode": "global", "value": 1.0}
    none = create(client, grid={"d": [10, 20]})
    assert len(none["run_ids"]) == 2 and none["seeds"] == [0] and none["baseline"]["mode"] is None
    seeded = create(client, base={**BASE, "seed": 7})
    assert len(seeded["run_ids"]) == 1 and seeded["seeds"] == [7]


def test_baselines_follow_the_grid_fields_direct_training_depends_on(client, sessions):
    body = create(client, grid={"model": ["fc", "lenet"], "augmentation": ["linear", "rff"], "d": [10]},
                  seeds=[0, 1], baseline=True)
    baselines = [r for r in runs_of(sessions, body["id"]) if r.role == "baseline"]
    assert sorted((r.config["model"], r.config["seed"]) for r in baselines) == [
        ("fc", 0), ("fc", 1), ("lenet", 0), ("lenet", 1)]
    assert len(body["run_ids"]) == 2 * 2 * 2 + 4


@pytest.mark.parametrize("request_, loc, words", [
    ({"grid": {"d": [10, -1, 20]}}, ["body", "grid", "d", 1], "greater than 0"),
    ({"grid": {"projection": ["sparse", "gaussian"]}}, ["body", "grid", "projection", 1], "'dense'"),
    ({"base": {**BASE, "projection": "dense"}, "grid": {"d": [10, 100_000]}}, ["body", "base", "projection"],
     "use projection 'sparse' or 'fastfood'"),
    ({"base": {**BASE, "train_p": True, "d": 10}, "grid": {"projection": ["dense", "fastfood"]}},
     ["body", "base", "train_p"], "needs projection 'dense' (got 'fastfood')"),
    ({"base": {**BASE, "colour": "blue"}}, ["body", "base", "colour"], "Extra inputs"),
    ({"grid": {"colour": ["blue"]}}, ["body", "grid", "colour"], "unknown run-config field"),
    ({"grid": {"seed": [1, 2]}}, ["body", "grid", "seed"], "seeds"),
    ({"grid": {"d": [10, 10.0]}}, ["body", "grid", "d", 1], "duplicate"),
    ({"seeds": [0, 1, 0]}, ["body", "seeds", 2], "twice"),
    ({"seeds": [-1]}, ["body", "seeds", 0], "greater than or equal to 0"),
    ({"grid": {"d": list(range(1, 101))}, "seeds": list(range(11))}, ["body", "grid"], "limit of 1000"),
    ({"grid": {"d": []}}, ["body", "grid", "d"], "at least 1"),
    ({"name": "x" * 201}, ["body", "name"], "at most 200"),
    ({"name": "bad\x00name"}, ["body", "name"], "pattern"),
    ({"baseline": 1.5}, ["body", "baseline"], "accuracy in (0, 1]"),
    ({"baseline": 0}, ["body", "baseline"], "accuracy in (0, 1]"),
])
def test_one_bad_value_rejects_the_whole_experiment(client, settings, sessions, request_, loc, words):
    response = client.post("/api/experiments", json={"name": "bad", "base": BASE, **request_})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(e["loc"] == loc and words in e["msg"] for e in detail), detail
    assert stored_counts(sessions) == (0, 0)
    assert queued_run_ids(settings) == []


def test_grid_errors_name_the_grid_point(client):
    detail = client.post("/api/experiments", json={"name": "x", "base": {**BASE, "projection": "dense"},
                                                   "grid": {"d": [10, 100_000]}}).json()["detail"]
    assert detail[0]["ctx"] == {"grid_point": {"d": 100_000}}


# ---- reading -------------------------------------------------------------------------------------


def test_list_and_read_experiments(client, sessions):
    first = create(client, name="first", grid={"d": [10, 20]})
    second = create(client, name="second", grid={"d": [10]}, seeds=[0, 1, 2])
    finish(sessions, second["run_ids"][0], SUCCEEDED, metrics={"test_acc": 0.5})
    client.post(f"/api/runs/{second['run_ids'][1]}/cancel")

    page = client.get("/api/experiments", params={"limit": 1}).json()
    assert page["total"] == 2 and [e["name"] for e in page["items"]] == ["second"]
    assert page["items"][0]["counts"] == {"succeeded": 1, "cancelled": 1, "queued": 1}
    assert page["items"][0]["run_count"] == 3
    older = client.get("/api/experiments", params={"limit": 1, "offset": 1}).json()["items"]
    assert [e["id"] for e in older] == [first["id"]] and older[0]["counts"] == {"queued": 2}

    detail = client.get(f"/api/experiments/{second['id']}").json()
    assert detail["run_ids"] == second["run_ids"]
    assert [r["status"] for r in detail["runs"]] == ["succeeded", "cancelled", "queued"]
    listed = client.get("/api/runs", params={"experiment_id": second["id"], "role": "member"}).json()
    assert listed["total"] == 3

    for path in ("", "/summary", "/export", "/events"):
        response = client.get(f"/api/experiments/424242{path}")
        assert response.status_code == 404 and "424242" in response.json()["detail"]


# ---- summary -------------------------------------------------------------------------------------

ACCURACY = {("linear", 10): [0.5, 0.6], ("linear", 20): [0.8, 0.84], ("linear", 40): [0.95, 0.97],
            ("rff", 10): [0.9, 0.92], ("rff", 20): [0.96, 0.94], ("rff", 40): [0.97, None]}


def sweep_with_results(client, sessions, baseline) -> tuple[dict, dict[int, Run]]:
    body = create(client, grid={"augmentation": ["linear", "rff"], "d": [10, 20, 40]}, seeds=[0, 1],
                  baseline=baseline)
    runs = {r.id: r for r in runs_of(sessions, body["id"])}
    for run in runs.values():
        if run.role != "member":
            continue
        accuracy = ACCURACY[(run.config["augmentation"], run.config["d"])][run.config["seed"]]
        if accuracy is None:
            finish(sessions, run.id, FAILED, error="diverged early")
        else:
            finish(sessions, run.id, SUCCEEDED, metrics={"test_acc": accuracy, "test_loss": 0.1})
    return body, runs


def test_summary_groups_by_augmentation_with_d_int90(client, sessions):
    body, runs = sweep_with_results(client, sessions, baseline=True)
    waiting = client.get(f"/api/experiments/{body['id']}/summary").json()
    assert waiting["baseline"] is None and waiting["threshold"] is None
    assert all(g["d_int90"] is None and g["d_int90_interval"] is None for g in waiting["groups"])
    assert [p["n"] for p in waiting["groups"][0]["points"]] == [2, 2, 2]          # points already shown

    for run, accuracy in zip([r for r in runs.values() if r.role == "baseline"], [1.0, 0.98], strict=True):
        finish(sessions, run.id, SUCCEEDED, metrics={"test_acc": accuracy})
    summary = client.get(f"/api/experiments/{body['id']}/summary").json()
    assert summary["fields"] == ["augmentation"] and summary["baseline_mode"] == "individual"
    assert summary["baseline"] == pytest.approx(0.99) and summary["threshold"] == pytest.approx(0.891)
    linear, rff = summary["groups"]
    assert (linear["augmentation"], rff["augmentation"]) == ("linear", "rff")
    assert [p["d"] for p in linear["points"]] == [10, 20, 40]
    assert [p["mean"] for p in linear["points"]] == pytest.approx([0.55, 0.82, 0.96])
    assert linear["points"][0]["std"] == pytest.approx(0.0707107, rel=1e-5)
    assert linear["d_int90"] == 40
    # on log d between 20 and 40: 20 · 2^t, t = (0.891 − 0.82) / (0.96 − 0.82)
    assert linear["d_int90_interpolated"] == pytest.approx(20 * 2 ** ((0.891 - 0.82) / (0.96 - 0.82)))
    expected = d_int90([(d, a) for (aug, d), accs in ACCURACY.items() if aug == "linear" for a in accs],
                       0.99, n_bootstrap=1000)
    assert linear["d_int90_interval"] == pytest.approx(expected["d_int90_interval"])
    assert linear["d_int90_method"] == summary["d_int90_method"] == "student_t"
    assert summary["d_int90_confidence"] == 0.95
    assert not linear["d_int90_at_min"] and not linear["d_int90_not_reached"]
    assert rff["d_int90"] == 10 and rff["d_int90_interpolated"] == 10
    assert rff["d_int90_at_min"] is True                              # 10 already reaches: ≤ d_min
    assert rff["points"][-1]["n"] == 1                                # the failed run is left out, and counted
    assert rff["counts"] == {"succeeded": 5, "failed": 1} and rff["D"] == 199_210
    assert rff["excluded"] == {"diverged": 0, "failed": 1, "cancelled": 0, "no_accuracy": 0}
    assert not rff["not_converged"] and rff["not_converged_run_ids"] == []   # no best_test_acc reported


def test_summary_counts_the_runs_left_out_and_flags_a_group_not_converged(client, sessions):
    body = create(client, grid={"d": [10, 20]}, seeds=[0, 1, 2], baseline=1.0)
    runs = {(r.config["d"], r.config["seed"]): r.id for r in runs_of(sessions, body["id"])}
    finish(sessions, runs[10, 0], SUCCEEDED, metrics={"test_acc": 0.80, "best_test_acc": 0.85})  # best came earlier
    finish(sessions, runs[10, 1], DIVERGED, error="loss nan")
    finish(sessions, runs[10, 2], CANCELLED)
    finish(sessions, runs[20, 0], SUCCEEDED, metrics={"test_acc": 0.95, "best_test_acc": 0.95})  # best is the last
    finish(sessions, runs[20, 1], FAILED, error="out of memory")
    finish(sessions, runs[20, 2], SUCCEEDED, metrics={"test_loss": 0.3})                          # no accuracy
    group, = client.get(f"/api/experiments/{body['id']}/summary").json()["groups"]
    assert [(p["d"], p["n"]) for p in group["points"]] == [(10, 1), (20, 1)]
    assert group["counts"] == {"succeeded": 3, "diverged": 1, "cancelled": 1, "failed": 1}
    assert group["excluded"] == {"diverged": 1, "failed": 1, "cancelled": 1, "no_accuracy": 1}
    assert group["not_converged"] is True and group["not_converged_run_ids"] == [runs[20, 0]]
    assert group["d_int90"] == 20 and group["d_int90_interval"] is None   # one seed per d: no spread to go on


def test_summary_flags_a_threshold_never_reached(client, sessions):
    body = create(client, grid={"d": [10, 20]}, seeds=[0], baseline=1.0)
    for run in runs_of(sessions, body["id"]):
        finish(sessions, run.id, SUCCEEDED, metrics={"test_acc": 0.5, "best_test_acc": 0.6})
    group, = client.get(f"/api/experiments/{body['id']}/summary").json()["groups"]
    assert group["d_int90"] is None and group["d_int90_not_reached"] is True and not group["d_int90_at_min"]
    assert group["not_converged"] is False


def test_summary_with_a_global_baseline(client, sessions):
    body, _ = sweep_with_results(client, sessions, baseline=1.0)
    summary = client.get(f"/api/experiments/{body['id']}/summary").json()
    assert summary["baseline"] == 1.0 and summary["threshold"] == pytest.approx(0.9)
    linear, rff = summary["groups"]
    assert linear["d_int90"] == 40 and rff["d_int90"] == 10
    assert linear["d_int90_interpolated"] == pytest.approx(20 * 2 ** ((0.9 - 0.82) / (0.96 - 0.82)))


# ---- contrast ------------------------------------------------------------------------------------

CONTRAST = {("linear", 10): [0.50, 0.55, 0.53], ("rff", 10): [0.60, 0.58, 0.66],
            ("linear", 20): [0.80, 0.82, 0.81], ("rff", 20): [0.81, 0.80, None]}


def test_contrast_per_d_equals_welch_holm_and_the_paired_differences_of_its_runs(client, sessions):
    from scipy import stats

    body = create(client, grid={"augmentation": ["linear", "rff"], "d": [10, 20]}, seeds=[0, 1, 2])
    for run in runs_of(sessions, body["id"]):
        accuracy = CONTRAST[(run.config["augmentation"], run.config["d"])][run.config["seed"]]
        if accuracy is None:
            finish(sessions, run.id, FAILED, error="diverged early")
        else:
            finish(sessions, run.id, SUCCEEDED, metrics={"test_acc": accuracy})
    response = client.get(f"/api/experiments/{body['id']}/contrast",
                          params={"field": "augmentation", "a": "rff", "b": "linear", "margin": 0.05})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["a"], result["b"], result["fields"]) == ("rff", "linear", [])
    (stratum,) = result["strata"]
    rows = {row["d"]: row for row in stratum["rows"]}
    p_values = []
    for d in (10, 20):
        a = [y for y in CONTRAST[("rff", d)] if y is not None]
        b = CONTRAST[("linear", d)]
        welch = stats.ttest_ind(a, b, equal_var=False)
        row = rows[d]
        assert (row["n_a"], row["n_b"]) == (len(a), 3) and row["delta"] == pytest.approx(np.mean(a) - np.mean(b))
        interval = welch.confidence_interval(0.95)
        assert row["ci"] == pytest.approx([interval.low, interval.high])
        assert row["p_value"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
        p_values.append(row["p_value"])
        tost = max(stats.ttest_ind(np.add(a, 0.05), b, equal_var=False, alternative="greater").pvalue,
                   stats.ttest_ind(np.subtract(a, 0.05), b, equal_var=False, alternative="less").pvalue)
        assert row["p_equivalence"] == pytest.approx(tost) and row["equivalent"] == (tost < 0.05)
        differences = np.subtract(a, b[:len(a)])       # the seeds both ran: 0, 1 (and 2 at d = 10)
        assert row["paired"]["pairs"] == len(a) and row["paired"]["delta"] == pytest.approx(differences.mean())
    low, high = sorted(p_values)
    assert sorted(row["p_adjusted"] for row in rows.values()) == pytest.approx(sorted([2 * low, max(2 * low, high)]))

    exported = client.get(f"/api/experiments/{body['id']}/contrast",
                          params={"field": "augmentation", "a": "rff", "b": "linear", "margin": 0.05, "format": "csv"})
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert [int(line["d"]) for line in table] == [10, 20]
    for line in table:
        row = rows[int(line["d"])]
        assert float(line["delta"]) == pytest.approx(row["delta"])
        assert float(line["ci_low"]) == pytest.approx(row["ci"][0])
        assert float(line["p_adjusted"]) == pytest.approx(row["p_adjusted"])
        assert line["equivalent"] == str(row["equivalent"])


def test_a_contrast_of_what_the_experiment_does_not_sweep_names_what_to_fix(client, sessions):
    body = create(client, grid={"augmentation": ["linear", "rff"], "d": [10]}, seeds=[0])
    url = f"/api/experiments/{body['id']}/contrast"
    for params, field in (({"field": "lr", "a": "1", "b": "2"}, "field"),
                          ({"field": "augmentation", "a": "power", "b": "linear"}, "a"),
                          ({"field": "augmentation", "a": "rff", "b": "rff"}, "b"),
                          ({"field": "augmentation", "a": "rff", "b": "linear", "metric": "loss"}, "metric")):
        response = client.get(url, params=params)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["query", field]
    assert client.get("/api/experiments/424242/contrast", params={"field": "d", "a": "1", "b": "2"}).status_code == 404


# ---- export --------------------------------------------------------------------------------------


def test_export_csv_and_json(client, sessions):
    body, runs = sweep_with_results(client, sessions, baseline=False)
    tagged = client.patch(f"/api/runs/{body['run_ids'][0]}", json={"tags": ["seed-check", "Baseline"],
                                                                   "notes": "=1+1 is text, not a formula"})
    assert tagged.status_code == 200, tagged.text
    response = client.get(f"/api/experiments/{body['id']}/export", params={"format": "csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == f'attachment; filename="experiment-{body["id"]}.csv"'
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert len(table) == 12
    row = next(r for r in table if int(r["run_id"]) == body["run_ids"][0])
    run = runs[body["run_ids"][0]]
    assert row["config.augmentation"] == run.config["augmentation"] and int(row["config.d"]) == run.config["d"]
    assert row["config.fc_widths"] == "[200, 200]" and row["status"] == "succeeded"
    assert json.loads(row["tags"]) == ["Baseline", "seed-check"] and row["notes"] == "'=1+1 is text, not a formula"
    assert float(row["final.test_acc"]) == ACCURACY[(run.config["augmentation"], run.config["d"])][run.config["seed"]]
    failed = next(r for r in table if r["status"] == "failed")
    assert failed["final.test_acc"] == "" and failed["error"] == "diverged early"

    as_json = client.get(f"/api/experiments/{body['id']}/export", params={"format": "json"})
    assert as_json.headers["content-disposition"].startswith("attachment")
    data = as_json.json()
    assert len(data["rows"]) == 12 and "config.lr" in data["columns"] and "final.test_loss" in data["columns"]
    assert data["rows"][0]["config.fc_widths"] == [200, 200]
    first = next(r for r in data["rows"] if r["run_id"] == body["run_ids"][0])
    assert first["tags"] == ["Baseline", "seed-check"] and first["notes"] == "=1+1 is text, not a formula"
    assert all(r["tags"] == [] for r in data["rows"] if r is not first)
    assert client.get(f"/api/experiments/{body['id']}/export", params={"format": "xml"}).status_code == 422
