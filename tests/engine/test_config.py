"""The run-config schema: defaults of Li et al., derived sizes, and rejections that name the field."""

import pytest
from pydantic import ValidationError

from idlab.config import RunConfig, validation_messages


def rejected_fields(**fields) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        RunConfig.model_validate(fields, context={"dense_budget_mb": 1024})
    return {p["field"]: p["message"] for p in validation_messages(caught.value)}


def test_defaults_reproduce_li_et_al():
    config = RunConfig()
    assert (config.normalize_p, config.theta_d_init, config.optimizer) == ("unit_columns", "zeros", "adam")
    assert config.lr == 1e-3 and tuple(config.adam_betas) == (0.9, 0.99)
    assert config.batch_size == 128 and config.weight_decay == 1e-4


@pytest.mark.parametrize("model,dataset,D", [("fc", "mnist", 199_210), ("lenet", "mnist", 44_426),
                                             ("lenet", "cifar10", 62_006),
                                             ("fc", "cifar10", 3072 * 200 + 200 + 200 * 200 + 200 + 2010)])
def test_parameter_count(model, dataset, D):
    assert RunConfig(model=model, dataset=dataset).D == D


@pytest.mark.parametrize("augmentation,k", [("linear", 100), ("power", 300), ("rff", 100 + 2 * 50),
                                            ("power+rff", 300 + 100 + 2 * 50)])
def test_k_of_each_augmentation(augmentation, k):
    config = RunConfig(augmentation=augmentation, d=100)
    assert config.k == k
    assert sum(width for _, width in config.feature_blocks()) == k


def test_rff_features_and_power_orders_change_k():
    assert RunConfig(augmentation="rff", d=100, rff_features=7).k == 114
    assert RunConfig(augmentation="power", d=10, power_orders=[2], power_coefs=[0.5]).k == 20


@pytest.mark.parametrize("fields,field,words", [
    ({"d": 0}, "d", "greater than 0"),
    ({"d": -5}, "d", "greater than 0"),
    ({"projection": "hyperbolic"}, "projection", "dense"),
    ({"augmentation": "cubic"}, "augmentation", "rff"),
    ({"p_init": "gaussian", "projection": "dense", "d": 10}, "p_init", "from_run"),
    ({"train_p": True, "projection": "fastfood"}, "train_p", "dense"),
    ({"train_p": True, "projection": "sparse"}, "train_p", "dense"),
    ({"p_init": "uniform", "projection": "fastfood"}, "p_init", "fastfood"),
    ({"p_init": "orthogonal", "projection": "sparse"}, "p_init", "dense"),
    ({"p_init": "orthogonal", "projection": "dense", "model": "lenet", "augmentation": "power", "d": 20_000},
     "p_init", "k ≤ D"),
    ({"projection": "dense", "d": 10_000}, "projection", "sparse"),
    ({"power_coefs": [0.1]}, "power_coefs", "one coefficient per power"),
    ({"power_orders": [1, 2], "power_coefs": [1, 1]}, "power_orders", "≥ 2"),
    ({"device": "tpu"}, "device", "pattern"),
    ({"unknown_field": 1}, "unknown_field", "Extra inputs"),
    ({"epochs": 0}, "epochs", "greater than or equal to 1"),
    ({"lr": 0}, "lr", "greater than 0"),
    ({"fc_widths": [0]}, "fc_widths", "between 1"),
])
def test_bad_configs_are_rejected_with_their_field(fields, field, words):
    problems = rejected_fields(**fields)
    assert field in problems, problems
    assert words in problems[field]


def test_dense_budget_message_suggests_sparse_or_fastfood():
    message = rejected_fields(projection="dense", d=10_000)["projection"]
    assert "sparse" in message and "fastfood" in message and "MiB" in message


def test_dense_budget_comes_from_the_settings_not_the_contracts(monkeypatch):
    from backend.domain.settings import Settings

    dense = {"projection": "dense", "d": 10_000}
    monkeypatch.setenv("IDLAB_DENSE_P_BUDGET_MB", "100000")
    assert RunConfig.model_validate(dense, context=Settings().validation_context()).k == 10_000
    with pytest.raises(ValidationError):     # the schema reads no environment: without a context, the default
        RunConfig(**dense)
    monkeypatch.setenv("IDLAB_DENSE_P_BUDGET_MB", "10")
    with pytest.raises(ValidationError, match="IDLAB_DENSE_P_BUDGET_MB"):
        RunConfig.model_validate({"projection": "dense", "d": 100}, context=Settings().validation_context())


@pytest.mark.parametrize("field, value", [("lr", float("nan")), ("lr", "Infinity"), ("p_scale", float("-inf")),
                                          ("power_coefs", [0.1, float("nan")]), ("rff_scale", "nan")])
def test_the_schema_refuses_nan_and_inf(field, value):
    problems = rejected_fields(**{field: value})      # a list's item is named power_coefs[1]
    assert [name for name, message in problems.items() if name.startswith(field) and "finite number" in message]


def test_from_run_p_init_is_parsed():
    assert RunConfig(projection="dense", d=10, p_init="from_run:42").from_run_id == "42"
    assert "p_init" in rejected_fields(projection="dense", d=10, p_init="from_run:../../etc")


def test_block_sum_is_valid_but_warned():
    assert any("block_sum" in w for w in RunConfig(normalize_p="block_sum").warnings)
    assert RunConfig().warnings == []


def test_direct_method_ignores_subspace_only_checks():
    assert RunConfig(method="direct", projection="dense", d=10_000).method == "direct"


def test_rff_matrices_count_against_the_memory_budget():
    problems = rejected_fields(augmentation="rff", d=10_000, rff_per_tensor=True)
    assert "rff_features" in problems and "per weight tensor" in problems["rff_features"]
    assert RunConfig.model_validate({"augmentation": "rff", "d": 1000}, context={"dense_budget_mb": 1024}).m == 500


def test_from_run_with_normalisation_is_warned():
    config = RunConfig(projection="dense", d=10, p_init="from_run:3")
    assert any("normalize_p 'none'" in w for w in config.warnings)
    assert RunConfig(projection="dense", d=10, p_init="from_run:3", normalize_p="none").warnings == []


def test_a_network_too_large_to_train_is_refused_naming_fc_widths():
    problems = rejected_fields(fc_widths=[100_000] * 8, method="direct")
    assert "narrow fc_widths" in problems["fc_widths"] and "1,000,000,000" in problems["fc_widths"]


def test_a_sparse_p_counts_against_the_memory_budget():
    wide = dict(projection="sparse", fc_widths=[10_000, 10_000])          # D ≈ 1.08·10⁸, √D ≈ 10,400
    problems = rejected_fields(**wide, d=100_000)                          # ~10⁹ non-zeros
    assert "non-zeros" in problems["projection"] and "fastfood" in problems["projection"]
    accepted = RunConfig.model_validate({**wide, "d": 1000}, context={"dense_budget_mb": 1024})
    assert accepted.sparse_p_bytes() < 1024 * 2**20

