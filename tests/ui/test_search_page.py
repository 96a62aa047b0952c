"""A search experiment in the browser: chosen in the new-experiment form (the d field gives way to the
search's parameters, a bad one is shown beside them), submitted, and followed on its experiment page —
its rounds with their d and mean accuracy, the bracket per group, and d_int90 with its interval.

Tiny runs on the synthetic data against a global baseline of 0.8 (threshold 0.72): the search starts
at d = 512, which falls short, doubles once and bisects once — three rounds of a few seconds each.
"""

from __future__ import annotations

import json
import re

from tests.ui.conftest import SCREENSHOTS

FIELDS = {"fc_widths": "16", "train_size": "256", "test_size": "128", "batch_size": "16", "epochs": "10",
          "lr": "0.01", "log_every": "5", "device": "cpu"}
SEARCH = {"d_start": "512", "tolerance": "0.5", "d_max": "4096", "max_rounds": "8"}


def shot(page, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def test_a_search_from_the_form_to_its_rounds_and_bracket(page, lab, screenshots):
    fill_the_search_form(page, lab)
    page.click("[data-action=submit]")
    page.wait_for_url(re.compile(r"#/experiments/\d+$"))
    experiment_id = int(page.url.rsplit("/", 1)[1])
    experiment = lab.get(f"/api/experiments/{experiment_id}")
    assert experiment["kind"] == "search" and experiment["search"] == {
        "d_start": 512, "tolerance": 0.5, "d_max": 4096, "max_rounds": 8}
    assert "d" not in experiment["base"] and experiment["grid"] == {}
    page.wait_for_selector("[data-section=search] [data-search-status]")

    def ended():
        group = lab.get(f"/api/experiments/{experiment_id}/summary")["groups"][0]
        return group if group["search"]["status"] != "searching" else None
    group = lab.wait(ended, 240, "the search to end", interval=1)
    assert group["search"]["status"] == "decided", group["search"]
    assert_the_page_shows_the_search(page, group)
    shot(page, "search-experiment")

    # Cloned into the form, it is a search again, with its parameters.
    page.click("a:has-text('Clone into form')")
    page.wait_for_selector("#f-d-mode")
    page.wait_for_function("() => document.querySelector('#f-d-mode').value === 'search'")
    assert {name: page.input_value(f"#f-search-{name}") for name in SEARCH} == SEARCH
    assert page.locator("[data-field=d]").is_hidden()


def fill_the_search_form(page, lab) -> None:
    """The new-experiment form set to a search: the d field gives way to its parameters, a d_max below
    d_start is refused beside them (and nothing is created), then the good parameters."""
    page.goto(f"{lab.url}/#/new")
    page.wait_for_selector("#f-d-mode")
    page.fill("#f-name", "ui: search")
    page.select_option("#f-dataset", "synthetic")
    page.select_option("#f-projection", "sparse")
    for name, value in FIELDS.items():
        page.fill(f"#f-{name}", value)
    page.select_option("#f-baseline", "global")
    page.fill("#f-baseline-value", "0.8")

    page.select_option("#f-d-mode", "search")
    assert page.locator("[data-field=d]").is_hidden(), "the search chooses d: its field is hidden"
    assert page.input_value("#f-search-d_max") == "20000", "defaults come from the API's schema"
    for name, value in SEARCH.items():
        page.fill(f"#f-search-{name}", value)
    page.wait_for_function("() => /runs at most/.test(document.querySelector('[data-section=preview]').textContent)")
    assert page.locator("[data-preview=runs]").inner_text().startswith("1 run")     # round 1: one group × one seed

    page.fill("#f-search-d_max", "100")                                             # below d_start
    page.click("[data-action=submit]")
    page.wait_for_function("() => document.querySelector('[data-field=search] .error').textContent.length > 0")
    assert "d_max" in page.locator("[data-field=search] .error").inner_text()
    assert lab.get("/api/experiments")["total"] == 0 or all(
        e["name"] != "ui: search" for e in lab.get("/api/experiments")["items"])
    page.fill("#f-search-d_max", SEARCH["d_max"])
    shot(page, "new-search-experiment")


def assert_the_page_shows_the_search(page, group: dict) -> None:
    """Every round with its d and mean accuracy, the bracket, d_int90 with its interval, and both charts."""
    search = group["search"]
    rounds = search["rounds"]
    page.wait_for_selector("[data-search-status=decided]", timeout=30_000)
    page.wait_for_function("() => document.querySelectorAll('[data-section=search] tr[data-round]').length === "
                           f"{len(rounds)}")
    cells = page.locator("[data-section=search] tr[data-round]")
    for i, r in enumerate(rounds):
        row = cells.nth(i)
        assert row.get_attribute("data-d") == str(r["d"])
        shown = float(re.search(r"([\d.]+)%", row.inner_text()).group(1))
        assert abs(shown - 100 * r["mean"]) <= 0.005 + 1e-9, (shown, r["mean"])
        assert ("reached" if r["reached"] else "short") in row.inner_text()
    assert json.loads(page.locator("[data-bracket]").get_attribute("data-bracket")) == search["bracket"]
    lo, hi = search["bracket"]
    assert f"bracket ({lo:,}, {hi:,}]" in page.locator("[data-bracket]").inner_text()
    assert page.locator("[data-dint90]").get_attribute("data-dint90") == str(group["d_int90"]) == str(hi)
    # one seed per round: no spread between seeds, so no interval, and the page says why
    assert group["d_int90_interval"] is None
    assert "interval – (one run per d: no spread to estimate)" in page.locator("[data-dint90]").inner_text()
    drawn = page.evaluate("document.querySelector('[data-chart=search-rounds]').data.map((t) => t.y)")
    assert drawn == [[r["d"] for r in rounds]]
    page.wait_for_function("() => { const gd = document.querySelector('[data-chart=accuracy-vs-d]');"
                           f" return gd && gd.data && gd.data.some((t) => t.x.length === {len(rounds)}); }}")
    assert "Search for d: from d = 512" in page.locator("[data-kind=search]").inner_text()
