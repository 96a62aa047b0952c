"""φ: the features, their widths, and that B is fixed and drawn from the seed."""

import torch

from idlab.config import RunConfig
from worker.subspace.augmentation import Augmentation


def phi(n_tensors=1, **fields):
    config = RunConfig(**fields)
    return config, Augmentation(config, n_tensors, torch.Generator().manual_seed(config.seed))


def test_linear_is_identity():
    _, augmentation = phi(d=5)
    theta = torch.randn(5)
    assert torch.equal(augmentation(theta), theta.unsqueeze(0))


def test_power_features_are_scaled_powers():
    config, augmentation = phi(d=4, augmentation="power", power_orders=[2, 3], power_coefs=[0.1, 0.01])
    theta = torch.tensor([1.0, -2.0, 0.5, 3.0])
    features = augmentation(theta)[0]
    assert features.shape == (config.k,) == (12,)
    torch.testing.assert_close(features, torch.cat([theta, 0.1 * theta**2, 0.01 * theta**3]))


def test_rff_features_are_cos_and_sin_of_B_theta():
    config, augmentation = phi(d=6, augmentation="rff", rff_features=4, rff_scale=2.0, rff_amplitude=0.5)
    theta = torch.randn(6)
    features = augmentation(theta)[0]
    B = augmentation.B[0]
    assert B.shape == (4, 6)
    torch.testing.assert_close(features, torch.cat([theta, 0.5 * torch.cos(B @ theta), 0.5 * torch.sin(B @ theta)]))
    assert features.shape == (config.k,)


def test_rff_scale_sets_the_spread_of_B():
    _, augmentation = phi(d=200, augmentation="rff", rff_features=200, rff_scale=3.0)
    assert abs(augmentation.B.std().item() - 3.0) < 0.1


def test_power_plus_rff_is_the_concatenation_in_block_order():
    config, augmentation = phi(d=3, augmentation="power+rff", rff_features=2)
    theta = torch.randn(3)
    features = augmentation(theta)[0]
    widths = dict(config.feature_blocks())
    assert list(widths) == ["linear", "power_2", "power_3", "rff_linear", "cos", "sin"]
    assert features.shape == (config.k,) == (3 * 4 + 4,)
    torch.testing.assert_close(features[9:12], theta)


def test_one_B_per_tensor_gives_one_feature_vector_per_tensor():
    config, augmentation = phi(n_tensors=6, d=8, augmentation="rff", rff_per_tensor=True)
    features = augmentation(torch.randn(8))
    assert features.shape == (6, config.k)
    assert augmentation.per_tensor
    assert not torch.allclose(features[0], features[1])          # different B_t
    torch.testing.assert_close(features[0, :8], features[3, :8])  # same linear part


def test_B_is_fixed_and_not_trained():
    _, augmentation = phi(d=8, augmentation="rff")
    assert list(augmentation.parameters()) == []
    _, again = phi(d=8, augmentation="rff")
    assert torch.equal(augmentation.B, again.B)
    _, other_seed = phi(d=8, augmentation="rff", seed=1)
    assert not torch.equal(augmentation.B, other_seed.B)


def test_centred_rff_is_zero_at_zero_and_uncentred_is_not():
    config, centred = phi(d=8, augmentation="rff", rff_centered=True, rff_amplitude=2.0)
    _, uncentred = phi(d=8, augmentation="rff", rff_amplitude=2.0)
    zero = torch.zeros(8)
    assert not centred(zero).any()
    torch.testing.assert_close(uncentred(zero)[0, 8:8 + config.m], torch.full((config.m,), 2.0))
    theta = torch.randn(8)
    # the same features up to the constant a on the cosine block
    shift = torch.zeros(config.k)
    shift[8:8 + config.m] = 2.0
    torch.testing.assert_close(uncentred(theta)[0] - centred(theta)[0], shift)


def test_train_rff_b_makes_B_a_parameter():
    _, augmentation = phi(d=8, augmentation="rff", train_rff_b=True)
    assert [name for name, _ in augmentation.named_parameters()] == ["B"]
    augmentation(torch.randn(8)).sum().backward()
    assert augmentation.B.grad is not None and augmentation.B.grad.abs().sum() > 0
