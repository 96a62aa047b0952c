"""The run page shows a succeeded subspace run's model file: its size against θ_D's, the compression
ratio, and a link that downloads it."""

from __future__ import annotations

TINY = dict(dataset="synthetic", model="fc", fc_widths=[16], d=12, train_size=256, test_size=128, batch_size=32,
            epochs=1, device="cpu")


def test_the_run_page_shows_the_model_files_compression_and_downloads_it(page, lab):
    run_id = lab.post("/api/runs", TINY)["id"]
    lab.wait(lambda: lab.get(f"/api/runs/{run_id}")["status"] == "succeeded", 120, f"run {run_id} to succeed")
    final = lab.get(f"/api/runs/{run_id}")["final_metrics"]

    page.goto(f"{lab.url}/#/runs/{run_id}")
    page.wait_for_selector("[data-compression]")
    link = page.locator("[data-action=download-model]")
    assert link.inner_text().endswith(("B", "KB")) and link.get_attribute("href") == f"/api/runs/{run_id}/model"
    shown = page.locator("[data-compression]").inner_text()
    assert shown.endswith("× smaller") and f"{final['compression']:.0f}"[:2] in shown.replace(",", "")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == f"idlab-run-{run_id}-d12.idlab-model"
    with open(download.value.path(), "rb") as saved:
        assert len(saved.read()) == final["model_bytes"]
