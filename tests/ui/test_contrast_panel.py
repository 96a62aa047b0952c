"""The experiment page's contrast panel: pick a field and two of its values; the table, the band and the
sentences show what GET /api/experiments/{id}/contrast computed from the experiment's runs."""

from __future__ import annotations

import pytest

TINY = dict(dataset="synthetic", model="fc", fc_widths=[16], train_size=256, test_size=128, batch_size=32,
            epochs=1, device="cpu")


def test_the_contrast_panel_shows_the_apis_delta_interval_and_tests(page, lab, screenshots):
    experiment = lab.post("/api/experiments", {"name": "contrast panel", "base": TINY,
                                               "grid": {"augmentation": ["linear", "rff"], "d": [8, 16]},
                                               "seeds": [0, 1, 2]})
    runs_path = f"/api/experiments/{experiment['id']}"
    lab.wait(lambda: lab.get(runs_path)["counts"].get("succeeded") == 12, 240, "the 12 runs to succeed")
    expected = lab.get(f"/api/experiments/{experiment['id']}/contrast", field="augmentation", a="rff", b="linear",
                       margin=0.05)

    page.goto(f"{lab.url}/#/experiments/{experiment['id']}")
    panel = page.locator("[data-section=contrast]")
    panel.wait_for()
    assert panel.locator("select[name=contrast-field]").input_value() == "augmentation"
    assert panel.locator("select[name=contrast-a] option:checked").inner_text() == "rff"      # the last value
    assert panel.locator("select[name=contrast-b] option:checked").inner_text() == "linear"   # against the first
    panel.locator("input[name=contrast-margin]").fill("0.05")
    panel.locator("input[name=contrast-margin]").dispatch_event("change")
    page.wait_for_function("() => document.querySelectorAll('[data-section=contrast] li').length === 2"
                           " && document.querySelector('[data-section=contrast] li').textContent.includes('±0.05')")

    (stratum,) = expected["strata"]
    for row in stratum["rows"]:
        cells = panel.locator(f"table.contrast tbody tr[data-d='{row['d']}'] td").all_inner_texts()
        assert cells[1] == f"{row['n_a']} / {row['n_b']}" == "3 / 3"
        assert float(cells[4].replace("−", "-")) == pytest.approx(row["delta"], abs=5e-4)
        low, high = (float(x.replace("−", "-")) for x in cells[5].strip("[]").split(", "))
        assert (low, high) == pytest.approx(tuple(row["ci"]), abs=5e-4)
        assert cells[8] == ("yes" if row["equivalent"] else "no")
    sentences = panel.locator("li").all_inner_texts()
    assert sentences[0].startswith("rff − linear at d = 8: ") and "Holm" in sentences[0]

    page.wait_for_function("() => { const gd = document.querySelector('[data-chart=contrast]');"
                           " return gd && gd.data && gd.data.length === 3; }")
    band = page.evaluate("document.querySelector('[data-chart=contrast]').data.map((t) => [t.x, t.y])")
    assert band[0][0] == [8, 16]
    assert band[0][1] == pytest.approx([r["ci"][1] for r in stratum["rows"]])   # the band's upper edge
    assert band[1][1] == pytest.approx([r["ci"][0] for r in stratum["rows"]])   # and its lower one
    assert band[2][1] == pytest.approx([r["delta"] for r in stratum["rows"]])
    zero = page.evaluate("document.querySelector('[data-chart=contrast]').layout.shapes[0]")
    assert zero["y0"] == zero["y1"] == 0
    page.locator("[data-section=contrast]").screenshot(path=str(screenshots / "experiment-contrast.png"))
