"""Hostile input: every request below is answered 4xx (never 500) with the offending field or limit
named, and changes nothing stored. Runs on SQLite and Postgres (the `client` fixture of conftest).

The cases cover the bounds of the run config (huge, negative, zero, non-finite and wrongly typed
numbers; over-long strings; unknown fields; the training-memory budget), p_init from_run:<id>
checked at submission, experiments (huge and deep grids, bad seeds), the lists' sorts and
filters, ids, and the metrics route's zoom and downsampling limits. Stored numbers out of any
bound (from before the bounds) must not make a sort or a filter fail either.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from backend.domain import lifecycle, points
from backend.domain.models import Base, RunArtifact
from idlab.config import RunConfig
from tests.lab.test_api_runs import SMALL, finish

SOURCE, QUEUED = "{source}", "{queued}"
BIG = 10**30


def runs(body: dict, *expect: str, status: int = 422) -> dict:
    return {"method": "POST", "url": "/api/runs", "json": {**SMALL, **body}, "status": status, "expect": expect}


def experiment(body: dict, *expect: str, dry_run: bool = False, status: int = 422) -> dict:
    request = {"name": "hostile", "base": {**SMALL}, **body}
    return {"method": "POST", "url": "/api/experiments", "json": request, "status": status, "expect": expect,
            "params": {"dry_run": "true"} if dry_run else None}


def get(url: str, params: dict | None = None, *expect: str, status: int = 422) -> dict:
    return {"method": "GET", "url": url, "params": params, "status": status, "expect": expect}


DEEP = json.loads("[" * 200 + "]" * 200)

CASES: dict[str, dict] = {
    # ---- run config: numbers ------------------------------------------------------------------
    "d huge": runs({"d": BIG}, "d", "less than or equal"),
    "d zero": runs({"d": 0}, "d", "greater than 0"),
    "d negative": runs({"d": -5}, "d"),
    "d NaN as string": runs({"d": "NaN"}, "d"),
    "d word": runs({"d": "seven hundred"}, "d"),
    "d float": runs({"d": 750.5}, "d"),
    "lr Infinity as string": runs({"lr": "Infinity"}, "lr", "finite"),
    "lr NaN as string": runs({"lr": "NaN"}, "lr", "finite"),
    "lr negative": runs({"lr": -1}, "lr"),
    "p_scale huge": runs({"p_scale": 1e300}, "p_scale", "less than or equal"),
    "p_scale inf as string": runs({"p_scale": "inf"}, "p_scale", "finite"),
    "theta_d_std huge": runs({"theta_d_std": 1e10}, "theta_d_std", "less than or equal"),
    "rff_scale zero": runs({"rff_scale": 0}, "rff_scale", "greater than 0"),
    "rff_amplitude huge": runs({"rff_amplitude": 1e7}, "rff_amplitude", "less than or equal"),
    "weight_decay huge": runs({"weight_decay": 1e6}, "weight_decay", "less than or equal"),
    "weight_decay negative": runs({"weight_decay": -1}, "weight_decay"),
    "power_coefs huge": runs({"power_coefs": [1e300, 1.0]}, "power_coefs", "between"),
    "power_coefs NaN as string": runs({"power_coefs": ["nan", 0.1]}, "power_coefs"),
    "power_orders huge": runs({"power_orders": [2, BIG]}, "power_orders"),
    "train_size 3e9": runs({"train_size": 3_000_000_000}, "train_size", "less than or equal"),
    "train_size over the split": runs({"train_size": 6_001}, "train_size", "6,000 training examples"),
    "test_size 1e19": runs({"test_size": 10**19}, "test_size"),
    "test_size over the split": runs({"test_size": 1_001}, "test_size", "1,000 test examples"),
    "early_stopping_patience huge": runs({"early_stopping_patience": 10**12}, "early_stopping_patience"),
    "epochs huge": runs({"epochs": 10**9}, "epochs", "less than or equal"),
    "batch_size zero": runs({"batch_size": 0}, "batch_size"),
    "batch_size over memory": runs({"model": "lenet", "dataset": "cifar10", "batch_size": 65_536},
                                   "batch_size", "IDLAB_MEMORY_BUDGET_MB"),
    "direct training over memory": runs({"method": "direct", "fc_widths": [30_000, 30_000]},
                                        "fc_widths", "16 bytes", "IDLAB_MEMORY_BUDGET_MB"),
    "fc_widths huge": runs({"fc_widths": [BIG]}, "fc_widths"),
    "fc_widths too many": runs({"fc_widths": [10] * 1000}, "fc_widths"),
    "fc_widths a string": runs({"fc_widths": "200"}, "fc_widths"),
    "seed negative": runs({"seed": -1}, "seed"),
    "seed 2^40": runs({"seed": 2**40}, "seed"),
    "rff_features huge": runs({"rff_features": 10**12}, "rff_features"),
    "adam_betas at 1": runs({"adam_betas": [1, 1]}, "adam_betas"),
    "momentum 1": runs({"momentum": 1.0, "optimizer": "sgd"}, "momentum"),
    "lr_decay zero": runs({"lr_decay": 0}, "lr_decay"),
    "max_lr_reductions huge": runs({"max_lr_reductions": BIG}, "max_lr_reductions"),
    # ---- run config: strings, types, shapes ------------------------------------------------------
    "unknown field": runs({"evil": 1}, "evil", "Extra inputs"),
    "device injection": runs({"device": "cuda:0; rm -rf /"}, "device"),
    "dataset overlong": runs({"dataset": "x" * 10_000}, "dataset"),
    "dataset a path": runs({"dataset": "../../etc/passwd"}, "dataset"),
    "body a list": {"method": "POST", "url": "/api/runs", "json": [1, 2, 3], "status": 422, "expect": ("body",)},
    "body deeply nested": {"method": "POST", "url": "/api/runs", "json": DEEP, "status": 422, "expect": ("body",)},
    "body not JSON": {"method": "POST", "url": "/api/runs", "content": b"{d: 1", "status": 422, "expect": ("body",),
                      "headers": {"content-type": "application/json"}},
    # ---- p_init from_run:<id> -------------------------------------------------------------------
    "from_run missing": runs({"projection": "dense", "p_init": "from_run:987654"}, "p_init", "does not exist"),
    "from_run not an id": runs({"projection": "dense", "p_init": "from_run:abc"}, "p_init", "not a run id"),
    "from_run huge id": runs({"projection": "dense", "p_init": "from_run:" + "9" * 40}, "p_init", "not a run id"),
    "from_run without statistics": runs({"projection": "dense", "p_init": f"from_run:{QUEUED}"}, "p_init",
                                        "no stored statistics"),
    "experiment from_run missing": experiment({"base": {**SMALL, "projection": "dense",
                                                        "p_init": "from_run:987654"}},
                                              "base", "p_init", "does not exist"),
    "experiment from_run missing, dry run": experiment({"base": {**SMALL, "projection": "dense",
                                                                 "p_init": "from_run:987654"}},
                                                       "base", "p_init", dry_run=True),
    "experiment from_run in the grid": experiment({"base": {**SMALL, "projection": "dense"},
                                                   "grid": {"p_init": ["normal", f"from_run:{QUEUED}"]}},
                                                  "grid", "p_init", "no stored statistics", dry_run=True),
    # ---- experiments --------------------------------------------------------------------------
    "grid of a million": experiment({"grid": {"d": list(range(1, 1_000_001))}}, "grid", status=413),
    "grid too many runs": experiment({"grid": {"d": list(range(1, 41)),
                                                             "lr": [i / 1000 for i in range(1, 41)]}},
                                                 "grid", "limit of 1000"),
    "grid huge d": experiment({"grid": {"d": [10, BIG]}}, "grid", "d"),
    "grid unknown field": experiment({"grid": {"evil": [1, 2]}}, "grid", "evil"),
    "grid deep value": experiment({"grid": {"fc_widths": [[[[[1]]]]]}}, "grid", "fc_widths"),
    "grid not a list": experiment({"grid": {"d": 5}}, "grid"),
    "seeds negative": experiment({"seeds": [-1]}, "seeds"),
    "seeds huge": experiment({"seeds": [BIG]}, "seeds"),
    "baseline NaN as string": experiment({"baseline": "NaN"}, "baseline", "finite"),
    "grid lr inf": experiment({"grid": {"lr": [0.001, "inf"]}}, "grid", "lr", "finite", dry_run=True),
    "search tolerance NaN": experiment({"base": {k: v for k, v in SMALL.items() if k != "d"}, "baseline": 1.0,
                                        "search": {"tolerance": "nan"}}, "search", "tolerance", "finite"),
    "experiment name overlong": experiment({"name": "n" * 100_000}, "name"),
    "experiment unknown field": experiment({"evil": True}, "evil"),
    "experiment train_size 3e9": experiment({"base": {**SMALL, "train_size": 3_000_000_000}}, "base", "train_size"),
    # ---- lists: sorts, filters, paging -----------------------------------------------------------
    "sort unknown config field": get("/api/runs", {"sort": "config.nope"}, "sort"),
    "sort unknown metric": get("/api/runs", {"sort": "metrics.bogus"}, "sort"),
    "sort a list field": get("/api/runs", {"sort": "config.fc_widths"}, "sort"),
    "sort injection": get("/api/runs", {"sort": "id; DROP TABLE runs;--"}, "sort"),
    "sort overlong": get("/api/runs", {"sort": "x" * 1000}, "sort"),
    "limit huge": get("/api/runs", {"limit": str(BIG)}, "limit"),
    "offset negative": get("/api/runs", {"offset": -1}, "offset"),
    "filter huge number": get("/api/runs", {"config.d": str(BIG)}, "config.d"),
    "filter unknown field": get("/api/runs", {"config.evil": "1"}, "config.evil"),
    "filter NaN": get("/api/runs", {"config.lr": "nan"}, "config.lr"),
    "experiment_id word": get("/api/runs", {"experiment_id": "abc"}, "experiment_id"),
    "status unknown": get("/api/runs", {"status": "pwned"}, "status"),
    "experiments limit zero": get("/api/experiments", {"limit": 0}, "limit"),
    # ---- ids -----------------------------------------------------------------------------------
    "run id zero": get("/api/runs/0", None, "run_id"),
    "run id huge": get("/api/runs/" + "9" * 30, None, "run_id"),
    "run id word": get("/api/runs/abc", None, "run_id"),
    "run id unknown": get("/api/runs/424242", None, status=404),
    "experiment id negative": get("/api/experiments/-3", None, "experiment_id"),
    "distributions of nothing": get("/api/runs/424242/distributions", None, status=404),
    "cancel id zero": {"method": "POST", "url": "/api/runs/0/cancel", "status": 422, "expect": ("run_id",)},
    "retry id huge": {"method": "POST", "url": "/api/runs/" + "9" * 30 + "/retry", "status": 422,
                      "expect": ("run_id",)},
    "events negative id": get(f"/api/runs/{SOURCE}/events", {"last_event_id": -1}, "last_event_id"),
    # ---- deleting, archiving, idempotency keys --------------------------------------------------------
    "delete run id zero": {"method": "DELETE", "url": "/api/runs/0", "status": 422, "expect": ("run_id",)},
    "delete experiment id huge": {"method": "DELETE", "url": "/api/experiments/" + "9" * 30, "status": 422,
                                  "expect": ("experiment_id",)},
    "delete a queued run": {"method": "DELETE", "url": f"/api/runs/{QUEUED}", "status": 409, "expect": ()},
    "delete a missing experiment": {"method": "DELETE", "url": "/api/experiments/424242", "status": 404, "expect": ()},
    "archive not a boolean": {"method": "PATCH", "url": f"/api/runs/{SOURCE}", "json": {"archived": "yes"},
                              "status": 422, "expect": ("archived", "boolean")},
    "archive with a status": {"method": "PATCH", "url": f"/api/runs/{SOURCE}",
                              "json": {"archived": True, "status": "succeeded"}, "status": 422, "expect": ("status",)},
    "archive nothing": {"method": "PATCH", "url": "/api/experiments/424242", "json": {}, "status": 422,
                        "expect": ("archived",)},
    "archived filter unknown": get("/api/runs", {"archived": "maybe"}, "archived"),
    "experiments archived filter a number": get("/api/experiments", {"archived": "1"}, "archived"),
    "idempotency key overlong": {**runs({}, "Idempotency-Key", "200"), "headers": {"Idempotency-Key": "k" * 5000}},
    "idempotency key with spaces": {**experiment({}, "Idempotency-Key", "visible ASCII"),
                                    "headers": {"Idempotency-Key": "my key"}},
    # ---- metrics: zoom and downsampling ------------------------------------------------------------
    "x_min 1e21": get(f"/api/runs/{SOURCE}/metrics", {"x_min": "1e21"}, "x_min", "less than or equal"),
    "x_max -1e21": get(f"/api/runs/{SOURCE}/metrics", {"x_max": "-1e21"}, "x_max", "greater than or equal"),
    "x_min 6e20 with lttb": get(f"/api/runs/{SOURCE}/metrics", {"x_min": "6e20", "method": "lttb"}, "x_min"),
    "x_min NaN": get(f"/api/runs/{SOURCE}/metrics", {"x_min": "nan"}, "x_min"),
    "x_max inf": get(f"/api/runs/{SOURCE}/metrics", {"x_max": "inf"}, "x_max"),
    "x_min above x_max": get(f"/api/runs/{SOURCE}/metrics", {"x_min": 10, "x_max": 1}, "x_min", "exceed"),
    "max_points huge": get(f"/api/runs/{SOURCE}/metrics", {"max_points": str(BIG)}, "max_points"),
    "max_points lttb": get(f"/api/runs/{SOURCE}/metrics", {"max_points": 100_000, "method": "lttb"},
                           "max_points", "5000"),
    "method unknown": get(f"/api/runs/{SOURCE}/metrics", {"method": "evil"}, "method"),
    "keys a path": get(f"/api/runs/{SOURCE}/metrics", {"keys": "../../etc/passwd"}, "keys"),
    "keys too many": get(f"/api/runs/{SOURCE}/metrics", {"keys": ",".join(f"k{i}" for i in range(30))}, "keys"),
}


def stored(sessions) -> dict[str, int]:
    """The number of rows of every table."""
    with sessions() as session:
        return {table.name: session.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables}


def seed(client, sessions) -> dict[str, str]:
    """A succeeded run with points and P statistics, and a queued run (no statistics yet)."""
    source = client.post("/api/runs", json={**SMALL, "projection": "dense"}).json()["id"]
    queued = client.post("/api/runs", json=SMALL).json()["id"]
    finish(sessions, source)
    with sessions() as session:
        points.write_points(session, source, [("train_loss", step, 0, 1.0 / (step + 1)) for step in range(500)])
        block = {"mean": 0.0, "std": 0.05}
        session.add(RunArtifact(run_id=source, name="statistics", data={"P": {"linear": {"initial": block}}}))
        session.commit()
    return {SOURCE: str(source), QUEUED: str(queued)}


def filled(value, ids: dict[str, str]):
    if isinstance(value, str):
        for placeholder, run_id in ids.items():
            value = value.replace(placeholder, run_id)
        return value
    if isinstance(value, dict):
        return {k: filled(v, ids) for k, v in value.items()}
    if isinstance(value, list) and len(value) < 100:
        return [filled(v, ids) for v in value]
    return value


def test_the_suite_is_large_enough():
    assert len(CASES) >= 40


def test_no_hostile_request_is_a_500_or_stores_anything(client, sessions):
    ids = seed(client, sessions)
    failures = []
    for name, case in CASES.items():
        before = stored(sessions)
        response = client.request(case["method"], filled(case["url"], ids), params=filled(case.get("params"), ids),
                                  json=filled(case.get("json"), ids), content=case.get("content"),
                                  headers=case.get("headers"))
        after = stored(sessions)
        text = response.text
        if response.status_code != case["status"]:
            failures.append(f"{name}: {response.status_code} (wanted {case['status']}): {text[:300]}")
        elif case["status"] == 422:
            body = response.json()
            located = json.dumps([[str(p) for p in e["loc"]] + [e["msg"]] for e in body["detail"]])
            missing = [word for word in case["expect"] if word not in located]
            if missing:
                failures.append(f"{name}: the 422 does not name {missing}: {located[:400]}")
        if after != before:
            failures.append(f"{name}: stored rows changed {before} → {after}")
    assert not failures, "\n".join(failures)


def test_a_valid_from_run_is_accepted_at_submission(client, sessions):
    """The counterpart of the refusals: a run with stored P statistics may be sampled from."""
    ids = seed(client, sessions)
    response = client.post("/api/runs", json={**SMALL, "projection": "dense", "p_init": f"from_run:{ids[SOURCE]}"})
    assert response.status_code == 201, response.text
    dry = client.post("/api/experiments", params={"dry_run": "true"}, json={
        "name": "ok", "base": {**SMALL, "projection": "dense"},
        "grid": {"p_init": ["normal", f"from_run:{ids[SOURCE]}"]}})
    assert dry.status_code == 200, dry.text


NUMERIC_FIELDS = [name for name, info in RunConfig.model_fields.items()
                  if info.annotation in (int, float, int | None, float | None)]


def test_sorts_survive_any_stored_number(client, sessions):
    """Configs stored before the bounds (a train_size of 3e9, a p_scale of 1e300, …) and extreme final
    metrics sort on both databases instead of overflowing an INTEGER or REAL cast."""
    extreme = {"train_size": 3_000_000_000, "test_size": 10**19, "d": 2**62, "seed": 2**40, "p_scale": 1e300,
               "lr": 1e-300, "epochs": 10**15, "early_stopping_patience": 10**25, "rff_features": 10**12}
    with sessions() as session:
        normal, odd = lifecycle.new_run(RunConfig(**SMALL)), lifecycle.new_run(RunConfig(**SMALL))
        odd.config = {**odd.config, **extreme}
        odd.final_metrics = {"test_acc": 1e300, "train_loss": 10**20}
        session.add_all([normal, odd])
        session.commit()
        odd_id = odd.id
    assert set(extreme) <= set(NUMERIC_FIELDS)
    for field in ("train_size", "d", "seed", "epochs"):
        response = client.get("/api/runs", params={f"config.{field}": 50})
        assert response.status_code == 200, (field, response.text)
    assert [r["id"] for r in client.get("/api/runs", params={"config.d": 50}).json()["items"]] == [normal.id]
    for name in [*(f"config.{f}" for f in NUMERIC_FIELDS), "metrics.test_acc", "metrics.train_loss"]:
        for sort in (name, f"-{name}"):
            response = client.get("/api/runs", params={"sort": sort})
            assert response.status_code == 200, (sort, response.text)
            field = name.removeprefix("config.")
            largest = field in extreme and field != "lr" or name.startswith("metrics.")
            if (sort.startswith("-") and largest) or (sort == "config.lr"):    # lr: the smallest
                assert response.json()["items"][0]["id"] == odd_id, sort


@pytest.mark.parametrize("x_max", ["1e15", "9007199254740992"])
def test_zoom_bounds_within_the_limit_are_served(client, sessions, x_max):
    ids = seed(client, sessions)
    for method in ("minmax", "lttb"):
        response = client.get(f"/api/runs/{ids[SOURCE]}/metrics",
                              params={"x_min": "-1e15", "x_max": x_max, "method": method, "max_points": 50})
        assert response.status_code == 200, response.text
        series = response.json()["series"]["train_loss"]
        assert series["total"] == 500 and len(series["steps"]) <= 50
