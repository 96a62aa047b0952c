"""The native fastfood kernel: the same products as the torch ops, their gradients, and the machine without it.

The kernel computes rows of P·x and Pᵀ·g for stacked fastfood blocks in one pass per block
(worker/subspace/fastfood_kernel.c); the torch ops of `FastfoodProjection._V` / `_Vt` are its
reference. Float32 sums in another order: 1e-6 relative on a product, 1e-5 over training curves.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from idlab.config import RunConfig
from worker.subspace import fastfood_kernel, native
from worker.subspace.batched import train_batch
from worker.subspace.data import load_dataset
from worker.subspace.projection import FastfoodProjection
from worker.subspace.stacked import StackedFastfood
from worker.subspace.training import train

ROOT = Path(__file__).resolve().parents[2]
HAS_COMPILER = bool(shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"))
needs_kernel = pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler: the native kernel cannot be built here")
TINY = dict(dataset="synthetic", model="fc", fc_widths=[32], lr=0.05, epochs=2, batch_size=64, train_size=640,
            test_size=256, log_every=2, device="cpu", projection="fastfood")


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-6, scale: torch.Tensor | None = None) -> bool:
    """‖a − b‖ ≤ rtol·‖scale‖ (default ‖b‖): a few rows of a product are held to the whole product's scale,
    since one entry can be a sum that cancels."""
    a, b = a.double(), b.double()
    return bool((a - b).norm() <= rtol * (b if scale is None else scale).double().norm() + 1e-12)


def projection(D: int, k: int, seed: int = 0, normalize_p: str = "unit_columns",
               rows: list[slice] | None = None) -> FastfoodProjection:
    return FastfoodProjection(D, k, rows or [slice(0, D)], normalize_p, 1.0, torch.Generator().manual_seed(seed))


@needs_kernel
def test_the_kernel_is_built_on_this_machine():
    assert fastfood_kernel.load() and fastfood_kernel.available()
    assert list(native.cache_folder().glob("fastfood-*.so"))


@needs_kernel
@pytest.mark.parametrize(("D", "k"), [(5, 1), (40, 3), (300, 16), (1000, 24), (3190, 100), (20_000, 750)])
def test_the_rows_of_P_v_and_P_transpose_u_equal_the_torch_ops(D, k):
    P = projection(D, k)
    v, u = torch.randn(k), torch.randn(D)
    with native.disabled():
        reference, reference_t = P(v), P.transpose(u)
    assert close(P(v), reference) and close(P.transpose(u), reference_t)
    L = P.L
    for rows in (slice(0, D), slice(0, 1), slice(D - 1, D), slice(min(L - 1, D - 1), D), slice(D // 3, 2 * D // 3)):
        with native.disabled():
            expected, expected_t = P._rows(v, rows), P._transpose_rows(u[rows], rows)
        assert close(P._rows(v, rows), expected, scale=reference), rows
        assert close(P._transpose_rows(u[rows], rows), expected_t, scale=reference_t * (len(range(D)[rows]) / D) ** 0.5
                     ), rows


@needs_kernel
def test_theta_0_is_added_in_the_same_pass_and_many_vectors_share_one_projection():
    P, theta_0 = projection(3190, 100), torch.randn(3190)
    v = torch.randn(100)
    assert close(P.affine(theta_0, v), theta_0 + P(v))
    with native.disabled():
        columns = P.materialize()                       # P·e_j, one vector at a time inside the torch ops
    assert close(P.materialize(), columns)              # k vectors through the kernel at once


@needs_kernel
def test_stacked_runs_each_get_their_own_projection():
    ks = (100, 120, 128)                                 # one block size, L = 128
    projections = [projection(3190, k, seed) for seed, k in enumerate(ks)]
    vs = [torch.randn(k) for k in ks]
    x = torch.stack([torch.nn.functional.pad(v, (0, 128 - len(v))) for v in vs])   # φ padded as the stack pads it
    base = torch.randn(3, 3190)
    stacked = StackedFastfood(projections)
    assert stacked.native
    for rows in (slice(0, 3190), slice(700, 2000)):
        got = stacked.rows(x, rows, base)
        with native.disabled():
            expected = [base[r, rows] + P._rows(v, rows) for r, (P, v) in enumerate(zip(projections, vs, strict=True))]
        assert all(close(got[r], expected[r]) for r in range(3))


@needs_kernel
def test_gradients_are_the_transposed_products_and_differentiate_again():
    P, theta_0 = projection(3190, 100), torch.randn(3190)
    v, g = torch.randn(100, requires_grad=True), torch.randn(3190, requires_grad=True)
    (grad,) = torch.autograd.grad(P.affine(theta_0, v), v, g, create_graph=True)
    assert close(grad, P.transpose(g))
    w = torch.randn(100)
    (grad_of_grad,) = torch.autograd.grad(grad, g, w)   # the backward is differentiable: ∂(Pᵀg)/∂g applied to w
    assert close(grad_of_grad, P(w))
    u = torch.randn(3190, requires_grad=True)
    (through_transpose,) = torch.autograd.grad(P.transpose(u), u, w)
    assert close(through_transpose, P(w))


@needs_kernel
@pytest.mark.parametrize("per_tensor", [False, True], ids=["one-vector", "one-vector-per-part"])
def test_the_point_is_theta_D_cut_into_parts_with_the_penalty_and_their_gradients(per_tensor):
    """`point` against the torch ops: parts that straddle blocks and share them, a part whose gradient is None
    (unused), penalised and unpenalised parts, one feature vector or one per part."""
    rows = [slice(0, 700), slice(700, 710), slice(710, 3000), slice(3000, 3190)]
    P, theta_0 = projection(3190, 100), torch.randn(3190)
    penalized, vectors = [True, False, True, False], [0, 1, 2, 3] if per_tensor else [0, 0, 0, 0]
    layout = fastfood_kernel.Layout(rows, vectors, penalized)
    weights = [torch.randn(r.stop - r.start) for r in rows]

    def objective(parts, squared_norm):   # part 1 takes no part: autograd hands the backward None for it
        used = [(w * part).sum() for i, (w, part) in enumerate(zip(weights, parts, strict=True)) if i != 1]
        return sum(used) + 0.3 * squared_norm

    features = torch.randn(len(set(vectors)), 100, requires_grad=True)
    parts, squared_norm = P.point(theta_0, features, layout)
    (gradient,) = torch.autograd.grad(objective(parts, squared_norm), features)
    with native.disabled():
        assert P.point(theta_0, features, layout) is None   # where the kernel is off, the network splits θ_D
        expected = [theta_0[r] + P._rows(features[v], r) for r, v in zip(rows, vectors, strict=True)]
        expected_norm = sum(part.square().sum() for part, flag in zip(expected, penalized, strict=True) if flag)
        (expected_gradient,) = torch.autograd.grad(objective(expected, expected_norm), features)
    assert all(close(part, reference) for part, reference in zip(parts, expected, strict=True))
    assert squared_norm.item() == pytest.approx(expected_norm.item(), rel=1e-6)
    assert close(gradient, expected_gradient)


def curves(result_points):
    return torch.tensor([p.value for p in result_points])


class Points:
    def __init__(self):
        self.points = []

    def __call__(self, points):
        self.points += points
        return False


def solo_curve(cfg: RunConfig):
    recorder = Points()
    result = train(cfg, load_dataset(cfg, None), recorder)
    return curves(recorder.points), result


@needs_kernel
@pytest.mark.parametrize("fields", [dict(augmentation="linear", d=60), dict(augmentation="power", d=40),
                                    dict(augmentation="rff", d=50), dict(augmentation="rff", d=50, rff_per_tensor=True),
                                    dict(augmentation="linear", d=60, use_theta0=False, weight_decay=1e-3,
                                         weight_decay_scope="kernels")],
                         ids=["linear", "power", "rff", "rff-per-tensor", "no-theta0-l2"])
def test_a_run_trains_the_same_with_the_kernel_as_with_the_torch_ops(fields):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = RunConfig(**{**TINY, **fields})
        kernel, kernel_result = solo_curve(cfg)
        with native.disabled():
            reference, reference_result = solo_curve(cfg)
    finally:
        torch.set_num_threads(threads)
    assert close(kernel, reference, 1e-5)
    assert kernel_result.metrics["test_acc"] == pytest.approx(reference_result.metrics["test_acc"], abs=1 / 256)


@needs_kernel
def test_a_batch_trains_the_same_with_the_kernel_as_with_the_torch_ops():
    cfgs = [RunConfig(**{**TINY, "seed": seed, "d": d, "augmentation": augmentation})
            for seed, d, augmentation in ((0, 60, "linear"), (1, 100, "linear"), (2, 40, "rff"))]
    splits = load_dataset(cfgs[0], None)

    def batch_curves():
        recorders = [Points() for _ in cfgs]
        train_batch(cfgs, splits, callbacks=recorders)
        return [curves(recorder.points) for recorder in recorders]

    kernel = batch_curves()
    with native.disabled():
        reference = batch_curves()
    assert all(close(a, b, 1e-5) for a, b in zip(kernel, reference, strict=True))


def _child(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


PROBE = """
    import json, logging, sys, torch
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from worker.subspace import fastfood_kernel, native
    native.configure(cache=sys.argv[1], compiler=sys.argv[2] if len(sys.argv) > 2 else None)
    from worker.subspace.projection import FastfoodProjection
    P = FastfoodProjection(3190, 100, [slice(0, 3190)], "unit_columns", 1.0, torch.Generator().manual_seed(0))
    v = torch.arange(100, dtype=torch.float32) / 100
    print(json.dumps({"available": fastfood_kernel.available(), "Pv": P(v).tolist()}))
"""


def test_without_a_compiler_the_projection_computes_with_torch_ops_after_one_warning(tmp_path):
    child = _child(PROBE, str(tmp_path / "cache"), str(tmp_path / "no-such-compiler"))
    assert child.returncode == 0, child.stderr
    answer = json.loads(child.stdout.strip().splitlines()[-1])
    assert answer["available"] is False
    warnings = [line for line in child.stderr.splitlines() if line.startswith("WARNING worker.subspace.native")]
    assert len(warnings) == 1 and "torch ops" in warnings[0]
    P = projection(3190, 100)
    with native.disabled():
        expected = P(torch.arange(100, dtype=torch.float32) / 100)
    assert torch.equal(torch.tensor(answer["Pv"]), expected)


@needs_kernel
def test_the_kernel_is_built_once_then_loaded_from_the_cache(tmp_path):
    first, second = _child(PROBE, str(tmp_path)), _child(PROBE, str(tmp_path))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "built the native kernel" in first.stderr and "built the native kernel" not in second.stderr
    assert len(list(tmp_path.glob("fastfood-*.so"))) == 1
    assert json.loads(first.stdout.splitlines()[-1])["available"] is True
    assert json.loads(first.stdout.splitlines()[-1])["Pv"] == json.loads(second.stdout.splitlines()[-1])["Pv"]
