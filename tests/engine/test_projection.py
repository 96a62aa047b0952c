"""The projection P (dense, sparse, fastfood) and the Walsh–Hadamard transform behind fastfood.

Small networks: fc 784-1-10 (D = 805, four row blocks) and fc 784-4-10 (D = 3190).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from idlab.config import RunConfig
from worker.subspace.hadamard import fwht, sylvester
from worker.subspace.projection import SparseProjection, build_projection

PROJECTIONS = ("dense", "sparse", "fastfood")
NORMALIZATIONS = ("unit_columns", "none", "block_sum")


def config(**fields) -> RunConfig:
    return RunConfig(**{"dataset": "synthetic", "model": "fc", "fc_widths": [1], "d": 24, **fields})


def row_slices(cfg: RunConfig) -> list[slice]:
    slices, start = [], 0
    for _, shape in cfg.parameter_shapes():
        slices.append(slice(start, start + math.prod(shape)))
        start += math.prod(shape)
    return slices


def build(cfg: RunConfig, seed: int = 0, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # block_sum's warning, tested on its own
        return build_projection(cfg, row_slices(cfg), torch.Generator().manual_seed(seed), **kwargs)


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> bool:
    """‖a − b‖ ≤ rtol·‖b‖, in float64."""
    a, b = a.double(), b.double()
    return bool((a - b).norm() <= rtol * b.norm() + 1e-12)


def tolerance(normalize_p: str) -> float:
    """block_sum divides by sums that can be near 0, amplifying float32 rounding (fastfood computes
    the sums and the entries along different paths): worst seen over 100 seeds 8e-5."""
    return 1e-3 if normalize_p == "block_sum" else 1e-5


# ---- Walsh–Hadamard ------------------------------------------------------------------------


@pytest.mark.parametrize("L", [2**p for p in range(11)])
def test_fwht_is_multiplication_by_sylvester_hadamard(L):
    x = torch.randn(2, 3, L, dtype=torch.float64)
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.shape[0] < L:  # H_2L = [[H, H], [H, −H]], built independently of the module
        H = torch.cat((torch.cat((H, H), 1), torch.cat((H, -H), 1)))
    torch.testing.assert_close(fwht(x), x @ H)
    torch.testing.assert_close(sylvester(L, torch.float64), H)


@pytest.mark.parametrize("L", [1, 8, 256, 4096])
def test_fwht_twice_is_L_times_identity(L):
    x = torch.randn(5, L, dtype=torch.float64)
    torch.testing.assert_close(fwht(fwht(x)), L * x)
    torch.testing.assert_close(fwht(torch.eye(L)), sylvester(L))


def test_fwht_gradient():
    x = torch.randn(3, 16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fwht, (x,))
    assert torch.autograd.gradgradcheck(fwht, (x,))


def test_fwht_rejects_other_sizes():
    with pytest.raises(ValueError):
        fwht(torch.zeros(12))


# ---- P·v, Pᵀ·u, row blocks, gradients -----------------------------------------------------


@pytest.mark.parametrize("normalize_p", NORMALIZATIONS)
@pytest.mark.parametrize("projection", PROJECTIONS)
def test_products_agree_with_the_materialised_matrix(projection, normalize_p):
    cfg = config(projection=projection, normalize_p=normalize_p, augmentation="power")
    P, slices, rtol = build(cfg), row_slices(cfg), tolerance(normalize_p)
    M = P.materialize()
    assert M.shape == (cfg.D, cfg.k) == (P.D, P.k)
    assert torch.equal(P(torch.zeros(cfg.k)), torch.zeros(cfg.D))
    v, u = torch.randn(cfg.k), torch.randn(cfg.D)
    assert close(P(v), M @ v, rtol)
    assert close(P.transpose(u), M.T @ u, rtol)
    vs = [torch.randn(cfg.k) for _ in slices]
    expected = torch.cat([(M @ x)[rows] for x, rows in zip(vs, slices, strict=True)])
    assert close(P.forward_blocks(vs, slices), expected, rtol)
    # Other row slices than the build's (the generic path).
    halves = [slice(0, 400), slice(400, cfg.D)]
    assert close(P.forward_blocks(vs[:2], halves), torch.cat([(M @ vs[0])[:400], (M @ vs[1])[400:]]), rtol)


@pytest.mark.parametrize("normalize_p", NORMALIZATIONS)
@pytest.mark.parametrize("projection", PROJECTIONS)
def test_gradient_wrt_v_is_P_transpose_g(projection, normalize_p):
    cfg = config(projection=projection, normalize_p=normalize_p)
    P, slices, rtol = build(cfg), row_slices(cfg), tolerance(normalize_p)
    M, g = P.materialize(), torch.randn(cfg.D)
    v = torch.randn(cfg.k, requires_grad=True)
    (grad,) = torch.autograd.grad(P(v), v, g)
    assert close(grad, M.T @ g, rtol) and close(grad, P.transpose(g), rtol)
    vs = [torch.randn(cfg.k, requires_grad=True) for _ in slices]
    grads = torch.autograd.grad(P.forward_blocks(vs, slices), vs, g)
    for grad, rows in zip(grads, slices, strict=True):
        assert close(grad, M[rows].T @ g[rows], rtol)


def test_trained_dense_P_gets_the_outer_product_gradient():
    P = build(config(projection="dense", train_p=True))
    assert [name for name, _ in P.named_parameters()] == ["P"]
    v, g = torch.randn(P.k, requires_grad=True), torch.randn(P.D)
    P(v).backward(g)
    assert close(P.P.grad, torch.outer(g, v.detach())) and close(v.grad, P.P.detach().T @ g)
    before = P.materialize()
    with torch.no_grad():
        P.P.add_(1.0)
    assert not torch.equal(before, P.materialize())  # materialize is a snapshot, not a view


# ---- statistics ----------------------------------------------------------------------------


@pytest.mark.parametrize("projection", ["dense", "sparse"])
def test_unit_columns_exact_for_stored_matrices(projection):
    M = build(config(projection=projection, p_scale=3.0)).materialize()
    torch.testing.assert_close(M.norm(dim=0), torch.ones(M.shape[1]))


def test_fastfood_columns_unit_norm_and_near_orthogonal():
    cfg = config(projection="fastfood", fc_widths=[4], d=64)  # D = 3190, L = 64, 50 blocks
    M = build(cfg).materialize().double()
    norms = M.norm(dim=0)
    assert ((norms - 1).abs() < 0.03).all(), norms
    cos = (M.T @ M / torch.outer(norms, norms)).fill_diagonal_(0).abs()
    assert cos.max() < 0.2
    # Random unit vectors in R^D: E|cos| = √(2/π)/√D ≈ 0.8/√D; fastfood's is ≈ 1.1/√D.
    mean_cos = cos.sum() / (cfg.k * (cfg.k - 1))
    assert 0.6 < mean_cos * math.sqrt(cfg.D) < 1.6
    assert abs(M.mean()) < 5 / (cfg.D * math.sqrt(cfg.k))  # the std of the mean of iid entries: 1/(D√k)


def test_global_sparse_density_is_one_over_sqrt_D():
    cfg = config(projection="sparse", sparse_scope="global", fc_widths=[4], d=200)
    P = build(cfg)
    assert isinstance(P, SparseProjection)
    nnz = int((P.materialize() != 0).sum())
    assert nnz == len(P.values) == len(P.column_entries(slice(None)))
    assert abs(nnz / (cfg.D * cfg.k) * math.sqrt(cfg.D) - 1) < 0.05


def test_per_tensor_sparse_density_and_reach():
    """Li et al.: density ρ_t = 1/√D_t within each weight tensor t, so that small tensors (biases) are reached.

    n_t = round(ρ_t·D_t·k) positions are drawn uniformly in the D_t × k block (duplicates merged), so a
    cell holds a non-zero with probability 1 − (1 − 1/(D_t·k))^n_t ≈ ρ_t, and a row of the tensor is
    reached (has a non-zero in one of its k columns) with probability 1 − (1 − 1/D_t)^n_t ≈ 1 − (1 − ρ_t)^k.
    """
    def reach(cfg):
        M = build(cfg).materialize()
        return [((M[rows] != 0).any(dim=1).float().mean().item(), (M[rows] != 0).float().mean().item())
                for rows in row_slices(cfg)]

    cfg = config(projection="sparse", fc_widths=[200], d=50)  # tensors of 156,800, 200, 2,000 and 10 weights
    for (reached, density), (name, shape) in zip(reach(cfg), cfg.parameter_shapes(), strict=True):
        D_t = math.prod(shape)
        draws = round(D_t ** -0.5 * D_t * cfg.k)
        assert abs(density / (1 - (1 - 1 / (D_t * cfg.k)) ** draws) - 1) < 0.1, (name, density)
        assert abs(reached - (1 - (1 - 1 / D_t) ** draws)) < 0.05, (name, reached)
    hidden_bias_reach = reach(cfg)[1][0]
    assert hidden_bias_reach > 0.95
    # one density 1/√D over the whole network reaches about one bias in nine here
    global_reach = reach(cfg.model_copy(update={"sparse_scope": "global"}))
    assert global_reach[1][0] < 0.25
    assert len(build(cfg).values) <= cfg.sparse_p_nonzeros()


@pytest.mark.parametrize("projection, p_init", [
    *[("dense", p) for p in ("normal", "uniform", "rademacher", "sparse", "orthogonal")],
    *[("sparse", p) for p in ("normal", "uniform", "rademacher", "sparse")],
    ("fastfood", "normal"),
])
def test_entries_have_mean_zero_and_std_p_scale(projection, p_init):
    s = 0.5
    cfg = config(projection=projection, p_init=p_init, p_scale=s, normalize_p="none", fc_widths=[4], d=100,
                 sparse_scope="global")
    M = build(cfg).materialize()
    assert abs(M.std() / s - 1) < 0.05
    assert abs(M.mean()) < 0.05 * s
    nonzero = M[M != 0]
    density = 1 / math.sqrt(cfg.D)
    if p_init == "uniform" and projection == "dense":
        assert nonzero.abs().max() <= math.sqrt(3) * s * (1 + 1e-6)
    if p_init == "rademacher" and projection == "dense":
        torch.testing.assert_close(nonzero.abs(), torch.full_like(nonzero, s))
    if p_init == "sparse" or projection == "sparse" and p_init == "rademacher":
        torch.testing.assert_close(nonzero.abs(), torch.full_like(nonzero, s / math.sqrt(density)))
        assert abs(len(nonzero) / M.numel() / density - 1) < 0.1


@pytest.mark.parametrize("normalize_p", ["unit_columns", "none"])
def test_orthogonal_columns(normalize_p):
    cfg = config(projection="dense", p_init="orthogonal", p_scale=2.0, normalize_p=normalize_p)
    M = build(cfg).materialize().double()
    scale2 = 1.0 if normalize_p == "unit_columns" else 4.0 * cfg.D  # (s·√D)²
    torch.testing.assert_close(M.T @ M, scale2 * torch.eye(cfg.k, dtype=torch.float64), rtol=1e-5, atol=1e-5 * scale2)


@pytest.mark.parametrize("projection", ["dense", "sparse"])
def test_from_run_reproduces_per_block_statistics(projection):
    cfg = config(projection=projection, p_init="from_run:abc", normalize_p="none", augmentation="power",
                 fc_widths=[4], d=100, from_run_mean="trained")
    stats = {"linear": {"mean": 0.0, "std": 0.02}, "power_2": {"mean": 0.01, "std": 0.5},
             "power_3": {"mean": -0.3, "std": 0.1}}
    P = build(cfg, from_run_stats=stats)
    start = 0
    for name, width in cfg.feature_blocks():
        values = P.column_entries(slice(start, start + width))
        start += width
        assert len(values) > 5000
        assert abs(values.mean() - stats[name]["mean"]) < 0.05 * stats[name]["std"]
        assert abs(values.std() / stats[name]["std"] - 1) < 0.05
    # Lam & Lee's re-draw: the trained per-block std, zero mean
    P = build(cfg.model_copy(update={"from_run_mean": "zero"}), from_run_stats=stats)
    start = 0
    for name, width in cfg.feature_blocks():
        values = P.column_entries(slice(start, start + width))
        start += width
        assert abs(values.mean()) < 0.05 * stats[name]["std"]
        assert abs(values.std() / stats[name]["std"] - 1) < 0.05
    with pytest.raises(ValueError):
        build(cfg)  # no statistics given
    with pytest.raises(ValueError):
        build(cfg, from_run_stats={"linear": stats["linear"]})


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_block_sum_makes_each_block_of_each_column_sum_to_one(projection):
    cfg = config(projection=projection, normalize_p="block_sum", fc_widths=[4], d=32)
    with pytest.warns(UserWarning, match="block_sum"):
        P = build_projection(cfg, row_slices(cfg), torch.Generator().manual_seed(0))
    M = P.materialize().double()
    checked = 0
    for rows in row_slices(cfg):
        sums, scale = M[rows].sum(0), M[rows].abs().sum(0)  # float32 rounding grows with Σ|P_ij|
        if projection == "sparse":  # a block with no non-zero in a column has nothing to normalise
            sums, scale = sums[scale > 0], scale[scale > 0]
        assert ((sums - 1).abs() <= 1e-6 * (1 + scale)).all()
        checked += len(sums)
    assert checked > cfg.k


def test_column_entries():
    cfg = config(projection="dense", augmentation="power")
    P = build(cfg)
    torch.testing.assert_close(P.column_entries(slice(24, 48)), P.materialize()[:, 24:48].flatten())
    M = build(config(projection="sparse")).materialize()
    sparse = build(config(projection="sparse"))
    assert sorted(sparse.column_entries(slice(3, 9)).tolist()) == sorted(M[:, 3:9][M[:, 3:9] != 0].tolist())
    assert build(config(projection="fastfood")).column_entries(slice(0, 5)) is None


# ---- determinism, validation, devices ------------------------------------------------------


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_same_seed_same_P(projection):
    cfg = config(projection=projection)
    assert torch.equal(build(cfg, seed=1).materialize(), build(cfg, seed=1).materialize())
    assert not torch.equal(build(cfg, seed=1).materialize(), build(cfg, seed=2).materialize())


def test_rejected_combinations():
    cfg = config(projection="fastfood")
    for update in ({"p_init": "uniform"}, {"p_init": "from_run:x"}, {"train_p": True}):
        with pytest.raises(ValueError):  # the config validation rejects these first; the builder too
            build(cfg.model_copy(update=update), from_run_stats={})
    with pytest.raises(ValueError):
        build(config(projection="sparse").model_copy(update={"p_init": "orthogonal"}))
    with pytest.raises(ValueError):
        build_projection(cfg, [slice(0, 10)], torch.Generator())  # not a partition of range(D)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("normalize_p", NORMALIZATIONS)
@pytest.mark.parametrize("projection", PROJECTIONS)
def test_cuda_matches_cpu(projection, normalize_p):
    cfg = config(projection=projection, normalize_p=normalize_p)
    cpu, gpu = build(cfg), build(cfg, device="cuda")
    v = torch.randn(cfg.k, requires_grad=True)
    v_gpu = v.detach().cuda().requires_grad_()
    g = torch.randn(cfg.D)
    y, y_gpu = cpu(v), gpu(v_gpu)
    y.backward(g)
    y_gpu.backward(g.cuda())
    assert close(y_gpu.cpu(), y, 1e-4) and close(v_gpu.grad.cpu(), v.grad, 1e-4)
    assert close(gpu.transpose(g.cuda()).cpu(), cpu.transpose(g), 1e-4)


def test_the_sparse_p_memory_estimate_bounds_what_it_stores():
    """RunConfig.sparse_p_bytes, which validation holds against the budget, is an upper bound."""
    cfg = RunConfig(projection="sparse", fc_widths=[64], d=300, device="cpu")
    P = build_projection(cfg, row_slices(cfg), torch.Generator().manual_seed(0))
    stored = sum(b.numel() * b.element_size() for name, b in P.named_buffers() if not name.startswith("crow"))
    assert 0.3 * cfg.sparse_p_bytes() <= stored <= cfg.sparse_p_bytes()
