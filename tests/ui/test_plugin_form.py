"""The new-experiment form offers the models and datasets a plugin package registers, and says under each
choice what it is and which package (and version) provides it: `idlab serve` started with the example
plugin installed (pip, into a folder on its PYTHONPATH)."""

from __future__ import annotations

import os

import pytest

from tests.plugin_packages import install_example
from tests.ui.conftest import Lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """This module's lab (it replaces the session's): `idlab serve` whose API and worker see the example plugin."""
    site = install_example(tmp_path_factory.mktemp("plugins") / "site")
    path = os.pathsep.join([str(site)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    lab = Lab(tmp_path_factory.mktemp("ui-plugin-lab"), env={"PYTHONPATH": path})
    try:
        lab.wait_ready()
        yield lab
    finally:
        lab.stop()


def note(page, kind: str, starts: str) -> str:
    selector = f"[data-installed-note='{kind}']"
    page.wait_for_function(f"() => (document.querySelector(\"{selector}\")?.textContent || '').startsWith({starts!r})")
    return page.locator(selector).inner_text()


def test_the_form_offers_the_plugins_and_names_their_package(page, lab):
    page.goto(f"{lab.url}/#/new")
    page.wait_for_selector("#f-model option[value='residual_cnn']", state="attached")
    options = page.locator("#f-model option").all_inner_texts()
    assert options == ["fc", "lenet", "residual_cnn"]
    assert "wine" in page.locator("#f-dataset option").all_inner_texts()

    page.select_option("#f-model", "residual_cnn")
    assert note(page, "model", "residual_cnn").startswith(
        "residual_cnn — plugin idlab-plugin-example 0.1.0: Residual CNN: conv 16@3×3")
    page.select_option("#f-dataset", "wine")
    assert note(page, "dataset", "wine").startswith("wine — plugin idlab-plugin-example 0.1.0: UCI wine")
    page.wait_for_function("() => document.querySelector('[data-dataset-status]').textContent.startsWith('wine')")
    assert page.locator("[data-dataset-status]").inner_text() == "wine — loaded by its plugin package"
    page.select_option("#f-model", "fc")
    assert note(page, "model", "fc").startswith("fc — built in: Fully connected")
