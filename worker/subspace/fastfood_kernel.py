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

The kernel is C, built on first use with the machine's C compiler (cc, gcc or clang on PATH, or
the one `configure` names: the setting IDLAB_C_COMPILER) for this CPU (-O3 -march=native) into a
cache folder (~/.cache/idlab/kernels, or IDLAB_KERNEL_CACHE_DIR), keyed by the source, the compiler
and the CPU, so a sweep's processes build it once (about a second). Where it cannot be
built or loaded (no compiler, a read-only cache, an unknown platform) `available()` is False after
one warning in the log, and the projections compute with torch ops: the same numbers within float32
rounding (each transform sums in another order: 1e-6 relative, tests/engine/test_fastfood_kernel.py).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fastfood_kernel.c")
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=c11")

_enabled = True
_loaded: list = []   # [the library, or None where it cannot be had], once looked for (`load`)


def load() -> bool:
    """Build (once per machine) and load the kernel; whether it is there. Called eagerly by the projections
    that use it, so that `available`, read inside a compiled step, is a plain lookup."""
    if not _loaded:
        _loaded.append(_library())
    return _loaded[0] is not None


def available() -> bool:
    """Whether the native kernel is loaded (`load`) and not switched off by `disabled`."""
    return _enabled and bool(_loaded) and _loaded[0] is not None


@contextmanager
def disabled():
    """Compute with torch ops inside the block, as on a machine without a C compiler."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def usable(L: int, *tensors: Tensor) -> bool:
    """Whether blocks of L rows and these tensors can go through the native kernel: CPU float32, L ≤ MAX_L
    (and the kernel available)."""
    return L <= MAX_L and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and available()


_where: dict[str, str | Path | None] = {"cache": None, "compiler": None}


def configure(cache: Path | str | None = None, compiler: str | None = None) -> None:
    """Where the kernel is cached and which C compiler builds it (None: the defaults); before its first use."""
    _where.update(cache=Path(cache) if cache else None, compiler=compiler or None)
    _loaded.clear()


def cache_folder() -> Path:
    return _where["cache"] or Path.home() / ".cache" / "idlab" / "kernels"


def _library() -> ctypes.CDLL | None:
    compiler = _where["compiler"] or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        log.warning("fastfood: no C compiler (cc, gcc or clang, or IDLAB_C_COMPILER) to build the native kernel; "
                    "computing with torch ops (slower, same results)")
        return None
    try:
        return ctypes.CDLL(str(_build(compiler)))
    except (OSError, subprocess.SubprocessError) as problem:
        log.warning("fastfood: the native kernel could not be built or loaded (%s); computing with torch ops "
                    "(slower, same results)", str(problem)[-300:] or type(problem).__name__)
        return None


def _build(compiler: str) -> Path:
    """The shared library for this source, compiler and CPU: built once, then found in the cache."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), compiler, version, " ".join(FLAGS), platform.machine(),
                                     _cpu_flags()]).encode()).hexdigest()[:16]
    target = cache_folder() / f"fastfood-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as folder:   # built aside, then moved in atomically
        built = Path(folder) / target.name
        result = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built)], capture_output=True, text=True,
                                timeout=120)
        if result.returncode != 0:
            raise OSError(f"{compiler} failed: {result.stderr.strip() or result.stdout.strip()}")
        os.replace(built, target)
    log.info("fastfood: built the native kernel %s", target)
    return target


def _cpu_flags() -> str:
    """What -march=native compiles for: the CPU's model and feature flags (Linux), else the processor name."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags", "Features"))}))


def _call(name: str, K: int, n: int, L: int, vector: Tensor, B: Tensor, G: Tensor, Pi: Tensor, S: Tensor,
          out: Tensor, row_start: int, row_stop: int, base: Tensor | None = None) -> None:
    """One kernel call over float32 / int32 CPU tensors; B, G, Pi, S with a leading 1 serve every vector."""
    if not load():
        raise RuntimeError("the native fastfood kernel is not available on this machine")
    library = _loaded[0]
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
    status = getattr(library, name)(size(K), size(n), size(L), *tables, pointer(out.data_ptr()), size(row_start),
                                    size(row_stop))
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
