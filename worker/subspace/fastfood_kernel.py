"""The fastfood product as one native CPU kernel: rows of P·x and Pᵀ·g, each block in one pass.

For K runs r with their own diagonals and permutations (or one set shared by K vectors),

    fastfood_rows(x, B, G, Pi, S, i0, i1)[r]       = rows i0…i1−1 of [V^r_1; …; V^r_n]·x_r
    fastfood_rows_t(g, B, G, Pi, S, i0, i1)[r]     = Σ_b V^r_bᵀ·(g_r placed at rows i0…i1−1, 0 elsewhere)

    V^r_b = S^r_b·H·G^r_b·Π^r_b·H·B^r_b      x (K, L); B, G, Pi (K or 1, n, L); S (K or 1, n)

the same products as `projection.FastfoodProjection._V` / `_Vt` computed with torch ops, which
make every step of the chain a pass over all n·L entries in memory: a multiply, two transforms of
r Kronecker-factor products each, a gather, a multiply, a scale — and zero-filled buffers for the
padding in the backward. Here each block's L floats stay in two cache-resident buffers from B_b·x
to the rows it writes (fastfood_kernel.c). On the development machine (MNIST-FC, D = 199,210, one
thread) one product takes 0.3–0.4 ms at any k from 100 to 1,500, against 1.1–1.6 ms for the torch
ops (4.5 ms at k = 100, L = 128, where the Kronecker factors are smallest).

Each is the other's derivative — the gradient of x ↦ V·x is g ↦ Vᵀ·g and the reverse — so
autograd and double backward pass through them. Eagerly they are torch.autograd.Functions; under
torch.compile the same kernels as torch custom operators (torch.library), which the compiler
traces as opaque calls. (The custom operators' own eager dispatch costs about 0.3 ms a training
step more than the Functions', a tenth of a small step.) CPU float32 tensors only.

The kernel is C, built for this CPU on first use and cached (`native`). Where it cannot be built or
loaded (no compiler, a read-only cache, an unknown platform) `available()` is False after one warning in
the log, and the projections compute with torch ops: the same numbers within float32 rounding (each
transform sums in another order: 1e-6 relative, tests/engine/test_fastfood_kernel.py).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from worker.subspace import native

SOURCE = Path(__file__).with_name("fastfood_kernel.c")

def load() -> bool:
    """Build (once per machine) and load the kernel; whether it is there. Called eagerly by the projections
    that use it, so that `available`, read inside a compiled step, is a plain lookup."""
    return native.library(SOURCE) is not None


def available() -> bool:
    """Whether the native kernel is loaded (`load`) and not switched off (`native.disabled`)."""
    return native.enabled() and native.loaded(SOURCE) is not None


def usable(L: int, *tensors: Tensor) -> bool:
    """Whether blocks of L rows and these tensors can go through the native kernel: CPU float32, L ≤ MAX_L
    (and the kernel available)."""
    return L <= MAX_L and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and available()


def _call(name: str, K: int, n: int, L: int, vector: Tensor, B: Tensor, G: Tensor, Pi: Tensor, S: Tensor,
          out: Tensor, row_start: int, row_stop: int, base: Tensor | None = None) -> None:
    """One kernel call over float32 / int32 CPU tensors; B, G, Pi, S with a leading 1 serve every vector."""
    if not load():
        raise RuntimeError("the native fastfood kernel is not available on this machine")
    library = native.loaded(SOURCE)
    shared = B.shape[0] == 1
    if not shared and B.shape[0] != K:
        raise ValueError(f"the fastfood tables hold {B.shape[0]} projections for {K} vectors")
    B, G, Pi, S = (t.contiguous() for t in (B, G, Pi, S))
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    tables = (pointer(vector.data_ptr()), pointer(B.data_ptr()), pointer(G.data_ptr()), pointer(Pi.data_ptr()),
              pointer(S.data_ptr()), size(int(shared)))
    if name == "idlab_fastfood_forward":   # with θ_0 (or nothing) added to the rows it writes
        base = None if base is None else base.contiguous()
        tables += (pointer(None if base is None else base.data_ptr()), size(0 if base is None else base.shape[-1]))
    _succeeded(name, L, getattr(library, name)(size(K), size(n), size(L), *tables, pointer(out.data_ptr()),
                                               size(row_start), size(row_stop)))


def _succeeded(name: str, L: int, status: int) -> None:
    """A kernel's status: 0, or it could not allocate its two buffers of L floats."""
    if status != 0:
        raise MemoryError(f"fastfood kernel {name}: could not allocate its buffers of {2 * L} floats")


#: The largest block the kernel's uint16 permutation indexes.
MAX_L = 1 << 16


def signs(B: Tensor) -> Tensor:
    """B (±1) as the kernel reads it: int8."""
    return B.to(torch.int8)


def permutation(Pi: Tensor) -> Tensor:
    """Π (0 … L−1, L ≤ MAX_L) as the kernel reads it: the uint16 bits, in an int16 tensor."""
    return torch.where(Pi >= 1 << 15, Pi - (1 << 16), Pi).to(torch.int16)


def _check(x: Tensor, B: Tensor, G: Tensor, Pi: Tensor, S: Tensor, row_start: int, row_stop: int) -> None:
    n, L = B.shape[-2:]
    if not 0 <= row_start <= row_stop <= n * L:
        raise ValueError(f"rows {row_start}…{row_stop} outside the {n}·{L} rows of the blocks")
    if L > MAX_L or (B.dtype, G.dtype, Pi.dtype, x.dtype) != (torch.int8, torch.float32, torch.int16, torch.float32):
        raise TypeError(f"the fastfood kernel takes blocks of L ≤ {MAX_L}, B as `signs`, float32 G, Π as "
                        "`permutation` and float32 vectors")


def _rows(x: Tensor, B: Tensor, G: Tensor, Pi: Tensor, S: Tensor, row_start: int, row_stop: int,
          base: Tensor | None) -> Tensor:
    _check(x, B, G, Pi, S, row_start, row_stop)
    K, (n, L) = x.shape[0], B.shape[-2:]
    if base is not None and (base.dtype != torch.float32 or base.shape[-1] < row_stop
                             or base.reshape(-1, base.shape[-1]).shape[0] != K):
        raise ValueError(f"base must be float32 (K = {K}, ≥ {row_stop}), got {tuple(base.shape)} {base.dtype}")
    out = x.new_empty(K, row_stop - row_start)
    _call("idlab_fastfood_forward", K, n, L, x.contiguous(), B, G, Pi, S, out, row_start, row_stop, base)
    return out


def _rows_t(g: Tensor, B: Tensor, G: Tensor, Pi: Tensor, S: Tensor, row_start: int, row_stop: int) -> Tensor:
    _check(g, B, G, Pi, S, row_start, row_stop)
    K, (n, L) = g.shape[0], B.shape[-2:]
    out = g.new_empty(K, L)
    _call("idlab_fastfood_backward", K, n, L, g.contiguous(), B, G, Pi, S, out, row_start, row_stop)
    return out


@torch.library.custom_op("idlab::fastfood_rows", mutates_args=(), device_types="cpu")
def _op_rows(x: Tensor, B: Tensor, G: Tensor, Pi: Tensor, S: Tensor, row_start: int, row_stop: int,
             base: Tensor | None = None) -> Tensor:
    return _rows(x, B, G, Pi, S, row_start, row_stop, base)


@torch.library.custom_op("idlab::fastfood_rows_t", mutates_args=(), device_types="cpu")
def _op_rows_t(g: Tensor, B: Tensor, G: Tensor, Pi: Tensor, S: Tensor, row_start: int, row_stop: int) -> Tensor:
    return _rows_t(g, B, G, Pi, S, row_start, row_stop)


@_op_rows.register_fake
def _(x, B, G, Pi, S, row_start, row_stop, base=None):
    return x.new_empty(x.shape[0], row_stop - row_start)


@_op_rows_t.register_fake
def _(g, B, G, Pi, S, row_start, row_stop):
    return g.new_empty(g.shape[0], B.shape[-1])


def _keep_tables(ctx, inputs, output):
    _, ctx.B, ctx.G, ctx.Pi, ctx.S, ctx.row_start, ctx.row_stop = inputs[:7]
    base = inputs[7] if len(inputs) > 7 else None
    ctx.base_shape = None if base is None else base.shape


def _rows_backward(ctx, grad):
    """∂/∂x = Vᵀ·grad; ∂/∂base = grad in the rows written (θ_0 is a buffer: needed only if a caller trains it)."""
    grad_x = fastfood_rows_t(grad, ctx.B, ctx.G, ctx.Pi, ctx.S, ctx.row_start, ctx.row_stop)
    grad_base = None
    if ctx.base_shape is not None and ctx.needs_input_grad[7]:
        grad_base = F.pad(grad, (ctx.row_start, ctx.base_shape[-1] - ctx.row_stop)).view(ctx.base_shape)
    return grad_x, None, None, None, None, None, None, grad_base


def _rows_t_backward(ctx, grad):
    return fastfood_rows(grad, ctx.B, ctx.G, ctx.Pi, ctx.S, ctx.row_start, ctx.row_stop), None, None, None, None, \
        None, None


_op_rows.register_autograd(_rows_backward, setup_context=_keep_tables)
_op_rows_t.register_autograd(_rows_t_backward, setup_context=_keep_tables)


class _Rows(torch.autograd.Function):
    """fastfood_rows, eagerly: base + V·x, backward Vᵀ·grad (and grad for a base that needs it)."""

    @staticmethod
    def forward(ctx, x, base, B, G, Pi, S, row_start, row_stop):
        _keep_tables(ctx, (x, B, G, Pi, S, row_start, row_stop, base), None)
        return _rows(x, B, G, Pi, S, row_start, row_stop, base)

    @staticmethod
    def backward(ctx, grad):
        grad_x, *_, grad_base = _rows_backward(ctx, grad)
        return grad_x, grad_base, None, None, None, None, None, None


class _RowsT(torch.autograd.Function):
    """fastfood_rows_t, eagerly: Vᵀ·g, backward V·grad."""

    @staticmethod
    def forward(ctx, g, B, G, Pi, S, row_start, row_stop):
        _keep_tables(ctx, (g, B, G, Pi, S, row_start, row_stop), None)
        return _rows_t(g, B, G, Pi, S, row_start, row_stop)

    @staticmethod
    def backward(ctx, grad):
        return _rows_t_backward(ctx, grad)


def fastfood_rows(x: Tensor, B: Tensor, G: Tensor, Pi: Tensor, S: Tensor, row_start: int, row_stop: int,
                  base: Tensor | None = None) -> Tensor:
    """Rows row_start…row_stop−1 of base_r + P^r·x_r for every r: x (K, L) → (K, row_stop − row_start).

    B, G, Pi, S: `signs`, float32, `permutation`, float32; (K or 1, n, L) and (K or 1, n).
    base: (K, ≥ row_stop), or (≥ row_stop,) for K = 1 — θ_0, added in the same pass; None adds nothing.
    """
    if torch.compiler.is_compiling():
        return _op_rows(x, B, G, Pi, S, row_start, row_stop, base)
    return _Rows.apply(x, base, B, G, Pi, S, row_start, row_stop)


def fastfood_rows_t(g: Tensor, B: Tensor, G: Tensor, Pi: Tensor, S: Tensor, row_start: int, row_stop: int) -> Tensor:
    """P^r[rows]ᵀ·g_r for every r: g (K, row_stop − row_start) → (K, L)."""
    if torch.compiler.is_compiling():
        return _op_rows_t(g, B, G, Pi, S, row_start, row_stop)
    return _RowsT.apply(g, B, G, Pi, S, row_start, row_stop)


class Layout:
    """How `point` cuts θ_D: part p is rows bounds[p]…bounds[p+1]−1, computed from feature vector vectors[p]
    (one shared vector, or one per weight tensor), its squares summed where penalized[p]; held as the C arrays
    the kernel reads, made once per network."""

    def __init__(self, row_slices: list[slice], vectors: list[int], penalized: list[bool]):
        n = len(row_slices)
        if not n or len(vectors) != n or len(penalized) != n:
            raise ValueError("a layout needs one vector index and one penalty flag per part")
        if any(rows.stop != after.start for rows, after in zip(row_slices[:-1], row_slices[1:], strict=True)):
            raise ValueError("the parts must be consecutive rows")
        self.sizes = [rows.stop - rows.start for rows in row_slices]
        self.rows = row_slices[-1].stop
        self.n_vectors = max(vectors) + 1
        self.bounds = (ctypes.c_int64 * (n + 1))(*[rows.start for rows in row_slices], self.rows)
        self.vectors = (ctypes.c_int64 * n)(*vectors)
        self.penalized = (ctypes.c_uint8 * n)(*[int(flag) for flag in penalized])


def _pointers(tensors) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*[None if t is None else t.data_ptr() for t in tensors])


class _Point(torch.autograd.Function):
    """θ_D's parts and their penalised squared norm (`point`); backward Pᵀ·(∂parts + 2·∂norm·θ_D[penalised])."""

    @staticmethod
    def forward(ctx, x, base, B, G, Pi, S, layout):
        ctx.set_materialize_grads(False)
        n, L = B.shape
        parts = [x.new_empty(size) for size in layout.sizes]
        squares = (ctypes.c_double * len(parts))()
        pointer, size = ctypes.c_void_p, ctypes.c_int64
        _succeeded("idlab_fastfood_point", L, native.loaded(SOURCE).idlab_fastfood_point(
            size(n), size(L), pointer(x.data_ptr()), pointer(B.data_ptr()), pointer(G.data_ptr()),
            pointer(Pi.data_ptr()), pointer(S.data_ptr()), pointer(None if base is None else base.data_ptr()),
            size(len(parts)), layout.bounds, layout.vectors, layout.penalized, _pointers(parts), squares))
        ctx.layout, ctx.tables, ctx.x_shape = layout, (B, G, Pi, S), x.shape
        ctx.save_for_backward(*parts)
        return (*parts, x.new_tensor(sum(squares)))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        *grad_parts, grad_norm = grads
        parts, layout, (B, G, Pi, S) = ctx.saved_tensors, ctx.layout, ctx.tables
        grad_parts = [None if g is None else g.reshape(-1).contiguous() for g in grad_parts]
        n, L = B.shape
        grad_x = parts[0].new_empty(ctx.x_shape)
        pointer, size = ctypes.c_void_p, ctypes.c_int64
        _succeeded("idlab_fastfood_point_t", L, native.loaded(SOURCE).idlab_fastfood_point_t(
            size(n), size(L), pointer(B.data_ptr()), pointer(G.data_ptr()), pointer(Pi.data_ptr()),
            pointer(S.data_ptr()), size(len(parts)), layout.bounds, layout.vectors, layout.penalized,
            _pointers(grad_parts), _pointers(parts), ctypes.c_float(0.0 if grad_norm is None else 2 * float(grad_norm)),
            size(layout.n_vectors), pointer(grad_x.data_ptr())))
        return grad_x, None, None, None, None, None, None


def point(x: Tensor, base: Tensor | None, B: Tensor, G: Tensor, Pi: Tensor, S: Tensor, layout: Layout,
          ) -> tuple[tuple[Tensor, ...], Tensor]:
    """θ_D = base + P·x_v cut into the layout's parts, and Σ_{p penalised} ‖part_p‖², in one pass per block.

        part_p = base[rows_p] + (P·x_{v_p})[rows_p]        x (V, L): the feature vectors, zero-padded to L

    One projection: B, G, Pi, S as `signs`, float32, `permutation`, float32, (n, L) and (n,). The parts are
    separate tensors, so autograd hands their gradients to the backward as they are, which reads them in place
    (no concatenation into a D-vector), adding the penalty's gradient 2·λ·θ_D[rows_p] in the same pass. base
    (θ_0) is not differentiated. Eager only: the training step's fast path (`SubspaceNetwork.point`).
    """
    n, L = B.shape[-2:]
    if (x.dim() != 2 or x.shape != (layout.n_vectors, L) or x.dtype != torch.float32
            or (base is not None and (base.shape != (layout.rows,) or base.requires_grad)) or layout.rows > n * L):
        raise ValueError(f"fastfood point: x must be ({layout.n_vectors}, {L}) float32 and base ({layout.rows},) "
                         f"without gradient, got {tuple(x.shape)} and {None if base is None else tuple(base.shape)}")
    _check(x, B, G, Pi, S, 0, layout.rows)
    if not load():
        raise RuntimeError("the native fastfood kernel is not available on this machine")
    tables = tuple(t.contiguous() for t in (B, G, Pi, S))
    *parts, squared_norm = _Point.apply(x.contiguous(), None if base is None else base.contiguous(), *tables, layout)
    return tuple(parts), squared_norm
