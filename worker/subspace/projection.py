"""The projection P ∈ R^{D×k} of subspace training:  θ_D = θ_0 + P·φ(θ_d)   (Li et al. 2018).

Three ways to compute P·v, with the same statistics — entries of mean 0, and under
normalize_p = "unit_columns" columns of unit norm, ‖P e_j‖ = 1:

    dense     the explicit D×k matrix                            memory D·k     time O(D·k)
    sparse    density ρ_t = 1/√D_t in the D_t rows of each weight tensor t (Li et al.):
              ~k·Σ_t √D_t non-zeros                       memory O(k·Σ√D_t)  time O(k·Σ√D_t)
              (sparse_scope "global": ρ = 1/√D over all of P, ~k·√D non-zeros)
    fastfood  stacked blocks S·H·G·Π·H·B, never materialised     memory O(D)    time O(D log k)

Entries (p_init; s = p_scale, their standard deviation before normalisation):

    normal        N(0, s²)
    uniform       U(−√3·s, √3·s)
    rademacher    ±s
    sparse        ±s/√ρ with probability ρ = 1/√D, else 0
    orthogonal    Q·s√D, Q ∈ R^{D×k} with orthonormal columns (Haar; dense only, k ≤ D)
    from_run:id   column block b ~ N(μ_b, σ_b²), σ_b = from_run_stats[b]["std"], and μ_b = 0
                  (from_run_mean "zero", Lam & Lee) or from_run_stats[b]["mean"] ("trained")

The sparse projection draws the non-zeros of tensor t from the same law with standard deviation
s/√ρ_t, so that every entry of P, zero or not, still has variance s²; from_run gives its
non-zeros N(μ_b, σ_b²) directly (the statistics of a run are those of its stored values,
`column_entries`). Li et al. drew one very sparse projection per layer and then normalised
the columns over all D: with one density 1/√D for the whole network, most rows of a small
tensor (every bias) would have no non-zero at all, and so never move.

Normalisation (normalize_p), with rows_t the rows of weight tensor t (`row_slices`):

    unit_columns  P_ij ← P_ij / ‖P_·j‖                              (Li et al.)
    none          P as drawn
    block_sum     P_ij ← P_ij / Σ_{i'∈rows_t} P_i'j  for i ∈ rows_t   (Lam & Lee 2020)

block_sum divides by sums that can be arbitrarily close to 0 (and are exactly 0 for a column
with no non-zero in a block, or for ±1 entries that cancel): such exact-zero sums are left
undivided.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from idlab.config import RunConfig
from worker.subspace import fastfood_kernel
from worker.subspace.hadamard import fwht

BLOCK_SUM_WARNING = ("normalize_p 'block_sum' divides each column block of P by its sum, which can be near "
                     "zero: kept for faithful reproduction of Lam & Lee; expect unstable runs")


class Projection(nn.Module):
    """P ∈ R^{D×k}: v ↦ P·v, differentiable w.r.t. v (and P when it is trained)."""

    def __init__(self, D: int, k: int):
        super().__init__()
        self.D, self.k = D, k

    def forward(self, v: Tensor) -> Tensor:
        """P·v: (k,) → (D,)."""
        raise NotImplementedError

    def forward_blocks(self, vs: list[Tensor], row_slices: list[slice]) -> Tensor:
        """concat_t (P·vs[t])[rows_t]: (D,), the row slices partitioning range(D) in order.

        Generic: T full products. Dense, sparse and fastfood override it with row-sliced ones.
        """
        return torch.cat([self(v)[..., rows] for v, rows in zip(vs, row_slices, strict=True)], -1)

    def affine(self, base: Tensor, v: Tensor) -> Tensor:
        """base + P·v: (D,), (k,) → (D,) — θ_D = θ_0 + P·φ(θ_d)."""
        return base + self(v)

    def affine_blocks(self, base: Tensor, vs: list[Tensor], row_slices: list[slice]) -> Tensor:
        """base + `forward_blocks`(vs, row_slices): θ_D with one feature vector per weight tensor."""
        return base + self.forward_blocks(vs, row_slices)

    def point(self, base: Tensor, features: Tensor, layout: fastfood_kernel.Layout,
              ) -> tuple[tuple[Tensor, ...], Tensor] | None:
        """θ_D = base + P·φ cut into the layout's parts with their penalised squared norm, in one fused pass;
        None where the projection has none (the network then splits `affine`'s θ_D). Fastfood has one."""
        return None

    def transpose(self, u: Tensor) -> Tensor:
        """Pᵀ·u: (D,) → (k,)."""
        raise NotImplementedError

    def materialize(self) -> Tensor:
        """The explicit D×k matrix (a copy; for tests and small sizes)."""
        raise NotImplementedError

    def column_entries(self, columns: slice) -> Tensor | None:
        """The stored values of P in these columns (dense: all; sparse: the non-zeros; fastfood: None)."""
        return None

    def extra_repr(self) -> str:
        return f"D={self.D}, k={self.k}"


# ---- dense ---------------------------------------------------------------------------------


class DenseProjection(Projection):
    """P stored explicitly: a buffer, or an nn.Parameter when P is trained (train_p)."""

    def __init__(self, P: Tensor, trainable: bool = False):
        super().__init__(*P.shape)
        if trainable:
            self.P = nn.Parameter(P)
        else:
            self.register_buffer("P", P)

    def forward(self, v: Tensor) -> Tensor:
        return self.P @ v

    def forward_blocks(self, vs: list[Tensor], row_slices: list[slice]) -> Tensor:
        return torch.cat([self.P[rows] @ v for v, rows in zip(vs, row_slices, strict=True)])

    def transpose(self, u: Tensor) -> Tensor:
        return self.P.T @ u

    def materialize(self) -> Tensor:
        return self.P.detach().clone()

    def column_entries(self, columns: slice) -> Tensor:
        return self.P.detach()[:, columns].flatten().clone()


# ---- sparse --------------------------------------------------------------------------------


class _SparseMatVec(torch.autograd.Function):
    """y = A·x for a CSR matrix A given with Aᵀ (also CSR): the gradient Aᵀ·g is one more CSR product."""

    @staticmethod
    def forward(ctx, x: Tensor, A: Tensor, At: Tensor) -> Tensor:
        ctx.A, ctx.At = A, At
        return A @ x

    @staticmethod
    def backward(ctx, g: Tensor):
        return _SparseMatVec.apply(g, ctx.At, ctx.A), None, None


class SparseProjection(Projection):
    """A very sparse random P (Li et al.): density 1/√D_t in the rows of each weight tensor t (`_sparse_positions`).

    Stored as the CSR matrix of the block-stacked P̃ ∈ R^{D×Tk} together with its transpose,

        P̃_{i, t(i)·k + j} = P_ij,       t(i) = the row block (weight tensor) of row i,

    so that  P·v = P̃·(v, v, …, v),  concat_t (P·v_t)[rows_t] = P̃·(v_1, …, v_T),
             Pᵀ·u = Σ_t (P̃ᵀ·u)_t,
    and each product and its backward (P̃ᵀ·g) is one CSR × vector product: no transpose or
    coalesce at run time. The columns of P̃ are the (block, column) pairs block_sum normalises.
    """

    def __init__(self, D: int, k: int, row_slices: list[slice], rows: Tensor, cols: Tensor, values: Tensor):
        """rows, cols: the positions of the non-zeros, sorted row-major and distinct; values: P there."""
        super().__init__(D, k)
        self.row_slices, T = row_slices, len(row_slices)
        self.density = len(values) / (D * k)
        stacked = _row_block(row_slices, D)[rows] * k + cols  # t(i)·k + j
        order = torch.argsort(stacked, stable=True)  # column-major order: the CSR of P̃ᵀ
        index = torch.int32 if max(D, T * k, len(values)) < 2**31 else torch.int64
        self.register_buffer("crow", _crow(rows, D).to(index))
        self.register_buffer("col", stacked.to(index))
        self.register_buffer("values", values)
        self.register_buffer("crow_t", _crow(stacked, T * k).to(index))
        self.register_buffer("col_t", rows[order].to(index))
        self.register_buffer("values_t", values[order])
        with warnings.catch_warnings():  # torch warns once per process that CSR is in beta
            warnings.simplefilter("ignore")
            self._csr()

    def _csr(self) -> tuple[Tensor, Tensor]:
        """P̃ and P̃ᵀ as torch CSR tensors (views of the buffers, wherever they now live)."""
        Tk = len(self.row_slices) * self.k
        P = torch.sparse_csr_tensor(self.crow, self.col, self.values, (self.D, Tk), check_invariants=False)
        Pt = torch.sparse_csr_tensor(self.crow_t, self.col_t, self.values_t, (Tk, self.D), check_invariants=False)
        return P, Pt

    def forward(self, v: Tensor) -> Tensor:
        return _SparseMatVec.apply(v.repeat(len(self.row_slices)), *self._csr())

    def forward_blocks(self, vs: list[Tensor], row_slices: list[slice]) -> Tensor:
        if row_slices != self.row_slices:
            return super().forward_blocks(vs, row_slices)
        return _SparseMatVec.apply(torch.cat(vs), *self._csr())

    def transpose(self, u: Tensor) -> Tensor:
        P, Pt = self._csr()
        return _SparseMatVec.apply(u, Pt, P).view(len(self.row_slices), self.k).sum(0)

    def materialize(self) -> Tensor:
        P = torch.zeros(self.D, self.k, dtype=self.values.dtype, device=self.values.device)
        rows = torch.repeat_interleave(torch.arange(self.D, device=P.device), self.crow.diff().long())
        P[rows, self.col.long() % self.k] = self.values
        return P

    def column_entries(self, columns: slice) -> Tensor:
        start, stop, _ = columns.indices(self.k)
        j = self.col % self.k
        return self.values[(j >= start) & (j < stop)]


# ---- fastfood ------------------------------------------------------------------------------


class FastfoodProjection(Projection):
    """P never stored: the first D rows of n stacked L×L blocks applied to v padded to L (Le et al. 2013).

        P·v = rows 0…D−1 of [V_1; …; V_n]·(v, 0),     V_b = S_b·H·G_b·Π_b·H·B_b,
        L = 2^⌈log2 k⌉,  n = ⌈D/L⌉,

    H the unnormalised Walsh–Hadamard matrix (H·H = L·I), B_b = diag(±1), Π_b a permutation,
    G_b = diag(N(0, 1)), all drawn independently per block and applied to the n blocks as one
    (n, L) tensor: time O(n·L·log L) = O(D log k), memory O(D). (Li et al. use one block of size
    2^⌈log2 D⌉; this is the stacked-blocks variant, which keeps the transforms at size ~k.)

    Column norms. H·B_b·e_j is ±(column j of H): entries ±1, kept ±1 by Π_b, turned into ±G_bi
    by G_b, and ‖H·x‖² = L·‖x‖², so exactly

        ‖V_b e_j‖² = S_b²·L·Σ_i G_bi²        for every column j.

    normalize_p:
      unit_columns  S_b = 1/√(D·Σ_i G_bi²): each full block contributes L/D to ‖P e_j‖², the last
                    block's r = D − (n−1)·L rows r/D in expectation, so ‖P e_j‖ = 1 exactly up to
                    the last block's share.
      none          S_b = s/√(Σ_i G_bi²): over a full block every column's mean squared entry is
                    exactly s² (s = p_scale), the entries ≈ N(0, s²); the same P as unit_columns
                    times s·√D.
      block_sum     S_b as for none, then per row block t and column j the column scale
                    c_tj = 1/(Pᵀ·1_t)_j (T transposes at build), applied inside the products:
                    P·v = concat_t (P·(c_t ⊙ v))[rows_t] — T transforms, each over only the blocks
                    that rows_t spans (≈ one full transform plus T boundary blocks).
    """

    def __init__(self, D: int, k: int, row_slices: list[slice], normalize_p: str, p_scale: float,
                 generator: torch.Generator):
        super().__init__(D, k)
        self.row_slices = row_slices
        self.L = L = 1 << (k - 1).bit_length()
        n = -(-D // L)
        Pi = torch.argsort(torch.rand(n, L, generator=generator, dtype=torch.float64), dim=-1)
        self.register_buffer("B", _signs((n, L), generator))
        self.register_buffer("G", torch.randn(n, L, generator=generator))
        self.register_buffer("Pi", Pi)
        self.register_buffer("Pi_inv", torch.argsort(Pi, dim=-1))
        sum_G2 = self.G.square().sum(-1, keepdim=True)
        S = (D * sum_G2).rsqrt() if normalize_p == "unit_columns" else p_scale * sum_G2.rsqrt()
        self.register_buffer("S", S)
        self.register_buffer("c", None)  # block_sum's column scales c_t, (T, k)
        # B and Π as the native kernel reads them (int8, int16): derived, so not saved with the module.
        self.register_buffer("B_signs", None, persistent=False)
        self.register_buffer("Pi_bits", None, persistent=False)
        if L <= fastfood_kernel.MAX_L and fastfood_kernel.load():
            self.B_signs, self.Pi_bits = fastfood_kernel.signs(self.B), fastfood_kernel.permutation(Pi)
        if normalize_p == "block_sum":
            sums = torch.stack([self._transpose_rows(torch.ones(r.stop - r.start), r) for r in row_slices])
            self.register_buffer("c", _reciprocal(sums))

    def _V(self, x: Tensor, blocks: slice) -> Tensor:
        """V_b·x for b in blocks: (…, L) → (…, n_blocks, L)."""
        y = fwht(self.B[blocks] * x.unsqueeze(-2))  # H·B_b·x
        Pi = self.Pi[blocks]
        y = torch.gather(y, -1, Pi.expand(y.shape))  # (Π_b y)_i = y_{Π_b(i)}
        return self.S[blocks] * fwht(self.G[blocks] * y)  # S_b·H·G_b·…

    def _Vt(self, y: Tensor, blocks: slice) -> Tensor:
        """Σ_b V_bᵀ·y_b, V_bᵀ = B_b·H·Π_bᵀ·G_b·H·S_b: (…, n_blocks, L) → (…, L)."""
        z = self.G[blocks] * fwht(self.S[blocks] * y)
        Pi_inv = self.Pi_inv[blocks]
        z = torch.gather(z, -1, Pi_inv.expand(z.shape))  # Π_bᵀ = Π_b⁻¹
        return (self.B[blocks] * fwht(z)).sum(-2)

    def _blocks_of(self, rows: slice) -> tuple[int, int]:
        return rows.start // self.L, -(-rows.stop // self.L)

    def _rows(self, v: Tensor, rows: slice) -> Tensor:
        """(P·v)[rows], transforming only the blocks these rows fall in: (…, k) → (…, |rows|)."""
        x = F.pad(v, (0, self.L - self.k))
        if self._native(x):
            y = fastfood_kernel.fastfood_rows(x.reshape(-1, self.L), *self.tables(), rows.start, rows.stop)
            return y.view(*v.shape[:-1], rows.stop - rows.start)
        b0, b1 = self._blocks_of(rows)
        y = self._V(x, slice(b0, b1)).flatten(-2)
        return y[..., rows.start - b0 * self.L: rows.stop - b0 * self.L]

    def _transpose_rows(self, u: Tensor, rows: slice) -> Tensor:
        """P[rows]ᵀ·u: (…, |rows|) → (…, k)."""
        if self._native(u):
            z = fastfood_kernel.fastfood_rows_t(u.reshape(-1, u.shape[-1]), *self.tables(), rows.start, rows.stop)
            return z.view(*u.shape[:-1], self.L)[..., :self.k]
        b0, b1 = self._blocks_of(rows)
        y = F.pad(u, (rows.start - b0 * self.L, b1 * self.L - rows.stop)).unflatten(-1, (b1 - b0, self.L))
        return self._Vt(y, slice(b0, b1))[..., :self.k]

    def _native(self, *tensors: Tensor) -> bool:
        """Whether the products with these tensors go through the native kernel (`fastfood_kernel.usable`)."""
        return self.B_signs is not None and fastfood_kernel.usable(self.L, *tensors, self.G)

    def tables(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """B, G, Π and S as the native kernel reads them (`fastfood_kernel.signs`, `permutation`): (1, n, L) ×3
        and (1, n)."""
        return self.B_signs.unsqueeze(0), self.G.unsqueeze(0), self.Pi_bits.unsqueeze(0), self.S.view(1, -1)

    def forward(self, v: Tensor) -> Tensor:
        if self.c is None:
            return self._rows(v, slice(0, self.D))
        return self.forward_blocks([v] * len(self.row_slices), self.row_slices)

    def forward_blocks(self, vs: list[Tensor], row_slices: list[slice]) -> Tensor:
        if self.c is None:
            return torch.cat([self._rows(v, rows) for v, rows in zip(vs, row_slices, strict=True)], -1)
        if row_slices != self.row_slices:
            return super().forward_blocks(vs, row_slices)
        return torch.cat([self._rows(c * v, rows) for c, v, rows in zip(self.c, vs, row_slices, strict=True)], -1)

    def affine(self, base: Tensor, v: Tensor) -> Tensor:
        """base + P·v, the addition made in the native kernel's pass over the rows where it runs."""
        if self.c is None and v.dim() == 1 and self._native(v, base):
            return self._affine_rows(base, v, slice(0, self.D))
        return base + self(v)

    def affine_blocks(self, base: Tensor, vs: list[Tensor], row_slices: list[slice]) -> Tensor:
        """base + concat_t (P·vs[t])[rows_t], base added in the kernel's pass over each row block where it runs."""
        if self.c is None and self._native(base, *vs):
            return torch.cat([self._affine_rows(base, v, rows) for v, rows in zip(vs, row_slices, strict=True)])
        return base + self.forward_blocks(vs, row_slices)

    def point(self, base: Tensor, features: Tensor, layout: fastfood_kernel.Layout,
              ) -> tuple[tuple[Tensor, ...], Tensor] | None:
        """θ_D = base + P·φ cut into the layout's parts, with their penalised squared norm, through the native
        kernel in one pass (`fastfood_kernel.point`): features (T, k), one row per layout vector. None where
        the kernel does not apply: block_sum's column scales, another device or dtype, a base that is trained,
        under torch.compile (which traces `affine`)."""
        if (self.c is not None or torch.compiler.is_compiling() or base.requires_grad
                or not self._native(features, base)):
            return None
        x = F.pad(features, (0, self.L - self.k))
        return fastfood_kernel.point(x, base, self.B_signs, self.G, self.Pi_bits, self.S.view(-1), layout)

    def _affine_rows(self, base: Tensor, v: Tensor, rows: slice) -> Tensor:
        """(base + P·v)[rows] through the native kernel: (D,), (k,) → (|rows|,)."""
        x = F.pad(v, (0, self.L - self.k)).view(1, self.L)
        return fastfood_kernel.fastfood_rows(x, *self.tables(), rows.start, rows.stop, base).view(-1)

    def transpose(self, u: Tensor) -> Tensor:
        if self.c is None:
            return self._transpose_rows(u, slice(0, self.D))
        return sum(c * self._transpose_rows(u[..., rows], rows)
                   for c, rows in zip(self.c, self.row_slices, strict=True))

    def materialize(self) -> Tensor:
        with torch.no_grad():  # column j is P·e_j: all k columns as one batch
            return self(torch.eye(self.k, device=self.G.device)).T.contiguous()

    def extra_repr(self) -> str:
        return f"D={self.D}, k={self.k}, L={self.L}, blocks={self.G.shape[0]}"


# ---- construction --------------------------------------------------------------------------


def build_projection(config: RunConfig, row_slices: list[slice], generator: torch.Generator,
                     from_run_stats: dict[str, dict] | None = None, device: torch.device | str = "cpu") -> Projection:
    """The run's P, drawn on CPU from `generator` (same seed, same P) and moved to `device`.

    row_slices: the rows of each parameter tensor within θ_D, in order (a partition of range(D)).
    from_run_stats: {column block name: {"mean": μ_b, "std": σ_b}} for p_init "from_run:<id>".
    """
    D, k, kind = config.D, config.k, config.projection
    row_slices = _check_partition(row_slices, D)
    if config.train_p and kind != "dense":
        raise ValueError(f"train_p needs projection 'dense', got {kind!r}")
    if config.from_run_id is not None and from_run_stats is None:
        raise ValueError(f"p_init {config.p_init!r} needs the statistics of that run (from_run_stats)")
    if config.normalize_p == "block_sum":
        warnings.warn(BLOCK_SUM_WARNING, stacklevel=2)
    if kind == "dense":
        P = _dense_entries(config, D, k, generator, from_run_stats)
        P = _normalize_dense(P, config.normalize_p, row_slices)
        projection: Projection = DenseProjection(P, trainable=config.train_p)
    elif kind == "sparse":
        projection = _build_sparse(config, D, k, row_slices, generator, from_run_stats)
    elif kind == "fastfood":
        if config.p_init != "normal":
            raise ValueError(f"fastfood has its own structure and takes p_init 'normal' only, got {config.p_init!r}")
        projection = FastfoodProjection(D, k, row_slices, config.normalize_p, config.p_scale, generator)
    else:
        raise ValueError(f"unknown projection {kind!r}")
    return projection.to(device)


def _dense_entries(config: RunConfig, D: int, k: int, generator: torch.Generator,
                   from_run_stats: dict[str, dict] | None) -> Tensor:
    s = config.p_scale
    if config.from_run_id is not None:
        return _from_run(config, from_run_stats, torch.arange(k).expand(D, k), generator)
    if config.p_init == "orthogonal":
        if k > D:
            raise ValueError(f"p_init 'orthogonal' needs k ≤ D, got k = {k} > D = {D}")
        Q, R = torch.linalg.qr(torch.randn(D, k, generator=generator))
        return Q * R.diagonal().sign() * (s * math.sqrt(D))  # sign fix: Q Haar-distributed
    return _draw(config.p_init, s, (D, k), generator, density=D ** -0.5)


def _normalize_dense(P: Tensor, normalize_p: str, row_slices: list[slice]) -> Tensor:
    if normalize_p == "unit_columns":  # in place: a dense P can be most of the memory there is
        return P.div_(P.norm(dim=0).clamp_min(torch.finfo(P.dtype).tiny))
    if normalize_p == "block_sum":
        return torch.cat([P[rows] * _reciprocal(P[rows].sum(0)) for rows in row_slices])
    return P


def _sparse_positions(D: int, k: int, row_slices: list[slice], scope: str,
                      generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Positions (rows, cols) of a sparse P's non-zeros, sorted row-major, and each one's 1/√ρ.

    per_tensor: in the D_t × k block of tensor t, round(ρ_t·D_t·k) positions with ρ_t = 1/√D_t;
    global:     in all of D × k, round(ρ·D·k) positions with ρ = 1/√D.
    Positions are drawn uniformly and duplicates merged.
    """
    spans = row_slices if scope == "per_tensor" else [slice(0, D)]
    rows, cols, counts, inverse_sqrt_density = [], [], [], []
    for span in spans:
        size = span.stop - span.start
        density = size ** -0.5
        flat = torch.randint(0, size * k, (max(1, round(density * size * k)),), generator=generator).unique()
        rows.append(span.start + flat // k)
        cols.append(flat % k)
        counts.append(len(flat))
        inverse_sqrt_density.append(density ** -0.5)
    scale = torch.repeat_interleave(torch.tensor(inverse_sqrt_density, dtype=torch.float32), torch.tensor(counts))
    return torch.cat(rows), torch.cat(cols), scale


def _build_sparse(config: RunConfig, D: int, k: int, row_slices: list[slice], generator: torch.Generator,
                  from_run_stats: dict[str, dict] | None) -> SparseProjection:
    """~k·Σ_t √D_t positions (or ~k·√D, sparse_scope global), values with p_init's law, then normalised."""
    if config.p_init == "orthogonal":
        raise ValueError("p_init 'orthogonal' needs projection 'dense'")
    rows, cols, inverse_sqrt_density = _sparse_positions(D, k, row_slices, config.sparse_scope, generator)
    if config.from_run_id is not None:
        values = _from_run(config, from_run_stats, cols, generator)
    else:  # standard deviation s/√ρ_t, so that every entry of P, zero or not, has variance s²
        law = "rademacher" if config.p_init == "sparse" else config.p_init
        values = _draw(law, config.p_scale, cols.shape, generator, density=1.0).mul_(inverse_sqrt_density)
    if config.normalize_p == "unit_columns":  # ‖P_·j‖² = Σ of the squared non-zeros of column j
        norm2 = torch.zeros(k).index_add_(0, cols, values.square())
        values = values * norm2.clamp_min(torch.finfo(norm2.dtype).tiny).rsqrt()[cols]
    elif config.normalize_p == "block_sum":  # Σ_{i∈rows_t} P_ij, indexed by t·k + j
        stacked = _row_block(row_slices, D)[rows] * k + cols
        sums = torch.zeros(len(row_slices) * k).index_add_(0, stacked, values)
        values = values * _reciprocal(sums)[stacked]
    return SparseProjection(D, k, row_slices, rows, cols, values)


# ---- small helpers -------------------------------------------------------------------------


def _signs(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Independent ±1 (float) with probability ½ each."""
    return torch.randint(0, 2, shape, generator=generator, dtype=torch.float32).mul_(2).sub_(1)


def _draw(p_init: str, s: float, shape: tuple[int, ...], generator: torch.Generator, density: float) -> Tensor:
    """Entries of mean 0 and standard deviation s with p_init's law (see the module docstring)."""
    if p_init == "normal":
        return torch.randn(shape, generator=generator).mul_(s)
    if p_init == "uniform":
        return torch.rand(shape, generator=generator).mul_(2).sub_(1).mul_(s * math.sqrt(3))
    if p_init == "rademacher":
        return _signs(shape, generator).mul_(s)
    if p_init == "sparse":  # ±s/√ρ with probability ρ, else 0
        keep = torch.rand(shape, generator=generator) < density
        return s / math.sqrt(density) * _signs(shape, generator) * keep
    raise ValueError(f"unknown p_init {p_init!r}")


def _from_run(config: RunConfig, stats: dict[str, dict], cols: Tensor, generator: torch.Generator) -> Tensor:
    """Entries in columns `cols` drawn from N(μ_b, σ_b²) of their column block b (μ_b = 0 unless
    from_run_mean is "trained")."""
    mean, std = [], []
    for name, width in config.feature_blocks():
        if name not in stats:
            raise ValueError(f"{config.p_init}: no statistics for column block {name!r} (have {sorted(stats)})")
        mean += [float(stats[name]["mean"]) if config.from_run_mean == "trained" else 0.0] * width
        std += [float(stats[name]["std"])] * width
    mean, std = torch.tensor(mean), torch.tensor(std)
    return mean[cols] + std[cols] * torch.randn(cols.shape, generator=generator)


def _reciprocal(sums: Tensor) -> Tensor:
    """1/sums, and 1 where a sum is exactly 0 (nothing there to normalise, or a cancellation)."""
    return torch.where(sums == 0, torch.ones_like(sums), sums).reciprocal()


def _check_partition(row_slices: list[slice], D: int) -> list[slice]:
    """The row slices as plain slice(start, stop), checked to partition range(D) in order."""
    start = 0
    for rows in row_slices:
        if rows.start != start or rows.stop is None or rows.stop < start or rows.step not in (None, 1):
            raise ValueError(f"row_slices must partition range({D}) in order; got {row_slices}")
        start = rows.stop
    if start != D:
        raise ValueError(f"row_slices cover {start} rows, but D = {D}")
    return [slice(rows.start, rows.stop) for rows in row_slices]


def _row_block(row_slices: list[slice], D: int) -> Tensor:
    """t(i) for every row i: the index of the row block holding it, (D,)."""
    sizes = torch.tensor([rows.stop - rows.start for rows in row_slices])
    return torch.repeat_interleave(torch.arange(len(row_slices)), sizes, output_size=D)


def _crow(rows: Tensor, n_rows: int) -> Tensor:
    """CSR row pointers of sorted row indices: crow[i] = #{non-zeros in rows < i}, (n_rows + 1,)."""
    return F.pad(torch.bincount(rows, minlength=n_rows).cumsum(0), (1, 0))
