"""θ_D = θ_0 + P·φ(θ_d): the offset, where gradient flows, and the direct baseline."""

import pytest
import torch

from idlab.config import RunConfig
from worker.subspace.network import DirectNetwork, SubspaceNetwork, row_slices

SMALL = dict(dataset="synthetic", model="fc", fc_widths=[16], d=20)


def network(**fields) -> SubspaceNetwork:
    return SubspaceNetwork(RunConfig(**{**SMALL, **fields}))


@pytest.mark.parametrize("projection", ["dense", "sparse", "fastfood"])
@pytest.mark.parametrize("augmentation", ["linear", "power"])
def test_theta_D_is_theta_0_where_phi_is_zero(projection, augmentation):
    net = network(projection=projection, augmentation=augmentation)
    assert not net.theta_d.any()
    torch.testing.assert_close(net.theta_D(), net.theta_0)


@pytest.mark.parametrize("projection", ["dense", "sparse", "fastfood"])
def test_theta_D_moves_by_P_phi(projection):
    net = network(projection=projection, augmentation="rff", theta_d_init="normal")
    features = net.phi(net.theta_d)[0]
    torch.testing.assert_close(net.theta_D(), net.theta_0 + net.P.materialize() @ features, rtol=1e-4, atol=1e-5)


def test_theta_0_is_the_he_initialisation_and_can_be_dropped():
    assert network().theta_0.abs().sum() > 0
    without = network(use_theta0=False, theta_d_init="normal")
    assert not without.theta_0.any()
    torch.testing.assert_close(without.theta_D(), without.P(without.theta_d))


def gradients(net, x, y):
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    return {name: p.grad for name, p in net.named_parameters()}


def batch(n=8):
    return torch.randn(n, 1, 28, 28), torch.randint(0, 10, (n,))


@pytest.mark.parametrize("projection", ["dense", "sparse", "fastfood"])
def test_only_theta_d_receives_gradient(projection):
    net = network(projection=projection)
    grads = gradients(net, *batch())
    assert list(grads) == ["theta_d"]
    assert grads["theta_d"].abs().sum() > 0
    assert not net.theta_0.requires_grad


def test_train_p_makes_P_trainable_too():
    net = network(projection="dense", train_p=True, theta_d_init="normal")
    grads = gradients(net, *batch())
    assert "theta_d" in grads and any(name.startswith("P.") for name in grads)
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_theta_d_normal_init_uses_its_std():
    net = SubspaceNetwork(RunConfig(**{**SMALL, "d": 4000, "theta_d_init": "normal", "theta_d_std": 0.05}))
    assert abs(net.theta_d.std().item() - 0.05) < 0.005


def test_same_seed_same_network_other_seed_other():
    a, b, c = network(theta_d_init="normal"), network(theta_d_init="normal"), network(theta_d_init="normal", seed=3)
    x, _ = batch()
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))


def test_per_tensor_rff_uses_each_tensors_own_features():
    config = RunConfig(**{**SMALL, "augmentation": "rff", "rff_per_tensor": True, "projection": "dense",
                          "theta_d_init": "normal"})
    net = SubspaceNetwork(config)
    P = net.P.materialize()
    features = net.phi(net.theta_d)
    expected = torch.cat([(P @ features[t])[rows] for t, rows in enumerate(row_slices(config))])
    torch.testing.assert_close(net.theta_D(), net.theta_0 + expected, rtol=1e-4, atol=1e-5)


def test_direct_network_trains_all_weights_from_the_same_theta_0():
    config = RunConfig(**{**SMALL, "method": "direct"})
    direct, subspace = DirectNetwork(config), network()
    torch.testing.assert_close(direct.theta_D(), subspace.theta_0)
    grads = gradients(direct, *batch())
    assert grads["theta"].shape == (config.D,)


@pytest.mark.parametrize("projection", ["dense", "sparse", "fastfood"])
def test_centred_rff_starts_at_theta_0_and_the_offset_is_recorded(projection):
    centred = network(projection=projection, augmentation="rff", rff_centered=True)
    torch.testing.assert_close(centred.theta_D(), centred.theta_0)
    assert centred.offset_at_zero() == 0.0
    uncentred = network(projection=projection, augmentation="rff")
    # P·[0, a·1, 0]: the sum of the m cosine columns of P, of norm ≈ a·√m for unit columns
    m = uncentred.phi.B.shape[1]
    assert abs(uncentred.offset_at_zero() / m ** 0.5 - 1) < 0.5
    expected = (uncentred.theta_D() - uncentred.theta_0).norm().item()
    assert uncentred.offset_at_zero() == pytest.approx(expected, rel=1e-5)


def test_kernels_only_l2_leaves_the_biases_out():
    net = network(weight_decay_scope="kernels", theta_d_init="normal", use_theta0=False)
    theta_D = net.theta_D()
    kernels = sum(theta_D[rows].square().sum() for (name, _), rows in zip(net.shapes, net.rows, strict=True)
                  if name.endswith("weight"))
    torch.testing.assert_close(net.squared_norm(theta_D), kernels)
    everything = network(theta_d_init="normal", use_theta0=False)
    torch.testing.assert_close(everything.squared_norm(everything.theta_D()), theta_D.square().sum())
    assert net.squared_norm(theta_D) < theta_D.square().sum()
    # the penalty's gradient is 2·θ_D on the kernels' rows and 0 on the biases'
    point = theta_D.detach().requires_grad_()
    (gradient,) = torch.autograd.grad(net.squared_norm(point), point)
    for (name, _), rows in zip(net.shapes, net.rows, strict=True):
        expected = 2 * point[rows].detach() if name.endswith("weight") else torch.zeros(rows.stop - rows.start)
        torch.testing.assert_close(gradient[rows], expected)
