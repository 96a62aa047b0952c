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
    assert shown == f" vs {file_size(final['network_bytes'])} · {significant(final['compression'])}× smaller"
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == f"idlab-run-{run_id}-d12.idlab-model"
    with open(download.value.path(), "rb") as saved:
        assert len(saved.read()) == final["model_bytes"]


def test_the_d_int90_table_shows_the_model_file_at_d_int90_against_theta_D(page, lab):
    # A global baseline of 0.05 (threshold 0.045): the smallest d reaches it, so d_int90 = 8.
    experiment = lab.post("/api/experiments", {"name": "model files at d_int90", "base": TINY,
                                               "grid": {"d": [8, 16]}, "seeds": [0, 1], "baseline": 0.05})
    summary_path = f"/api/experiments/{experiment['id']}/summary"
    lab.wait(lambda: lab.get(summary_path)["groups"][0]["d_int90_model_bytes"] is not None
             and sum(lab.get(summary_path)["groups"][0]["counts"].values()) ==
             lab.get(summary_path)["groups"][0]["counts"].get("succeeded"), 180, "the experiment to succeed")
    group = lab.get(summary_path)["groups"][0]
    at_d8 = [run for run in lab.get("/api/runs", experiment_id=experiment["id"])["items"] if run["d"] == 8]
    assert group["d_int90"] == 8 and len(at_d8) == 2
    assert group["d_int90_model_bytes"] == sum(run["final_metrics"]["model_bytes"] for run in at_d8) / 2
    assert group["d_int90_compression"] == group["network_bytes"] / group["d_int90_model_bytes"] > 1

    page.goto(f"{lab.url}/#/experiments/{experiment['id']}")
    cell = page.locator("[data-section=dint90] td[data-compression]").first
    cell.wait_for()
    assert cell.inner_text() == f"{significant(group['d_int90_compression'])}×"
    sizes = page.locator("[data-section=dint90] td[data-model-bytes]").first.inner_text()
    assert sizes == f"{file_size(group['d_int90_model_bytes'])} of {file_size(group['network_bytes'])}"


def file_size(size: float) -> str:
    """dom.js's fmtFileSize: decimal units, one decimal under 10."""
    if size < 1000:
        return f"{round(size)} B"
    value, unit = (size / 1e3, "KB") if size < 1e6 else (size / 1e6, "MB")
    return f"{value:.1f} {unit}" if value < 10 else f"{round(value)} {unit}"


def significant(value: float) -> str:
    """dom.js's fmtNum(value, 3) for a ratio: three significant digits, no trailing zeros."""
    return f"{float(f'{value:.3g}'):g}"


def test_the_run_page_checks_its_model_file_on_a_worker(page, lab, screenshots):
    run_id = lab.post("/api/runs", {**TINY, "seed": 7})["id"]
    lab.wait(lambda: lab.get(f"/api/runs/{run_id}")["status"] == "succeeded", 120, f"run {run_id} to succeed")
    recorded = lab.get(f"/api/runs/{run_id}")["final_metrics"]["test_acc"]

    page.goto(f"{lab.url}/#/runs/{run_id}")
    page.locator("[data-action=check-model]").click()
    page.wait_for_selector("[data-model-check=reproduced], [data-model-check=differs], [data-model-check=failed], "
                           "[data-model-check=error]", timeout=120_000)

    answer = page.locator("[data-model-check]")
    assert answer.get_attribute("data-model-check") == "reproduced", answer.inner_text()
    assert "the recorded accuracy, exactly" in answer.inner_text() and f"{100 * recorded:.2f}" in answer.inner_text()
    page.locator(".cards").screenshot(path=screenshots / "run-model-check.png")
