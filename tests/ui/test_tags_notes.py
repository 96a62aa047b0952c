"""Tags and notes in the dashboard, in Chromium against a real lab: tags added (Enter, the Add button) and
removed (×) on the run and experiment pages, notes saved and still there after a reload (shown as text,
never as HTML), and the runs table and the experiments list filtered by tags, the filter in the URL."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.ui.test_browser import TINY, open_app, shot

QUICK = dict(TINY, d=8, epochs=1)
#: Notes that would draw an element and run a handler if they were ever read as HTML.
HOSTILE_NOTES = "## lr sweep\n<img src=x onerror=\"document.body.dataset.owned='yes'\"><b>not bold</b>\nline 3"


def hash_query(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(urlsplit(page.url).fragment).query)


def chips(page) -> list[str]:
    return page.locator("[data-panel=tags-notes] .tag-chip").evaluate_all("(nodes) => nodes.map((n) => n.dataset.tag)")


def test_tag_and_note_a_run_from_its_page(page, lab, screenshots):
    run = lab.post("/api/runs", QUICK)
    open_app(page, lab, f"/runs/{run['id']}")
    panel = page.locator("[data-panel=tags-notes]")
    tag_input = panel.locator("input[data-input=tag]")
    tag_input.fill("paper:fig-3")
    tag_input.press("Enter")
    panel.locator(".tag-chip[data-tag='paper:fig-3']").wait_for()
    tag_input.fill("Baseline")
    panel.locator("button[data-action=add-tag]").click()
    panel.locator(".tag-chip[data-tag=Baseline]").wait_for()
    assert lab.get(f"/api/runs/{run['id']}")["tags"] == ["Baseline", "paper:fig-3"]

    tag_input.fill("no<html>")                          # refused by the lab: said, and nothing added
    tag_input.press("Enter")
    page.locator(".toast.error", has_text="cannot be in a tag").wait_for()
    panel.locator(".tag-chip[data-tag=Baseline] button[data-action=remove-tag]").click()
    panel.locator(".tag-chip[data-tag=Baseline]").wait_for(state="detached")
    assert lab.get(f"/api/runs/{run['id']}")["tags"] == ["paper:fig-3"]

    save = panel.locator("button[data-action=save-notes]")
    assert save.is_disabled()                            # nothing to save yet
    panel.locator("textarea[data-input=notes]").fill(HOSTILE_NOTES)
    save.click()
    page.wait_for_function("() => document.querySelector('[data-action=save-notes]').disabled")
    assert lab.get(f"/api/runs/{run['id']}")["notes"] == HOSTILE_NOTES

    page.reload()
    panel.locator(".tag-chip[data-tag='paper:fig-3']").wait_for()
    assert chips(page) == ["paper:fig-3"]
    assert panel.locator("textarea[data-input=notes]").input_value() == HOSTILE_NOTES
    assert page.locator("[data-panel=tags-notes] img, [data-panel=tags-notes] b").count() == 0
    assert page.evaluate("() => document.body.dataset.owned") is None
    shot(page, "run-tags-notes")


def test_tag_and_note_an_experiment_from_its_page(page, lab, screenshots):
    created = lab.post("/api/experiments", {"name": "tagged sweep", "base": QUICK, "grid": {"d": [4]}, "seeds": [0]})
    open_app(page, lab, f"/experiments/{created['id']}")
    panel = page.locator("[data-panel=tags-notes]")
    for tag in ("ablation", "v2"):
        panel.locator("input[data-input=tag]").fill(tag)
        panel.locator("input[data-input=tag]").press("Enter")
        panel.locator(f".tag-chip[data-tag={tag}]").wait_for()
    panel.locator(".tag-chip[data-tag=v2] button[data-action=remove-tag]").click()
    panel.locator(".tag-chip[data-tag=v2]").wait_for(state="detached")
    panel.locator("textarea[data-input=notes]").fill("one seed: a smoke test")
    panel.locator("textarea[data-input=notes]").press("Control+Enter")      # saves, as the button does
    page.wait_for_function("() => document.querySelector('[data-action=save-notes]').disabled")
    page.reload()
    panel.locator(".tag-chip[data-tag=ablation]").wait_for()
    assert chips(page) == ["ablation"]
    assert panel.locator("textarea[data-input=notes]").input_value() == "one seed: a smoke test"
    shown = lab.get(f"/api/experiments/{created['id']}")
    assert (shown["tags"], shown["notes"]) == (["ablation"], "one seed: a smoke test")


def test_filter_the_runs_table_by_tag_from_the_url_the_input_and_a_click(page, lab, screenshots):
    plain, sweep_run, both = (lab.post("/api/runs", QUICK)["id"] for _ in range(3))
    for run, tags in ((sweep_run, ["ui-sweep"]), (both, ["ui-sweep", "ui-best"])):
        assert lab.http.patch(f"/api/runs/{run}", json={"tags": tags}).status_code == 200
    row = "tr[data-run-id='{}']".format

    open_app(page, lab, "/runs?tag=ui-sweep")            # a shared link: the filter comes with it
    page.locator(row(both)).wait_for()
    assert page.locator(row(sweep_run)).count() == 1 and page.locator(row(plain)).count() == 0
    page.locator(".filter-chip[data-tag-filter=ui-sweep]").wait_for()
    assert page.locator(f"{row(both)} td[data-col=tags] a.tag-link").all_inner_texts() == ["ui-best", "ui-sweep"]

    page.locator("input[data-filter=tag]").fill("UI-BEST")   # in any case
    page.locator("input[data-filter=tag]").press("Enter")
    page.locator(row(sweep_run)).wait_for(state="detached")
    assert page.locator(row(both)).count() == 1
    assert hash_query(page)["tag"] == ["ui-sweep", "UI-BEST"]
    shot(page, "runs-filtered-by-tag")

    page.locator(".filter-chip[data-tag-filter=ui-sweep] button").click()
    page.locator(".filter-chip[data-tag-filter=UI-BEST] button").click()
    page.locator(row(plain)).wait_for()
    assert "tag" not in hash_query(page)
    page.locator(f"{row(both)} td[data-col=tags] a.tag-link[data-tag=ui-best]").click()   # a tag in the table
    page.locator(row(plain)).wait_for(state="detached")
    assert hash_query(page)["tag"] == ["ui-best"] and page.locator(row(both)).count() == 1


def test_filter_the_experiments_by_tag(page, lab, screenshots):
    body = {"name": "ui tags", "base": QUICK, "grid": {"d": [4]}, "seeds": [0]}
    tagged, other = lab.post("/api/experiments", body)["id"], lab.post("/api/experiments", body)["id"]
    assert lab.http.post(f"/api/experiments/{tagged}/tags", json={"tag": "ui-exp"}).status_code == 200
    row = "tr[data-experiment-id='{}']".format
    open_app(page, lab, "/experiments")
    page.locator(row(other)).wait_for()
    page.locator("input[data-filter=tag]").fill("ui-exp")
    page.locator("input[data-filter=tag]").press("Enter")
    page.locator(row(other)).wait_for(state="detached")
    assert page.locator(f"{row(tagged)} td[data-col=tags]").inner_text() == "ui-exp"
    assert hash_query(page)["tag"] == ["ui-exp"]
    page.reload()                                            # the filter lives in the URL
    page.locator(row(tagged)).wait_for()
    page.locator(".filter-chip[data-tag-filter=ui-exp]").wait_for()
    assert page.locator(row(other)).count() == 0
