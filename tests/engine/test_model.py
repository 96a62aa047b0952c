"""Models and θ_0: the modules agree with `parameter_shapes`, θ_0 is He-normal, functional_call works."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from idlab.config import DATASETS, RunConfig
from worker.subspace.model import AtPoint, build_model, fan_in, initial_theta, load_theta, parameter_views


def config(**fields) -> RunConfig:
    return RunConfig(projection="sparse", **fields)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(dataset: str, n: int = 4) -> torch.Tensor:
    return torch.randn(n, *DATASETS[dataset].input_shape, generator=generator(123))


@pytest.mark.parametrize("fields, D", [
    ({"model": "fc", "dataset": "mnist"}, 199_210),
    ({"model": "lenet", "dataset": "mnist"}, 44_426),
    ({"model": "lenet", "dataset": "cifar10"}, 62_006),
    ({"model": "fc", "dataset": "mnist", "fc_widths": [50]}, 784 * 50 + 50 + 50 * 10 + 10),
    ({"model": "fc", "dataset": "cifar10", "fc_widths": [32, 16, 8]}, None),
    ({"model": "fc", "dataset": "synthetic"}, 199_210),
    ({"model": "lenet", "dataset": "synthetic"}, 44_426),
    ({"model": "lenet", "dataset": "fashion_mnist"}, 44_426),
])
def test_named_parameters_match_parameter_shapes(fields, D):
    cfg = config(**fields)
    model = build_model(cfg)
    actual = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    assert actual == cfg.parameter_shapes()
    assert sum(p.numel() for p in model.parameters()) == cfg.D
    if D is not None:
        assert cfg.D == D


@pytest.mark.parametrize("fields", [
    {"model": "fc", "dataset": "mnist"},
    {"model": "fc", "dataset": "cifar10", "fc_widths": [32, 16]},
    {"model": "lenet", "dataset": "mnist"},
    {"model": "lenet", "dataset": "cifar10"},
])
def test_outputs_logits_per_class(fields):
    cfg = config(**fields)
    x = batch(cfg.dataset)
    assert build_model(cfg)(x).shape == (x.shape[0], DATASETS[cfg.dataset].classes)


def test_build_model_does_not_advance_the_global_rng():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    build_model(config(model="lenet"))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("model, dataset", [("fc", "mnist"), ("lenet", "mnist"), ("lenet", "cifar10")])
def test_theta0_is_he_normal_with_zero_biases(model, dataset):
    cfg = config(model=model, dataset=dataset)
    theta = initial_theta(cfg, generator(0))
    assert theta.shape == (cfg.D,) and theta.dtype == torch.float32
    for name, block in parameter_views(theta, cfg.parameter_shapes()).items():
        if name.endswith("bias"):
            assert torch.count_nonzero(block) == 0, name
            continue
        expected = math.sqrt(2.0 / fan_in(tuple(block.shape)))
        n = block.numel()
        # The sample std of n normals has relative standard error ≈ 1/√(2n); allow 5 of them.
        tolerance = 5 / math.sqrt(2 * n)
        assert abs(block.std().item() / expected - 1) < tolerance, (name, block.std().item(), expected)
        assert abs(block.mean().item()) < 5 * expected / math.sqrt(n), name


def test_fan_in_of_linear_and_conv_kernels():
    assert fan_in((200, 784)) == 784
    assert fan_in((16, 6, 5, 5)) == 150


def test_theta0_is_determined_by_the_generator():
    cfg = config(model="lenet")
    first = initial_theta(cfg, generator(3))
    assert torch.equal(first, initial_theta(cfg, generator(3)))
    assert not torch.equal(first, initial_theta(cfg, generator(4)))


@pytest.mark.parametrize("model, dataset", [("fc", "mnist"), ("lenet", "cifar10")])
def test_functional_call_on_views_of_theta_matches_the_loaded_module(model, dataset):
    cfg = config(model=model, dataset=dataset, fc_widths=[64, 32])
    net = build_model(cfg)
    theta = initial_theta(cfg, generator(1))
    x = batch(dataset)

    params = parameter_views(theta, cfg.parameter_shapes())
    assert all(p.untyped_storage().data_ptr() == theta.untyped_storage().data_ptr() for p in params.values())
    functional = functional_call(net, params, (x,))

    load_theta(net, theta)
    assert torch.allclose(functional, net(x), atol=1e-6)


def test_gradient_flows_to_the_flat_theta():
    cfg = config(model="lenet")
    net = build_model(cfg)
    theta = initial_theta(cfg, generator(2)).requires_grad_()
    logits = functional_call(net, parameter_views(theta, cfg.parameter_shapes()), (batch("mnist"),))
    torch.nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    assert theta.grad is not None and theta.grad.shape == (cfg.D,)
    assert torch.count_nonzero(theta.grad) > 0.5 * cfg.D
    assert not any(p.grad is not None for p in net.parameters())


def test_parameter_views_rejects_a_vector_of_the_wrong_length():
    cfg = config(model="lenet")
    with pytest.raises(ValueError, match="44426"):
        parameter_views(torch.zeros(cfg.D + 1), cfg.parameter_shapes())


def test_he_truncated_is_keras_truncated_normal_without_variance_correction():
    """Keras' he_normal until 2.2: N(0, σ²) cut at ±2σ, σ = √(2/fan_in), so its std is ≈ 0.8796·σ."""
    cfg = config(model="fc", dataset="mnist", theta0_init="he_truncated")
    views = parameter_views(initial_theta(cfg, generator(0)), cfg.parameter_shapes())
    kernel = views["layers.0.weight"]                       # 156,800 entries, fan_in 784
    sigma = math.sqrt(2.0 / 784)
    # variance of a standard normal truncated to [−2, 2]: 1 − 2·2·φ(2) / (Φ(2) − Φ(−2))
    pdf2 = math.exp(-2) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    expected = sigma * math.sqrt(1 - 4 * pdf2 / mass)
    assert abs(expected / sigma - 0.8796) < 1e-4
    assert abs(kernel.std().item() / expected - 1) < 5 / math.sqrt(2 * kernel.numel())
    assert kernel.abs().max().item() <= 2 * sigma
    assert kernel.abs().max().item() > 1.95 * sigma       # cut at 2σ, not rescaled to a smaller range
    assert torch.count_nonzero(views["layers.0.bias"]) == 0


def test_he_normal_biases_use_their_length_as_fan_in():
    cfg = config(model="fc", dataset="mnist", fc_widths=[2000], bias_init="he_normal")
    views = parameter_views(initial_theta(cfg, generator(0)), cfg.parameter_shapes())
    bias = views["layers.0.bias"]                          # 2,000 entries: σ = √(2/2000)
    assert abs(bias.std().item() / math.sqrt(2 / 2000) - 1) < 5 / math.sqrt(2 * 2000)
    # the kernels are the same draws as with zero biases up to the first bias
    zero_bias = parameter_views(initial_theta(config(model="fc", dataset="mnist", fc_widths=[2000]), generator(0)),
                                cfg.parameter_shapes())
    assert torch.equal(views["layers.0.weight"], zero_bias["layers.0.weight"])


@pytest.mark.parametrize("model, dataset", [("fc", "mnist"), ("lenet", "cifar10")])
def test_a_module_at_a_point_computes_what_functional_call_does_and_keeps_nothing_after(model, dataset):
    cfg = config(model=model, dataset=dataset, fc_widths=[64, 32])
    shapes = cfg.parameter_shapes()
    theta = initial_theta(cfg, generator(3)).requires_grad_()
    x = batch(dataset)
    at = AtPoint(build_model(cfg).to("meta"), shapes)

    logits = at(theta.split(at.sizes), x)
    expected = functional_call(build_model(cfg), parameter_views(theta, shapes), (x,))
    assert torch.equal(logits, expected)
    assert all(table[name] is None for table, name in at.slots)       # no view of θ_D, no graph, outlives the call
    (grad,) = torch.autograd.grad(logits.square().sum(), theta)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), theta)
    assert torch.equal(grad, expected_grad)
