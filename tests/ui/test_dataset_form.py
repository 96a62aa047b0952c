"""The new-experiment form says, beside the dataset, whether its files are in the lab's data
directory or will be downloaded on first use (GET /api/datasets, read when the form opens)."""

from __future__ import annotations


def dataset_note(page) -> str:
    page.wait_for_function("() => (document.querySelector('[data-dataset-status]')?.textContent || '').length > 0")
    return page.locator("[data-dataset-status]").inner_text()


def test_the_form_says_whether_a_dataset_is_present_or_downloads_on_first_use(page, lab, mnist_dir):
    mnist = lab.data_dir / "MNIST"
    mnist.unlink(missing_ok=True)
    page.goto(f"{lab.url}/#/new")
    page.select_option("#f-dataset", "mnist")
    assert dataset_note(page) == "mnist — downloads on first use (12 MB)"
    page.select_option("#f-dataset", "synthetic")
    page.wait_for_function("() => document.querySelector('[data-dataset-status]').textContent.startsWith('synthetic')")
    assert dataset_note(page) == "synthetic — generated in memory"

    mnist.symlink_to(mnist_dir / "MNIST", target_is_directory=True)   # the files arrive
    try:
        page.reload()
        page.select_option("#f-dataset", "mnist")
        assert dataset_note(page) == "mnist — present"
    finally:
        mnist.unlink()
