"""Plugins in a real lab: the example package pip-installed into a folder on PYTHONPATH (the lab's environment is
left alone), a real `idlab worker` process training the plugin's residual CNN on CIFAR-10 (small batches in
CIFAR's own format, written here: nothing is downloaded) and the lab's fc on the plugin's wine table; the API
listing what is installed and refusing, with a 422 naming the field, a model or dataset that is not."""

from __future__ import annotations

import math
import os

import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.domain.models import SUCCEEDED
from tests.engine.test_data import write_cifar
from tests.engine.test_plugins import ITEM_MODULE, ITEM_SPEC
from tests.lab.lab_processes import open_lab
from tests.plugin_packages import install_example, plugins_installed, write_distribution

pytestmark = pytest.mark.timeout(420)

RESIDUAL_RUN = dict(dataset="cifar10", model="residual_cnn", d=200, train_size=128, test_size=64, batch_size=32,
                    epochs=1, lr=0.01)
WINE_RUN = dict(dataset="wine", model="fc", fc_widths=[32], d=50, batch_size=16, epochs=1, lr=0.01, train_size=143,
                test_size=35)
GATED_RUN = dict(dataset="synthetic", model="gated", d=20, train_size=256, test_size=128, epochs=1)


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """The example package, installed by pip; a hand-written plugin whose model vmap cannot evaluate; and one whose
    entry point names a module that is not there."""
    folder = tmp_path_factory.mktemp("plugins")
    example = install_example(folder / "example")
    odd = write_distribution(folder / "odd", "odd-plugins", "0.3", {
        "idlab.models": {"gated": "plugin_fixture_item_spec:gated"}},
        {"plugin_fixture_item_spec": ITEM_SPEC, "plugin_fixture_item_module": ITEM_MODULE})
    broken = write_distribution(folder / "broken", "broken-plugin", "1.2", {
        "idlab.datasets": {"lost": "plugin_fixture_nowhere:spec"}})
    return [example, odd, broken]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, sites):
    """An embedded lab whose processes — this one and its worker — see the plugins; CIFAR-10 batches in its data dir."""
    path = os.pathsep.join([str(site) for site in sites] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    with (pytest.MonkeyPatch.context() as patch, plugins_installed(*sites),
          open_lab("embedded", tmp_path_factory.mktemp("embedded")) as lab):
        patch.setenv("PYTHONPATH", path)                       # what the worker process is started with
        write_cifar(lab.data_dir / "cifar-10-batches-py", n=64)
        lab.worker = lab.start_worker("plugins", batch_runs=4)
        yield lab


@pytest.fixture
def client(lab):
    with TestClient(create_app(lab.settings)) as client:
        yield client


def test_the_residual_cnn_on_cifar10_and_fc_on_wine_train_in_a_real_worker(lab, client):
    """Beside a broken plugin, which the worker logs and skips."""
    residual, wine = lab.create_run(**RESIDUAL_RUN), lab.create_run(**WINE_RUN)

    for run_id in (residual, wine):
        run = lab.wait_finished(run_id, timeout=300)
        assert run.status == SUCCEEDED, lab.describe(run_id)
        assert 0.0 <= run.final_metrics["test_acc"] <= 1.0 and math.isfinite(run.final_metrics["test_loss"])
    assert lab.run(residual).config["model"] == "residual_cnn" and lab.run(wine).config["dataset"] == "wine"
    model_file = client.get(f"/api/runs/{residual}/model")
    assert model_file.status_code == 200 and model_file.content.startswith(b"idlab-subspace-model")
    assert "plugin 'lost' (entry point idlab.datasets = plugin_fixture_nowhere:spec, package broken-plugin 1.2) " \
           "was not registered: loading plugin_fixture_nowhere:spec failed: ModuleNotFoundError" in lab.worker.output()
    assert "plugin models: gated (odd-plugins 0.3), residual_cnn (idlab-plugin-example 0.1.0); plugin datasets: " \
           "wine (idlab-plugin-example 0.1.0); 1 not registered" in lab.worker.output()


def test_runs_of_a_model_vmap_cannot_evaluate_train_one_at_a_time(lab):
    run_ids = [lab.create_run(**GATED_RUN, seed=seed) for seed in (0, 1)]

    for run_id in run_ids:
        assert lab.wait_finished(run_id, timeout=300).status == SUCCEEDED, lab.describe(run_id)
    log = lab.worker.output()
    assert "runs of model 'gated' on 'synthetic' train one at a time, not in batches" in log
    assert not any(f"to train in one batch with run {run_id}" in log for run_id in run_ids)


def test_the_api_lists_the_built_ins_and_the_plugins_with_their_package(client):
    installed = client.get("/api/config/plugins").json()

    models = {m["name"]: m for m in installed["models"]}
    assert list(models) == ["fc", "lenet", "gated", "residual_cnn"]
    assert models["fc"]["source"] == "built-in"
    assert models["residual_cnn"] | {"description": ""} == {
        "name": "residual_cnn", "source": "plugin", "package": "idlab-plugin-example", "version": "0.1.0",
        "description": "", "entry_point": "idlab_plugin_example.specs:residual_cnn", "warnings": [],
        "batchable": True}
    wine = next(d for d in installed["datasets"] if d["name"] == "wine")
    assert (wine["input_shape"], wine["classes"], wine["pixels"]) == ([13, 1, 1], 3, False)
    assert [(b["group"], b["name"], b["package"], b["version"]) for b in installed["broken"]] == [
        ("idlab.datasets", "lost", "broken-plugin", "1.2")]
    assert "No module named 'plugin_fixture_nowhere'" in installed["broken"][0]["error"]
    schema = client.get("/api/config/schema").json()["schema"]["properties"]
    assert schema["model"]["enum"] == ["fc", "lenet", "gated", "residual_cnn"] and "wine" in schema["dataset"]["enum"]
    datasets = {d["name"]: d["state"] for d in client.get("/api/datasets").json()}
    assert datasets["wine"] == "plugin" and datasets["cifar10"] == "present"


@pytest.mark.parametrize("field, value, listed", [
    ("model", "resnet50", "fc, lenet, gated (odd-plugins 0.3), residual_cnn (idlab-plugin-example 0.1.0)"),
    ("dataset", "imagenet", "synthetic, wine (idlab-plugin-example 0.1.0)"),
])
def test_an_unregistered_name_is_a_422_naming_the_field_and_listing_what_is_installed(client, field, value, listed):
    response = client.post("/api/runs", json={**WINE_RUN, field: value})

    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", field] and error["type"] == f"unknown_{field}"
    assert f"unknown {field} '{value}'" in error["msg"] and listed in error["msg"]


def test_a_model_that_cannot_take_the_dataset_is_a_422_on_model(client):
    response = client.post("/api/experiments", json={"name": "wrong inputs", "base": WINE_RUN,
                                                     "grid": {"model": ["fc", "residual_cnn"]}, "seeds": [0]})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "grid", "model", 1] and "at least 4×4 pixels" in error["msg"]
