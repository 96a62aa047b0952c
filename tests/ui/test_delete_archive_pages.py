"""Deleting and archiving from the dashboard, in Chromium against a real lab: the run page's Delete asks
first (dismissed: nothing happens; accepted: the run is gone from the list), a running run cannot be
deleted, and an experiment is archived (hidden from the list until "show archived") and deleted with
its runs after a confirmation that names it and counts them."""

from __future__ import annotations

from tests.ui.test_browser import FINISHED, LONG, TINY, open_app, shot

QUICK = dict(TINY, d=8, epochs=1)


def finished(lab, path: str) -> dict:
    return lab.wait(lambda: (body := lab.get(path)) and (
        body.get("status") in FINISHED or all(r["status"] in FINISHED for r in body.get("runs", [{"status": ""}])))
        and body, 180, f"{path} to finish")


def test_delete_a_run_from_its_page(page, lab, screenshots):
    kept, run = lab.post("/api/runs", QUICK), lab.post("/api/runs", QUICK)
    finished(lab, f"/api/runs/{run['id']}")
    open_app(page, lab, f"/runs/{run['id']}")
    delete = page.locator("button[data-action=delete]")
    delete.wait_for()
    assert delete.is_enabled()
    messages = []

    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.dismiss()))
    delete.click()
    page.wait_for_timeout(300)
    assert messages and f"Delete run #{run['id']}" in messages[0]
    assert lab.http.get(f"/api/runs/{run['id']}").status_code == 200          # dismissed: kept

    page.once("dialog", lambda dialog: dialog.accept())
    delete.click()
    page.wait_for_url(f"{lab.url}/#/runs")
    page.locator(f"tr[data-run-id='{kept['id']}']").wait_for()               # the list is drawn
    assert page.locator(f"tr[data-run-id='{run['id']}']").count() == 0
    assert lab.http.get(f"/api/runs/{run['id']}").status_code == 404
    shot(page, "run-deleted")


def test_a_running_run_offers_no_delete(page, lab, screenshots):
    run = lab.post("/api/runs", LONG)
    lab.wait(lambda: lab.get(f"/api/runs/{run['id']}")["status"] == "running", 120, "the long run to start")
    open_app(page, lab, f"/runs/{run['id']}")
    delete = page.locator("button[data-action=delete]")
    delete.wait_for()
    assert delete.is_disabled() and "Cancel it first" in delete.get_attribute("title")
    lab.post(f"/api/runs/{run['id']}/cancel")
    finished(lab, f"/api/runs/{run['id']}")
    page.locator("button[data-action=delete]:not([disabled])").wait_for()     # cancelled: now deletable


def test_archive_then_delete_an_experiment(page, lab, screenshots):
    created = lab.post("/api/experiments", {"name": "to be deleted", "base": QUICK, "grid": {"d": [4, 8]},
                                            "seeds": [0]})
    finished(lab, f"/api/experiments/{created['id']}")
    row = f"tr[data-experiment-id='{created['id']}']"

    open_app(page, lab, f"/experiments/{created['id']}")
    page.locator("button[data-action=archive]", has_text="Archive").click()
    page.locator("button[data-action=archive]", has_text="Unarchive").wait_for()
    assert lab.get(f"/api/experiments/{created['id']}")["archived"] is True

    open_app(page, lab, "/experiments")
    page.locator("input[data-filter=archived]").wait_for()
    page.wait_for_timeout(500)
    assert page.locator(row).count() == 0                                     # hidden
    page.locator("input[data-filter=archived]").check()
    page.locator(row).wait_for()
    assert "archived" in page.locator(row).inner_text()
    shot(page, "experiments-show-archived")

    open_app(page, lab, f"/experiments/{created['id']}")
    messages = []
    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.accept()))
    page.locator("button[data-action=delete]").first.click()
    page.wait_for_url(f"{lab.url}/#/experiments")
    assert "Delete experiment 'to be deleted' and its 2 runs" in messages[0]
    assert lab.http.get(f"/api/experiments/{created['id']}").status_code == 404
    for run_id in created["run_ids"]:
        assert lab.http.get(f"/api/runs/{run_id}").status_code == 404
