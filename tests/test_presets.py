"""The paper presets (idlab/presets.py): they expand through the API's planner, hold the papers' settings,
train on the real MNIST, and drive `idlab train --preset`."""

from __future__ import annotations

import json
import math

import pytest

from backend.api.schemas.experiments import ExperimentCreate
from backend.domain.grid import BASELINE, plan_experiment
from backend.domain.settings import Settings
from idlab import presets
from idlab.config import RunConfig
from tests.test_cli import idlab

#: The budget of a run that only has to show the preset trains: one epoch on a few hundred images.
SHRUNK = {"epochs": 1, "train_size": 256, "test_size": 256}


def settings() -> Settings:
    return Settings(_env_file=None)


def trained_p_source(augmentation: str = "power", d: int = 50) -> dict:
    """The config of a run of the 'trained P' preset, as a template's source."""
    request = presets.fill(presets.get("lam-lee-trained-p"))
    return RunConfig(**presets.single_run(request, {"augmentation": augmentation, "d": d})).model_dump(mode="json")


def filled(preset: presets.Preset) -> dict:
    return presets.fill(preset, 7, trained_p_source()) if preset.is_template else presets.fill(preset)


def planned(preset: presets.Preset):
    return plan_experiment(ExperimentCreate.model_validate(filled(preset)), settings())


# ---- expansion and settings ---------------------------------------------------------------------


@pytest.mark.parametrize("preset", presets.PRESETS, ids=lambda p: p.id)
def test_every_preset_expands_through_the_planner(preset):
    plan = planned(preset)
    request = filled(preset)
    assert len(plan.runs) == presets.run_count(request) == preset.as_json()["run_count"]
    assert not [run for run in plan.runs if run.role == BASELINE], \
        "every preset reads d_int90 against a global baseline"
    assert plan.baseline == {"mode": "global", "value": 1.0}
    swept = {name: sorted({getattr(run.config, name) for run in plan.runs}, key=str) for name in request["grid"]}
    assert swept == {name: sorted(values, key=str) for name, values in request["grid"].items()}
    for run in plan.runs:                      # the base is applied verbatim to every run
        for name, value in request["base"].items():
            if name not in request["grid"]:
                assert json.loads(json.dumps(getattr(run.config, name))) == value, (preset.id, name)
    assert {run.config.seed for run in plan.runs} == set(request["seeds"])


def test_li_et_al_settings():
    for preset_id, model, d_int90 in (("li-mnist-fc", "fc", 750), ("li-mnist-lenet", "lenet", 290)):
        preset = presets.get(preset_id)
        config = planned(preset).runs[0].config
        assert (config.model, config.dataset, config.method, config.augmentation) == (
            model, "mnist", "subspace", "linear")
        assert (config.normalize_p, config.theta_d_init, config.use_theta0) == ("unit_columns", "zeros", True)
        assert (config.optimizer, config.lr, tuple(config.adam_betas)) == ("adam", 1e-3, (0.9, 0.99))
        assert (config.batch_size, config.weight_decay, config.lr_decay) == (128, 1e-4, 1.0)
        assert preset.request["baseline"] == 1.0 and preset.published["d_int90"] == d_int90
        grid = preset.request["grid"]["d"]
        assert min(grid) < d_int90 < max(grid) and d_int90 in grid, "the grid brackets the reported d_int90"
    assert planned(presets.get("li-mnist-fc")).runs[0].config.D == 199_210


def test_lam_and_lee_settings():
    plan = planned(presets.get("lam-lee"))
    by_augmentation = {run.config.augmentation: run.config for run in plan.runs
                       if run.config.d == 200 and run.config.seed == 0}
    assert set(by_augmentation) == {"linear", "power", "rff"}
    for config in by_augmentation.values():
        assert (config.projection, config.p_init, config.p_scale, config.normalize_p) == (
            "dense", "normal", 0.05, "none")
        assert (config.theta_d_init, config.theta_d_std, config.input_scaling) == ("normal", 0.05, "raw")
        assert (config.lr, config.lr_decay, config.batch_size, config.weight_decay) == (1e-3, 0.999, 32, 1e-3)
        assert (config.early_stopping_patience, config.early_stopping_metric, config.epochs) == (10, "train_acc", 100)
    power, rff = by_augmentation["power"], by_augmentation["rff"]
    assert (power.power_orders, power.power_coefs, power.k) == ([2, 3], [0.1, 0.01], 600)
    assert (rff.m, rff.rff_scale, rff.rff_per_tensor, rff.k) == (100, 1.0, True, 400)


def test_trained_p_preset_trains_a_dense_p_within_the_budget():
    plan = planned(presets.get("lam-lee-trained-p"))
    assert all(run.config.train_p and run.config.projection == "dense" for run in plan.runs)
    budget = settings().dense_p_budget_mb * 2**20
    assert max(run.config.dense_p_bytes() for run in plan.runs) <= budget


def test_the_template_takes_its_blocks_from_the_source_run():
    template = presets.get("lam-lee-p-from-trained")
    assert template.is_template and "run_id" in template.parameters
    request = presets.fill(template, 12, trained_p_source("rff"))
    assert request["base"]["p_init"] == "from_run:12" and request["base"]["augmentation"] == "rff"
    assert request["base"]["train_p"] is False and request["base"]["normalize_p"] == "none"
    assert presets.RUN_ID not in json.dumps(request) and presets.RUN_ID in json.dumps(template.request)
    with pytest.raises(presets.PresetError) as unfilled:
        presets.fill(template)
    assert unfilled.value.field == "run_id"
    untrained = {**trained_p_source(), "train_p": False}
    with pytest.raises(presets.PresetError, match="did not train P"):
        presets.fill(template, 12, untrained)
    with pytest.raises(presets.PresetError, match="not a template"):
        presets.fill(presets.get("lam-lee"), 12)


def test_one_run_of_a_preset_needs_a_value_for_each_swept_field():
    request = presets.fill(presets.get("lam-lee"))
    with pytest.raises(presets.PresetError) as missing:
        presets.single_run(request, {"d": 100})
    assert missing.value.field == "augmentation" and "--augmentation" in missing.value.message
    raw = presets.single_run(request, {"d": 100, "augmentation": "rff", "epochs": 3})
    assert (raw["d"], raw["augmentation"], raw["epochs"], raw["seed"]) == (100, "rff", 3, 0)


# ---- every preset trains ------------------------------------------------------------------------


def first_runs(preset: presets.Preset) -> list[RunConfig]:
    """The first planned run; for the comparison of augmentations, the first of each augmentation."""
    plan = planned(preset)
    if preset.id != "lam-lee":
        return [plan.runs[0].config]
    firsts: dict[str, RunConfig] = {}
    for run in plan.runs:
        firsts.setdefault(run.config.augmentation, run.config)
    return list(firsts.values())


def shrunk(config: RunConfig) -> RunConfig:
    return config.model_copy(update={**SHRUNK, "device": "cpu"})


def test_every_preset_trains_on_mnist(mnist_dir):
    from worker.subspace.data import load_dataset
    from worker.subspace.statistics import sampling_stats
    from worker.subspace.training import train

    def run(config: RunConfig, **kwargs):
        result = train(config, load_dataset(config, mnist_dir), **kwargs)
        assert result.status == "succeeded", result.error
        assert math.isfinite(result.metrics["test_acc"]) and math.isfinite(result.metrics["test_loss"])
        assert (result.metrics["d"], result.metrics["k"], result.metrics["epochs"]) == (config.d, config.k, 1)
        return result

    trained = {}
    for preset in presets.PRESETS:
        if preset.is_template:
            continue
        for config in first_runs(preset):
            result = run(shrunk(config))
            if config.train_p:
                assert all(block["trained"] is not None for block in result.statistics["P"].values())
                trained = {"config": config.model_dump(mode="json"), "P": result.statistics["P"]}

    # The template, filled with the trained-P run: its P is drawn from that run's trained statistics.
    request = presets.fill(presets.get("lam-lee-p-from-trained"), 1, trained["config"])
    follow_up = shrunk(plan_experiment(ExperimentCreate.model_validate(request), settings()).runs[0].config)
    assert (follow_up.augmentation, follow_up.p_init, follow_up.train_p) == (trained["config"]["augmentation"],
                                                                            "from_run:1", False)
    drawn_from = sampling_stats(trained["P"])
    result = run(follow_up, from_run_stats=drawn_from)
    for block, statistics in result.statistics["P"].items():
        assert statistics["initial"]["std"] == pytest.approx(drawn_from[block]["std"], rel=0.02), block


# ---- the command line ---------------------------------------------------------------------------


def test_idlab_presets_lists_the_same_presets(tmp_path):
    done = idlab("presets", "--json", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [json.loads(json.dumps(p.as_json())) for p in presets.PRESETS]
    table = idlab("presets", data_dir=tmp_path)
    assert all(f"idlab train --preset {p.id}" in table.stdout for p in presets.PRESETS)


def test_train_from_a_preset(tmp_path, mnist_dir):
    shrink = ["--epochs", "1", "--train_size", "128", "--test_size", "128"]

    missing = idlab("train", "--preset", "lam-lee-trained-p", "--d", "20", *shrink, data_dir=mnist_dir)
    assert missing.returncode == 2
    assert "  augmentation: " in missing.stderr and "--augmentation" in missing.stderr

    trained = tmp_path / "trained.json"
    done = idlab("train", "--preset", "lam-lee-trained-p", "--augmentation", "power", "--d", "20", *shrink,
                 "--stats-out", str(trained), "--json", data_dir=mnist_dir)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["k"] == 60
    config = json.loads(trained.read_text())["config"]
    assert (config["train_p"], config["batch_size"], config["input_scaling"], config["seed"]) == (True, 32, "raw", 0)
    assert (config["epochs"], config["p_scale"], config["adam_betas"]) == (1, 0.05, [0.9, 0.999])

    no_source = idlab("train", "--preset", "lam-lee-p-from-trained", "--d", "30", *shrink, data_dir=mnist_dir)
    assert no_source.returncode == 2 and "from-run-stats" in no_source.stderr

    follow_up = tmp_path / "follow-up.json"
    done = idlab("train", "--preset", "lam-lee-p-from-trained", "--d", "30", "--from-run-stats", str(trained),
                 *shrink, "--stats-out", str(follow_up), "--json", data_dir=mnist_dir)
    assert done.returncode == 0, done.stderr
    config = json.loads(follow_up.read_text())["config"]
    assert (config["augmentation"], config["p_init"], config["train_p"], config["d"]) == (
        "power", "from_run:trained", False, 30)
