"""Comparing runs from any experiments, in Chromium against a real lab: three runs of two experiments are
ticked in the runs table (the ticks survive a filter) and compared; the comparison's URL names them and,
loaded afresh in a new browser context, shows the same page: one curve per run, the config fields that
differ highlighted (and only those), the final metrics of each run with the best marked, one P histogram
per run on a shared x range. A run that does not exist is named in a note, never a blank page."""

from __future__ import annotations

import json

import pytest

from tests.ui.conftest import VIEWPORT
from tests.ui.test_browser import FINISHED, LONG, TINY, open_app, shot

QUICK = dict(TINY, d=8, epochs=1)
MISSING_RUN = 999_999


@pytest.fixture(scope="module")
def compared(lab) -> list[dict]:
    """Three succeeded runs: d = 4 and 8 of one experiment, d = 8 of another whose lr differs."""
    sweep = lab.post("/api/experiments", {"name": "compare: d sweep", "base": QUICK, "grid": {"d": [4, 8]},
                                          "seeds": [0]})
    faster = lab.post("/api/experiments", {"name": "compare: larger lr", "base": dict(QUICK, lr=0.01),
                                           "grid": {"d": [8]}, "seeds": [0]})
    ids = sweep["run_ids"] + faster["run_ids"]
    runs = lab.wait(lambda: (runs := [lab.get(f"/api/runs/{i}") for i in ids])
                    and all(r["status"] in FINISHED for r in runs) and runs, 240, "the compared runs to finish")
    assert [r["status"] for r in runs] == ["succeeded"] * 3, [r.get("error") for r in runs]
    return sorted(runs, key=lambda run: run["id"])                           # the order the page shows them in


def differing(runs: list[dict]) -> set[str]:
    fields = {field for run in runs for field in run["config"]}
    return {f for f in fields if len({json.dumps(run["config"].get(f)) for run in runs}) > 1}


def tick(page, run_id: int) -> None:
    page.locator(f"tr[data-run-id='{run_id}'] td[data-col=select] input").check()


def assert_curves(page, runs) -> None:
    page.wait_for_selector("[data-section=compare-curves][data-loaded=true]")
    assert page.input_value("[data-control=metric]") == "test_acc"
    traces = page.evaluate("document.querySelector('[data-chart=compare-curves]').data"
                           ".map((t) => ({ name: t.name, points: t.x.length }))")
    assert len(traces) == 3
    for trace, run in zip(traces, runs, strict=True):
        assert trace["name"].startswith(f"#{run['id']} · exp #{run['experiment_id']} compare:")
        assert f"d={run['config']['d']}" in trace["name"] and f"lr={run['config']['lr']}" in trace["name"]
        assert trace["points"] >= 1, "one test accuracy per epoch"


def assert_config_differences(page, runs) -> None:
    expected = differing(runs)
    assert expected == {"d", "lr"}, "the fixture's runs differ in d and in their experiment's lr"
    table = "[data-table=config]"
    page.wait_for_selector(f"{table} tbody tr", state="attached")
    assert page.locator(f"{table} thead th[data-run-id]").count() == 3
    visible = page.locator(f"{table} tbody tr:visible")
    assert sorted(visible.evaluate_all("(rows) => rows.map((r) => r.dataset.field)")) == sorted(expected)
    page.locator("[data-toggle=only-differences]").uncheck()          # every field, the differing ones marked
    rows = page.locator(f"{table} tbody tr").evaluate_all(
        "(rows) => rows.filter((r) => r.offsetParent).map((r) => [r.dataset.field, r.classList.contains('differs')])")
    assert len(rows) > 20 and {"dataset", "epochs", "seed", "projection"} <= {field for field, _ in rows}
    assert {field for field, marked in rows if marked} == expected
    lr_cells = page.locator(f"{table} tr[data-field=lr] td").all_inner_texts()
    assert lr_cells == [str(run["config"]["lr"]) for run in runs]
    page.locator("[data-toggle=only-differences]").check()


def assert_final_metrics(page, runs) -> None:
    table = "[data-table=metrics]"
    assert page.locator(f"{table} thead th[data-run-id]").count() == 3
    cells = page.locator(f"{table} tr[data-metric=test_acc] td")
    assert cells.count() == 3
    for cell, run in zip(cells.all_inner_texts(), runs, strict=True):     # percent with 2 decimals
        assert cell.endswith("%") and abs(float(cell[:-1]) - 100 * run["final_metrics"]["test_acc"]) <= 0.0051
    accuracies = [run["final_metrics"]["test_acc"] for run in runs]
    best = {str(run["id"]) for run in runs if run["final_metrics"]["test_acc"] == max(accuracies)}
    marked = set(page.locator(f"{table} tr[data-metric=test_acc] td.best").evaluate_all(
        "(cells) => cells.map((c) => c.dataset.runId)"))
    assert marked == (set() if len(set(accuracies)) == 1 else best)
    assert page.locator(f"{table} tr[data-metric=d] td.best").count() == 0, "no best d: it is a choice"
    assert page.locator(f"{table} tr[data-metric=d] td").all_inner_texts() == [str(r["config"]["d"]) for r in runs]
    for metric in ("status", "train_acc", "test_loss", "D", "model_bytes", "duration"):
        assert page.locator(f"{table} tr[data-metric={metric}] td").count() == 3, metric


def assert_distributions(page, lab, runs) -> None:
    page.wait_for_selector("[data-section=compare-distributions][data-loaded=true]")
    panels = page.locator("[data-section=compare-distributions] .compare-dist[data-state=drawn]")
    assert panels.evaluate_all("(cells) => cells.map((c) => Number(c.dataset.runId))") == [r["id"] for r in runs]
    kind, block = page.input_value("[data-control=block]").split(":")
    assert (kind, block) == ("P", "linear")
    edges = [lab.get(f"/api/runs/{run['id']}/distributions")[kind][block]["edges"] for run in runs]
    shared = [min(e[0] for e in edges), max(e[-1] for e in edges)]
    ranges = panels.evaluate_all("(cells) => cells.map((c) => c.querySelector('.js-plotly-plot').layout.xaxis.range)")
    assert ranges == [shared] * 3, "one x range, spanning every run's histogram"


def assert_comparison(page, lab, runs) -> None:
    assert_curves(page, runs)
    assert_config_differences(page, runs)
    assert_final_metrics(page, runs)
    assert_distributions(page, lab, runs)


def test_compare_runs_ticked_in_the_runs_table(page, browser, lab, recorder, compared, screenshots):
    ids = [run["id"] for run in compared]
    open_app(page, lab, "/runs")
    page.locator(f"tr[data-run-id='{ids[0]}']").wait_for()
    compare = page.locator("[data-action=compare]")
    tick(page, ids[0])
    assert compare.is_disabled() and "2 or more" in page.inner_text("[data-selection=message]")
    page.locator(".status-toggle button[data-status=succeeded]").click()     # a filter keeps the ticks
    page.wait_for_function("() => location.hash.includes('status=succeeded')")
    for run_id in ids[1:]:
        tick(page, run_id)
    assert page.inner_text("[data-selection=count]") == "3 ticked" and compare.inner_text() == "Compare (3)"
    assert page.locator(f"tr[data-run-id='{ids[0]}'] td[data-col=select] input").is_checked()
    shot(page, "runs-ticked-to-compare")
    compare.click()
    url = f"{lab.url}/#/compare?runs={','.join(map(str, sorted(ids)))}"
    page.wait_for_function("(url) => location.href === url", arg=url)
    assert_comparison(page, lab, compared)
    shot(page, "compare-runs")

    context = browser.new_context(viewport=VIEWPORT)                         # the URL alone, in a new browser
    recorder.watch(context)
    fresh = context.new_page()
    fresh.on("pageerror", lambda error: recorder.errors.append(str(error)))
    fresh.goto(url)
    assert_comparison(fresh, lab, compared)
    context.close()


def test_runs_that_do_not_exist_are_named(page, lab, compared):
    ids = [run["id"] for run in compared[:2]]
    open_app(page, lab, f"/compare?runs={ids[0]},{MISSING_RUN},{ids[1]}")
    note = page.locator("[data-note=missing]")
    note.wait_for()
    assert f"#{MISSING_RUN}" in note.inner_text() and "does not exist" in note.inner_text()
    page.wait_for_selector("[data-section=compare-curves][data-loaded=true]")
    assert page.evaluate("document.querySelector('[data-chart=compare-curves]').data.length") == 2
    assert page.locator("[data-table=config] thead th[data-run-id]").count() == 2

    open_app(page, lab, f"/compare?runs={MISSING_RUN}")
    page.locator("[data-note=empty]:visible").wait_for()                    # not a blank page
    assert f"#{MISSING_RUN}" in page.locator("[data-note=missing]").inner_text()

    many = [*ids, *range(MISSING_RUN - 12, MISSING_RUN)]
    open_app(page, lab, f"/compare?runs={','.join(map(str, many))}")
    assert "first 12 of the 14 runs" in page.locator("[data-note=capped]").inner_text()
    page.wait_for_selector("[data-section=compare-curves][data-loaded=true]")
    assert page.evaluate("document.querySelector('[data-chart=compare-curves]').data.length") == 2


def test_compare_from_an_experiments_runs_table(page, lab, compared):
    """The experiment page ticks one run per d for its overlay; the same ticks open a comparison."""
    sweep = [run for run in compared if run["experiment_id"] == compared[0]["experiment_id"]]
    open_app(page, lab, f"/experiments/{sweep[0]['experiment_id']}")
    compare = page.locator("[data-action=compare]")
    page.wait_for_function("() => document.querySelector('[data-action=compare]')?.textContent === 'Compare (2)'")
    page.locator(f"tr[data-run-id='{sweep[0]['id']}'] td[data-col=select] input").uncheck()
    assert compare.is_disabled() and compare.inner_text() == "Compare (1)"
    page.locator("[data-action=select-page]").click()
    assert compare.inner_text() == "Compare (2)"
    compare.click()
    ids = ",".join(str(run["id"]) for run in sweep)
    page.wait_for_function("(ids) => location.hash === `#/compare?runs=${ids}`", arg=ids)
    page.wait_for_selector("[data-section=compare-curves][data-loaded=true]")
    assert page.evaluate("document.querySelector('[data-chart=compare-curves]').data.length") == 2


def test_a_running_run_is_badged_and_re_read_until_it_ends(page, lab, compared):
    running = lab.post("/api/runs", LONG)
    try:
        lab.wait(lambda: lab.get(f"/api/runs/{running['id']}")["status"] == "running", 180, "the long run to start")
        open_app(page, lab, f"/compare?runs={compared[0]['id']},{running['id']}")
        head = f"[data-table=metrics] thead th[data-run-id='{running['id']}'] .chip"
        page.wait_for_selector(f"{head}.st-running")
        page.wait_for_selector("[data-section=compare-distributions][data-loaded=true]")
        waiting = page.locator(f".compare-dist[data-run-id='{running['id']}'][data-state=missing]")
        assert "recorded when the run finishes" in waiting.inner_text()
    finally:
        lab.http.post(f"/api/runs/{running['id']}/cancel")
    page.wait_for_selector(f"{head}.st-cancelled", timeout=60_000)          # re-read, no reload
