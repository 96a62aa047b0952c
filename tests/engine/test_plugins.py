"""Models and datasets from plugins: the example package installed with pip, and hand-written distributions for
the broken and the odd. What the API reads without torch (parameter shapes, dataset sizes) must be what the
worker builds and loads; names that are not registered are refused without importing anything; a broken entry
point is logged and listed, and everything else keeps working."""

from __future__ import annotations

import logging
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from idlab import plugins
from idlab.config import RunConfig, parameter_shapes
from idlab.dataset_files import DatasetCorrupt
from tests.engine.test_data import write_cifar
from tests.plugin_packages import install_example, plugins_installed, write_distribution
from worker.subspace import export
from worker.subspace.batched import train_batch
from worker.subspace.data import load_dataset
from worker.subspace.model import build_model
from worker.subspace.stacked import vmap_problem
from worker.subspace.training import train

#: A module whose forward reads a tensor's value (`.item()`): torch.func.vmap cannot evaluate it.
ITEM_MODULE = """
    import torch
    from torch import nn

    class Gated(nn.Module):
        def __init__(self, input_shape, classes):
            super().__init__()
            self.linear = nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], classes)

        def forward(self, x):
            out = self.linear(x.flatten(1))
            return out if out.sum().item() > -1e30 else -out
"""
ITEM_SPEC = """
    from idlab.plugins import DatasetPlugin, ModelPlugin

    def shapes(input_shape, classes):
        return [("linear.weight", (classes, input_shape[0] * input_shape[1] * input_shape[2])),
                ("linear.bias", (classes,))]

    gated = ModelPlugin(description="a linear model that reads .item()", parameter_shapes=shapes,
                        build="plugin_fixture_item_module:Gated")
    wrong_shape = DatasetPlugin(description="says 4 features, gives 5", input_shape=(4, 1, 1), classes=2,
                                train_size=6, test_size=2, pixels=False, load="plugin_fixture_item_spec:five_features")

    def five_features(data_dir):
        import numpy as np
        return (np.zeros((6, 5, 1, 1), np.float32), np.zeros(6, np.int64),
                np.zeros((2, 5, 1, 1), np.float32), np.zeros(2, np.int64))
"""


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    """The example package, pip-installed into a folder of its own."""
    return install_example(tmp_path_factory.mktemp("plugins") / "site")


@pytest.fixture
def example(example_site):
    """The example package registered in this process, for one test."""
    with plugins_installed(example_site) as registry:
        yield registry


def cifar_config(**fields) -> RunConfig:
    return RunConfig(**{**dict(dataset="cifar10", model="residual_cnn", d=100, device="cpu"), **fields})


@pytest.mark.parametrize("dataset", ["cifar10", "mnist", "synthetic"])
def test_the_described_shapes_are_the_built_modules_parameters(example, dataset):
    config = cifar_config(dataset=dataset)
    model = build_model(config)

    actual = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    assert actual == parameter_shapes("residual_cnn", dataset) == config.parameter_shapes()
    assert sum(p.numel() for p in model.parameters()) == config.D
    spec = config.dataset_spec
    assert model(torch.zeros(2, *spec.input_shape)).shape == (2, spec.classes)


def test_the_residual_cnn_is_modest_and_fc_takes_its_input_size_from_a_tabular_dataset(example):
    assert cifar_config().D == 28_554
    fc = RunConfig(dataset="wine", model="fc", fc_widths=[32], d=50)
    assert fc.parameter_shapes()[0] == ("layers.0.weight", (32, 13))
    assert fc.D == 13 * 32 + 32 + 32 * 3 + 3 == sum(p.numel() for p in build_model(fc).parameters())


def test_the_example_registers_one_model_and_one_dataset_with_its_package_and_version(example):
    assert list(example.models) == ["residual_cnn"] and list(example.datasets) == ["wine"]
    assert example.models["residual_cnn"].package == "idlab-plugin-example"
    assert example.models["residual_cnn"].version == "0.1.0"
    assert plugins.model_names() == ["fc", "lenet", "residual_cnn"]
    assert plugins.dataset_names()[-1] == "wine"
    schema = RunConfig.model_json_schema()["properties"]
    assert schema["model"]["enum"] == ["fc", "lenet", "residual_cnn"]
    assert "wine" in schema["dataset"]["enum"]


def test_loading_the_descriptions_imports_no_torch(example_site):
    """What the API loads: a fresh interpreter that discovers the plugins and validates runs has no torch."""
    site = str(example_site)
    code = ("import sys; from idlab.config import RunConfig; "
            "RunConfig(model='residual_cnn', dataset='cifar10'); RunConfig(model='fc', dataset='wine', d=50); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": site}, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("field, value", [
    ("model", "resnet50"),
    ("model", "idlab_plugin_example.residual_cnn:ResidualCNN"),
    ("model", "os:system"),
    ("dataset", "imagenet"),
])
def test_an_unregistered_name_is_refused_naming_the_field_and_what_is_installed(example, field, value):
    loaded_before = set(sys.modules)
    with pytest.raises(ValidationError) as refused:
        RunConfig(**{field: value})
    (error,) = refused.value.errors()
    assert error["loc"] == (field,) and error["type"] == f"unknown_{field}"
    installed = "fc, lenet, residual_cnn (idlab-plugin-example 0.1.0)" if field == "model" else "wine (idlab-plugin"
    assert installed in error["msg"]
    assert set(sys.modules) == loaded_before, "nothing a config names is imported"


def test_a_model_that_cannot_take_a_dataset_is_refused_on_the_field_model(example):
    for model, words in (("residual_cnn", "at least 4×4 pixels"), ("lenet", "at least 16×16 pixels")):
        with pytest.raises(ValidationError) as refused:
            RunConfig(model=model, dataset="wine", d=10)
        (error,) = refused.value.errors()
        assert error["loc"] == ("model",) and words in error["msg"]
    with pytest.raises(ValidationError, match="real-valued features"):
        RunConfig(model="fc", dataset="wine", d=10, input_scaling="unit")


def test_the_wine_table_loads_verified_split_and_standardised_per_feature(example):
    splits = load_dataset(RunConfig(dataset="wine", model="fc", d=10), None)

    assert splits.train_x.shape == (143, 13, 1, 1) and splits.test_x.shape == (35, 13, 1, 1)
    assert torch.bincount(splits.train_y).tolist() == [48, 56, 39]    # of 59, 71, 48 rows per cultivar
    assert torch.bincount(splits.test_y).tolist() == [11, 15, 9]
    means, stds = splits.train_x.mean((0, 2, 3)), splits.train_x.std((0, 2, 3), unbiased=False)
    assert torch.allclose(means, torch.zeros(13), atol=1e-5) and torch.allclose(stds, torch.ones(13), atol=1e-5)
    raw = load_dataset(RunConfig(dataset="wine", model="fc", d=10, input_scaling="raw"), None)
    assert raw.train_x[0, :, 0, 0].tolist()[:2] == pytest.approx([14.23, 1.71])


def test_fc_learns_the_wine_table_in_a_subspace(example):
    config = RunConfig(dataset="wine", model="fc", fc_widths=[32], d=50, epochs=30, batch_size=16, lr=0.01,
                       device="cpu")
    result = train(config, load_dataset(config, None))
    assert result.status == "succeeded" and result.metrics["test_acc"] > 0.85


def test_a_residual_run_trains_in_a_batch_as_it_trains_alone_and_exports(example, tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py", n=16)
    configs = [cifar_config(seed=seed, epochs=1, batch_size=16, train_size=32, test_size=16, lr=0.01)
               for seed in (0, 1)]
    splits = load_dataset(configs[0], tmp_path)
    assert vmap_problem(configs[0]) is None

    together = train_batch(configs, splits)
    alone = [train(config, splits) for config in configs]

    for batched, solo in zip(together, alone, strict=True):
        assert batched.status == solo.status == "succeeded"
        assert batched.metrics["test_acc"] == pytest.approx(solo.metrics["test_acc"], abs=1e-6)
        assert batched.metrics["test_loss"] == pytest.approx(solo.metrics["test_loss"], rel=1e-4)
    config, network, _ = export.load(alone[0].model)
    assert config.model == "residual_cnn" and network.theta_d.numel() == 100


def test_a_broken_entry_point_is_logged_and_listed_and_the_lab_runs_on(example, tmp_path, caplog):
    folder = write_distribution(tmp_path / "site", "broken-plugins", "2.0", {
        "idlab.models": {"missing_module": "plugin_fixture_nowhere:spec", "not_a_spec": "plugin_fixture_raw:spec",
                         "fc": "plugin_fixture_raw:spec", "Bad-Name": "plugin_fixture_raw:spec"},
        "idlab.datasets": {"raises": "plugin_fixture_raises:spec"},
    }, {"plugin_fixture_raw": "spec = {'name': 'a dict, not a ModelPlugin'}\n",
        "plugin_fixture_raises": "raise RuntimeError('no database here')\n"})
    with caplog.at_level(logging.ERROR, logger="idlab.plugins"), plugins_installed(folder) as registry:
        broken = {b.name: b.error for b in registry.broken}
        assert set(broken) == {"missing_module", "not_a_spec", "fc", "Bad-Name", "raises"}
        assert "ModuleNotFoundError" in broken["missing_module"]
        assert "not an idlab.plugins.ModelPlugin" in broken["not_a_spec"]
        assert "built into the lab" in broken["fc"]
        assert "RuntimeError: no database here" in broken["raises"]
        assert all(b.package == "broken-plugins" and b.version == "2.0" for b in registry.broken)
        assert list(registry.models) == ["residual_cnn"], "the good plugin is still registered"
        assert RunConfig(model="fc", dataset="mnist").D == 199_210
        assert RunConfig(model="residual_cnn", dataset="cifar10").D == 28_554
        assert plugins.catalogue()["broken"][0]["package"] == "broken-plugins"
    logged = [r.getMessage() for r in caplog.records if r.name == "idlab.plugins"]
    assert any("'missing_module'" in m and "was not registered" in m and "plugin_fixture_nowhere" in m
               for m in logged)


def test_a_model_vmap_cannot_evaluate_trains_alone_and_a_dataset_of_another_shape_is_refused(example, tmp_path):
    folder = write_distribution(tmp_path / "site", "odd-plugins", "0.3", {
        "idlab.models": {"gated": "plugin_fixture_item_spec:gated"},
        "idlab.datasets": {"wrong_shape": "plugin_fixture_item_spec:wrong_shape"},
    }, {"plugin_fixture_item_spec": ITEM_SPEC, "plugin_fixture_item_module": ITEM_MODULE})
    with plugins_installed(folder):
        config = RunConfig(model="gated", dataset="synthetic", d=10, device="cpu")
        assert "torch.func.vmap cannot evaluate 'gated'" in vmap_problem(config)
        assert vmap_problem(cifar_config()) is None
        with pytest.raises(DatasetCorrupt, match=r"train_x has shape \(6, 5, 1, 1\), its description says"):
            load_dataset(RunConfig(model="fc", dataset="wrong_shape", d=5), None)


def test_a_description_that_fails_refuses_its_runs_on_the_field_model(tmp_path):
    spec = """
        from idlab.plugins import ModelPlugin
        divides = ModelPlugin(description="divides by zero", parameter_shapes=lambda s, c: [("w", (c // 0,))],
                              build="plugin_fixture_faulty:Nothing")
        negative = ModelPlugin(description="a negative size", parameter_shapes=lambda s, c: [("w", (c, -1))],
                               build="plugin_fixture_faulty:Nothing")
        exits = ModelPlugin(description="fine", parameter_shapes=lambda s, c: [("w", (c, 1))],
                            build="plugin_fixture_faulty:Nothing", activations_per_example=lambda s, c: 1 / 0)
    """
    folder = write_distribution(tmp_path / "site", "faulty-plugin", "0.1", {"idlab.models": {
        name: f"plugin_fixture_faulty:{name}" for name in ("divides", "negative", "exits")}},
        {"plugin_fixture_faulty": spec})
    with plugins_installed(folder):
        for model, words in (("divides", "failed to describe itself for inputs (1, 28, 28) and 10 classes: "
                                         "ZeroDivisionError"), ("negative", "sizes positive"),
                             ("exits", "failed to describe itself")):
            with pytest.raises(ValidationError) as refused:
                RunConfig(model=model, dataset="synthetic", d=1)
            (error,) = refused.value.errors()
            assert error["loc"] == ("model",) and words in error["msg"], error


def test_a_module_with_buffers_is_refused_when_built(example, tmp_path):
    module = """
        import torch
        from torch import nn

        class Normed(nn.Module):
            def __init__(self, input_shape, classes):
                super().__init__()
                self.linear = nn.Linear(input_shape[0], classes)
                self.norm = nn.BatchNorm1d(classes, affine=False)

            def forward(self, x):
                return self.norm(self.linear(x.flatten(1)))
    """
    spec = """
        from idlab.plugins import ModelPlugin
        normed = ModelPlugin(description="keeps running statistics",
                             parameter_shapes=lambda s, c: [("linear.weight", (c, s[0])), ("linear.bias", (c,))],
                             build="plugin_fixture_bn_module:Normed")
    """
    folder = write_distribution(tmp_path / "site", "bn-plugin", "1.0", {
        "idlab.models": {"normed": "plugin_fixture_bn_spec:normed"}},
        {"plugin_fixture_bn_spec": spec, "plugin_fixture_bn_module": module})
    with plugins_installed(folder):
        config = RunConfig(model="normed", dataset="wine", d=5)
        assert config.D == 13 * 3 + 3 == math.prod((3, 13)) + 3
        with pytest.raises(RuntimeError, match="holds buffers"):
            build_model(config)


def test_without_plugins_only_the_built_ins_are_named():
    assert plugins.model_names() == ["fc", "lenet"]
    with pytest.raises(ValidationError, match="the installed models are fc, lenet"):
        RunConfig(model="residual_cnn")
    assert np.array_equal(RunConfig.model_json_schema()["properties"]["model"]["enum"], ["fc", "lenet"])


def test_the_clients_progress_bar_counts_a_plugin_datasets_steps(example):
    from idlab.client import _total_steps

    assert _total_steps({"dataset": "wine", "epochs": 2, "batch_size": 32}) == 2 * 5     # 143 rows: ⌈143/32⌉ = 5
    assert _total_steps({"dataset": "wine", "epochs": 1, "batch_size": 32, "train_size": 40}) == 2
    assert _total_steps({"dataset": "not_installed", "epochs": 1}) is None
