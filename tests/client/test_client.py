"""idlab.client against a real `idlab serve` with an API token: runs, experiments, waiting with
progress, DataFrames that match the API's JSON, field-named errors (local and the lab's 422),
cancel and retry, and an import that loads no server or engine code."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import httpx
import pytest

from idlab.client import (
    FINISHED,
    Lab,
    LabAuthError,
    LabConflict,
    LabConnectionError,
    LabNotFound,
    LabTimeout,
    LabValidationError,
)
from tests.client.conftest import REPO, TOKEN
from tests.lab.lab_processes import LONG, TINY, wait_for

pytestmark = pytest.mark.timeout(300)

#: Short runs: an experiment of ten finishes in seconds on one worker thread.
QUICK = dict(TINY, epochs=1)


@pytest.fixture(scope="module")
def lab(served_lab):
    with Lab(served_lab.url, token=TOKEN, timeout=30) as client:
        yield client


def api(served_lab, path: str, **params) -> dict:
    """The API's own JSON, read without the client."""
    response = httpx.get(f"{served_lab.url}/api{path}", params=params, timeout=30)
    response.raise_for_status()
    return response.json()


# ---- what the client is made of -------------------------------------------------------------------


def test_importing_the_client_loads_no_server_or_engine_code(tmp_path):
    code = ("import sys, idlab.client; idlab.client.Lab('http://127.0.0.1:1').close(); "
            "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'fastapi', 'sqlalchemy', 'celery'}); "
            "assert not loaded, f'importing idlab.client loaded {loaded}'")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_client_names_the_api_statuses_and_export_columns():
    from backend.domain.analysis.export import RUN_COLUMNS as EXPORT_COLUMNS
    from backend.domain.models import FINISHED as API_FINISHED
    from idlab.client import RUN_COLUMNS

    assert FINISHED == API_FINISHED
    assert RUN_COLUMNS[:len(EXPORT_COLUMNS)] == EXPORT_COLUMNS


# ---- the token -----------------------------------------------------------------------------------


def test_a_lab_with_a_token_refuses_changes_without_it_and_accepts_them_with_it(served_lab, lab, monkeypatch):
    monkeypatch.delenv("IDLAB_API_TOKEN", raising=False)
    anonymous = Lab(served_lab.url)
    health = anonymous.health()                         # reads stay open
    assert health["status"] == "ok" and health["workers_alive"] >= 1, health
    with pytest.raises(LabAuthError) as refused:
        anonymous.submit_run(QUICK)
    assert refused.value.status_code == 401
    assert "API token" in str(refused.value) and "token=" in str(refused.value)
    with pytest.raises(LabAuthError, match="wrong API token"):
        Lab(served_lab.url, token="not-the-token").submit_run(QUICK)
    anonymous.close()

    run = lab.submit_run(QUICK)
    assert run["status"] == "queued" and run["config"]["d"] == QUICK["d"]
    assert lab.wait(run, timeout=120, quiet=True)["status"] == "succeeded"


# ---- runs ----------------------------------------------------------------------------------------


def test_submit_a_run_wait_for_it_and_read_its_metrics(served_lab, lab, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)     # no tqdm: the plain text progress
    run = lab.submit_run(QUICK, seed=3)
    assert run["config"]["seed"] == 3 and run["config"]["epochs"] == 1

    done = lab.wait(run, timeout=120)
    assert done["status"] == "succeeded", done
    assert 0 <= done["final_metrics"]["test_acc"] <= 1 and done["final_metrics"]["d"] == QUICK["d"]
    progress = capsys.readouterr().err
    assert f"run {run['id']}: 2/2 steps  succeeded" in progress, progress   # 256 examples / batch 128, one epoch

    metrics = lab.metrics(run)
    assert list(metrics.columns) == ["step", "key", "value", "epoch"]
    raw = api(served_lab, f"/runs/{run['id']}/metrics")
    assert set(metrics["key"]) == set(raw["series"]) >= {"train_loss", "train_acc", "test_acc", "test_loss"}
    for key, series in raw["series"].items():
        rows = metrics[metrics["key"] == key]
        assert list(rows["step"]) == series["steps"]
        assert list(rows["value"]) == series["values"]
        assert list(rows["epoch"]) == series["epochs"]
    assert metrics.attrs["total"] == {key: s["total"] for key, s in raw["series"].items()}
    test_acc = metrics[metrics["key"] == "test_acc"]
    assert test_acc["value"].iloc[-1] == pytest.approx(done["final_metrics"]["test_acc"])

    only = lab.metrics(run["id"], keys=["train_loss"])
    assert set(only["key"]) == {"train_loss"} and len(only) == raw["series"]["train_loss"]["total"]

    table = lab.runs(config={"seed": 3})
    assert list(table["run_id"]) == [run["id"]]
    row = table.iloc[0]
    assert row["status"] == "succeeded" and row["config.d"] == QUICK["d"] and row["config.dataset"] == "synthetic"
    assert row["final.test_acc"] == pytest.approx(done["final_metrics"]["test_acc"])
    assert str(table["finished_at"].dtype).startswith("datetime64")


def test_cancel_a_running_run_retry_it_and_cancel_it_again(lab):
    run = lab.submit_run(LONG, epochs=500)    # minutes of training: still running when the cancel comes
    wait_for(lambda: lab.run(run)["status"] == "running", 120, "the long run to start")
    with pytest.raises(LabTimeout, match=f"run {run['id']} is still running"):
        lab.wait(run, timeout=0.5, quiet=True)

    lab.cancel(run)
    cancelled = lab.wait(run, timeout=120, quiet=True)
    assert cancelled["status"] == "cancelled", cancelled
    with pytest.raises(LabConflict):
        lab.cancel(run)

    assert lab.retry(run)["status"] == "queued"
    lab.cancel(run)
    again = lab.wait(run, timeout=120, quiet=True)
    assert again["status"] == "cancelled" and again["attempt"] == 0   # a retry starts a fresh budget
    with pytest.raises(LabNotFound):
        lab.run(10**9)


# ---- experiments ---------------------------------------------------------------------------------


def test_an_experiment_from_preview_to_summary_and_export(served_lab, lab, capsys):
    request = dict(name="client sweep", base=QUICK, grid={"augmentation": ["linear", "rff"], "d": [10, 40]},
                   seeds=[0, 1], baseline=True)
    stored_before = len(lab.experiments())
    preview = lab.preview_experiment(**request)
    assert preview["run_count"] == 2 * 2 * 2 + 2 and preview["baseline_count"] == 2
    assert len(lab.experiments()) == stored_before                     # a dry run stores nothing

    created = lab.submit_experiment(**request)
    assert len(created["run_ids"]) == 10
    finished = lab.wait(created, timeout=240)
    assert {run["status"] for run in finished["runs"]} == {"succeeded"}, finished
    progress = capsys.readouterr().err
    assert f"experiment {created['id']}" in progress and "10/10" in progress, progress

    raw = api(served_lab, f"/experiments/{created['id']}/summary")
    summary = lab.summary(created)
    assert list(summary.columns) == ["augmentation", "d", "mean", "std", "n", "d_int90", "d_int90_interpolated",
                                     "d_int90_low", "d_int90_high", "d_int90_method", "d_int90_at_min",
                                     "d_int90_not_reached", "baseline", "threshold", "D", "excluded_diverged",
                                     "excluded_failed", "excluded_cancelled", "excluded_no_accuracy", "not_converged"]
    assert sorted(zip(summary["augmentation"], summary["d"], strict=True)) == [
        ("linear", 10), ("linear", 40), ("rff", 10), ("rff", 40)]
    assert list(summary["n"]) == [2, 2, 2, 2]
    for group in raw["groups"]:
        rows = summary[summary["augmentation"] == group["augmentation"]]
        assert list(rows["mean"]) == pytest.approx([p["mean"] for p in group["points"]])
        assert list(rows["std"]) == pytest.approx([p["std"] for p in group["points"]])
        assert _same(rows["d_int90"].iloc[0], group["d_int90"])
        low, high = group["d_int90_interval"] or (None, None)
        assert _same(rows["d_int90_low"].iloc[0], low) and _same(rows["d_int90_high"].iloc[0], high)
        assert set(rows["d_int90_method"]) == {"student_t"}
        assert set(rows["d_int90_at_min"]) == {group["d_int90_at_min"]}
        assert set(rows["not_converged"]) == {group["not_converged"]}
        assert list(rows["excluded_diverged"]) == [0, 0] and list(rows["excluded_failed"]) == [0, 0]
    baseline = raw["baseline"]
    assert baseline is not None and (summary["baseline"] == baseline).all()   # both baselines succeeded
    assert summary["threshold"].tolist() == pytest.approx([0.9 * baseline] * 4)

    export = lab.export(created)
    assert sorted(export["run_id"]) == sorted(created["run_ids"])
    assert (export["status"] == "succeeded").all() and sorted(export["role"]).count("baseline") == 2
    members = export[export["role"] == "member"]
    chosen = zip(members["config.augmentation"], members["config.d"], members["config.seed"], strict=True)
    assert sorted(chosen) == sorted(
        (a, d, s) for a in ("linear", "rff") for d in (10, 40) for s in (0, 1))
    listed = lab.runs(experiment_id=created["id"])
    assert dict(zip(listed["run_id"], listed["final.test_acc"], strict=True)) == pytest.approx(
        dict(zip(export["run_id"], export["final.test_acc"], strict=True)))

    contrast = lab.contrast(created, "augmentation", "rff", "linear", margin=0.05)
    raw_contrast = api(served_lab, f"/experiments/{created['id']}/contrast", field="augmentation", a="rff",
                       b="linear", margin=0.05)
    (stratum,) = raw_contrast["strata"]
    assert list(contrast["d"]) == [row["d"] for row in stratum["rows"]] == [10, 40]
    for (_, row), expected in zip(contrast.iterrows(), stratum["rows"], strict=True):
        assert row["delta"] == pytest.approx(expected["delta"]) and (row["n_a"], row["n_b"]) == (2, 2)
        assert _same(row["ci_low"], (expected["ci"] or [None])[0]) and _same(row["p_adjusted"], expected["p_adjusted"])
        assert row["paired_pairs"] == expected["paired"]["pairs"] == 2


def test_a_search_experiment_is_waited_for_until_no_group_is_searching(served_lab, lab):
    openapi = httpx.get(f"{served_lab.url}/openapi.json", timeout=30).json()
    schema = openapi["components"]["schemas"]["ExperimentCreate"]["properties"]
    if "search" not in schema:
        pytest.skip("this lab has no search experiments")
    base = {name: value for name, value in QUICK.items() if name != "d"}   # the search chooses d
    # A global baseline of 1.0: the threshold 0.9 is out of reach, so d doubles from 4 up to d_max 8 and stops.
    created = lab.submit_experiment("client search", base=base, seeds=[0], baseline=1.0,
                                    search={"d_start": 4, "d_max": 8, "max_rounds": 3})
    assert created["kind"] == "search" and len(created["run_ids"]) == 1       # round 1 only

    finished = lab.wait(created, timeout=240, quiet=True)
    assert all(run["status"] in FINISHED for run in finished["runs"])
    assert len(finished["runs"]) == 2, finished                               # round 2 was waited for too
    summary = lab.summary(created)
    assert list(summary["d"]) == [4, 8] and set(summary["search_status"]) == {"stopped"}
    assert list(summary["bracket_lo"]) == [8, 8]


def _same(value, expected) -> bool:
    if expected is None:
        return value is None or (isinstance(value, float) and math.isnan(value))
    return value == pytest.approx(expected)


# ---- errors that name the field ------------------------------------------------------------------


def test_a_bad_config_is_refused_before_sending_naming_the_field(lab):
    runs_before = len(lab.runs())
    with pytest.raises(LabValidationError) as bad_run:
        lab.submit_run(QUICK, d=0)
    assert bad_run.value.fields == ["d"] and bad_run.value.status_code is None
    assert "d: Input should be greater than 0 (got 0)" in str(bad_run.value)

    # An experiment is checked by the lab's own dry run (its grid expansion, its settings): nothing is stored.
    experiments_before = len(lab.experiments())
    with pytest.raises(LabValidationError) as bad_grid:
        lab.submit_experiment("bad sweep", base=QUICK, grid={"d": [10, 0], "projection": ["sparse", "fastfood"]})
    assert bad_grid.value.fields == ["grid.d[1]"] and bad_grid.value.status_code == 422
    assert "greater than 0" in str(bad_grid.value) and "at grid point d=0" in str(bad_grid.value)
    assert len(lab.experiments()) == experiments_before
    with pytest.raises(LabValidationError) as bad_base:
        lab.preview_experiment("bad base", base={**QUICK, "projection": "fastfood", "train_p": True}, grid={"d": [10]})
    assert bad_base.value.fields == ["base.train_p"] and "dense" in str(bad_base.value)
    assert len(lab.runs()) == runs_before


def test_the_labs_422_becomes_the_same_exception_naming_the_fields(lab):
    runs_before = len(lab.runs())
    with pytest.raises(LabValidationError) as skipped_check:
        lab.submit_run(QUICK, d=0, validate=False)
    assert skipped_check.value.status_code == 422 and skipped_check.value.fields == ["d"]
    assert "the lab refused the run config (422)" in str(skipped_check.value)

    # Only the lab knows these: a seed given twice, a grid value repeated.
    with pytest.raises(LabValidationError) as seeds:
        lab.submit_experiment("twice", base=QUICK, seeds=[0, 0])
    assert seeds.value.status_code == 422 and seeds.value.fields == ["seeds[1]"]
    assert "appears twice" in str(seeds.value)
    with pytest.raises(LabValidationError) as repeated:
        lab.preview_experiment("repeated", base=QUICK, grid={"d": [10, 10]})
    assert repeated.value.fields == ["grid.d[1]"] and "duplicate" in str(repeated.value)
    # Keywords beyond the known ones go to the lab as they are, and it judges them.
    with pytest.raises(LabValidationError) as unknown:
        lab.preview_experiment("extra", base=QUICK, no_such_option=1)
    assert unknown.value.fields == ["no_such_option"]
    assert len(lab.runs()) == runs_before


def test_wait_wants_what_the_lab_returned(lab):
    with pytest.raises(TypeError, match="wait_run"):
        lab.wait(3)


# ---- deleting, archiving, retrying a submission ----------------------------------------------------


def test_delete_a_run_only_once_it_has_stopped(lab):
    run = lab.submit_run(LONG, epochs=500)
    with pytest.raises(LabConflict, match="cancel it first"):
        lab.delete_run(run)                      # queued or running
    lab.cancel(run)
    assert lab.wait(run, timeout=120, quiet=True)["status"] == "cancelled"
    assert lab.delete_run(run) is None
    with pytest.raises(LabNotFound):
        lab.run(run)
    with pytest.raises(LabNotFound):
        lab.delete_run(run)


def test_archive_an_experiment_then_delete_it_with_its_runs(served_lab, lab):
    sweep = lab.submit_experiment("to archive", base=QUICK, grid={"d": [10, 20]}, seeds=[0])
    lab.wait(sweep, timeout=180, quiet=True)
    assert lab.archive(sweep)["archived"] is True
    assert sweep["id"] not in set(lab.experiments()["experiment_id"])
    shown = lab.experiments(archived="all").set_index("experiment_id")
    assert bool(shown.loc[sweep["id"], "archived"]) is True
    assert lab.runs(experiment_id=sweep["id"]).empty                 # its runs are hidden with it
    assert sorted(lab.runs(experiment_id=sweep["id"], archived=True)["run_id"]) == sorted(sweep["run_ids"])
    assert lab.unarchive(sweep)["archived"] is False
    assert len(lab.runs(experiment_id=sweep["id"])) == 2

    run = lab.run(sweep["run_ids"][0])
    assert lab.archive(run)["archived"] is True and lab.archive_run(run, archived=False)["archived"] is False
    with pytest.raises(TypeError, match="archive_run"):
        lab.archive(run["id"])
    with pytest.raises(ValueError, match="archived"):
        lab.runs(archived="maybe")

    lab.delete_experiment(sweep)
    with pytest.raises(LabNotFound):
        lab.experiment(sweep)
    assert api(served_lab, "/runs", experiment_id=sweep["id"], archived="all")["total"] == 0


class DropsFirstAnswers(httpx.BaseTransport):
    """Sends every request to the lab, but loses the first `drops` answers to POSTs on the way back
    (what a client sees when its request timed out after the lab had done the work)."""

    def __init__(self, drops: int) -> None:
        self.inner, self.drops, self.keys = httpx.HTTPTransport(), drops, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST":
            self.keys.append(request.headers.get("Idempotency-Key"))
            if self.drops:
                self.drops -= 1
                response.read()
                raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


def flaky(lab: Lab, drops: int) -> DropsFirstAnswers:
    transport = DropsFirstAnswers(drops)
    lab._http = httpx.Client(base_url=lab._http.base_url, headers=lab._http.headers, timeout=30, transport=transport)
    return transport


def test_a_submission_whose_answer_was_lost_is_sent_again_and_queued_once(served_lab):
    with Lab(served_lab.url, token=TOKEN) as lab:
        before = api(served_lab, "/runs", archived="all")["total"]
        transport = flaky(lab, drops=2)
        run = lab.submit_run(QUICK, seed=7)
        assert len(transport.keys) == 3 and len(set(transport.keys)) == 1 and transport.keys[0]
        assert api(served_lab, "/runs", archived="all")["total"] == before + 1       # one run, not three
        assert lab.run(run)["config"]["seed"] == 7

        # A dry run stores nothing: a lost answer is simply asked again, without a key.
        transport = flaky(lab, drops=1)
        assert lab.preview_experiment("lost answer", base=QUICK, grid={"d": [10, 20]}, seeds=[0])["run_count"] == 2
        assert transport.keys == [None, None]

        transport = flaky(lab, drops=1)
        sweep = lab.submit_experiment("lost answer", base=QUICK, grid={"d": [10, 20]}, seeds=[0], validate=False)
        assert len(set(transport.keys)) == 1 and len(transport.keys) == 2
        assert lab.experiment(sweep)["run_ids"] == sweep["run_ids"]
        assert api(served_lab, "/runs", archived="all")["total"] == before + 3

        lab.submit_run(QUICK)                    # each call has its own key
        lab.submit_run(QUICK)
        assert len(set(transport.keys)) == 3


def test_retries_give_up_and_say_so(served_lab):
    with Lab(served_lab.url, token=TOKEN, retries=1) as lab:
        flaky(lab, drops=5)
        with pytest.raises(LabConnectionError, match="sent 2 times with the same Idempotency-Key"):
            lab.submit_run(QUICK)
    with Lab(served_lab.url, token=TOKEN, retries=0) as lab:
        transport = flaky(lab, drops=1)
        with pytest.raises(LabConnectionError) as failed:
            lab.submit_run(QUICK)
        assert "Idempotency-Key" not in str(failed.value) and len(transport.keys) == 1


def test_an_idempotency_key_given_by_the_caller_survives_the_process(lab):
    key = f"notebook-cell-{os.getpid()}"
    first = lab.submit_run(QUICK, seed=11, idempotency_key=key)
    with Lab(lab.url, token=TOKEN) as other:           # e.g. the notebook restarted
        assert other.submit_run(QUICK, seed=11, idempotency_key=key)["id"] == first["id"]
        with pytest.raises(LabValidationError, match="different request"):
            other.submit_run(QUICK, seed=12, idempotency_key=key)
