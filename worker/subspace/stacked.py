"""K subspace networks as one computation: the rows of Θ_D ∈ R^{K×D}.

Row r of Θ_D is run r's point in weight space,

    Θ_D[r] = θ_0^r + P^r·φ^r(θ_d^r),

with θ_0^r, P^r, φ^r (its B^r) and θ_d^r exactly those of run r's own `SubspaceNetwork`,
built from run r's seed as a solo run builds it. Nothing here draws a random number.

What is shared across the K rows, and what is not:

    φ^r(θ_d^r)  run r's own augmentation, (T, k_r): O(d_r) work (O(m·d_r) with RFF) per run,
                a negligible part of a step; a trained B^r stays run r's parameter.
    P^r·φ^r     fastfood: the runs with the same block size L = 2^⌈log2 k_r⌉ — hence the same
                n = ⌈D/L⌉ blocks — stack their diagonals B, G, S and permutations Π into
                (K_L, n, L) tensors and are transformed as one,

                    Θ_D[r] = θ_0^r + rows 0…D−1 of [V^r_1; …; V^r_n]·(φ^r, 0),
                    V^r_b = S^r_b·H·G^r_b·Π^r_b·H·B^r_b,

                each φ^r zero-padded to L exactly as its solo run pads it, so runs of different
                d share a transform whenever their k round up to the same L.
                dense, sparse (and fastfood with normalize_p block_sum): run r's own product
                P^r·φ^r. A matrix–vector product reads each of P^r's D·k_r (or ~k_r·Σ_t √D_t)
                stored entries once and K runs share none of them: stacking would copy P
                (the largest tensor of a run) to save nothing but the launch of K products.
    f(x; Θ_D)   all K networks at once, each on its own minibatch x_r (training) or all on the
                same test inputs x (evaluation): for `fc` as batched matrix products,

                    h_r^{l+1} = relu(h_r^l·W_r^lᵀ + b_r^l)    (torch.baddbmm over r),

                or, for any model, torch.func.vmap over the functional call of the solo run,
                f(x_r; Θ_D[r]) = functional_call(model, views(Θ_D[r]), x_r).

Gradients reach each run's own leaves (θ_d^r, and P^r or B^r when trained) through the padding
and stacking, so run r's optimizer steps exactly the tensors its solo run would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, vmap

from idlab import plugins
from idlab.config import RunConfig
from worker.subspace import fastfood_kernel
from worker.subspace.hadamard import fwht
from worker.subspace.model import build_model, is_kernel, parameter_views
from worker.subspace.network import SubspaceNetwork, row_slices
from worker.subspace.projection import FastfoodProjection

FORWARDS = ("auto", "explicit", "vmap")


def vmap_problem(config: RunConfig) -> str | None:
    """Why the network of `config` cannot be evaluated as K rows of Θ_D by vmap, or None when it can.

    fc has its own batched products. Any other model — a plugin's above all — is evaluated by
    torch.func.vmap over its functional call, which some modules do not support (data-dependent
    control flow, `.item()`, in-place updates of captured tensors): the call is tried once on the meta
    device (shapes only, no memory, no arithmetic) with K = 2 runs of 2 examples each. A plugin that
    declares `batchable=False` is not tried.
    """
    if config.model == "fc":
        return None
    plugin = plugins.model_plugin(config.model)
    if plugin is not None and not plugin.batchable:
        return f"model plugin {config.model!r} declares batchable=False"
    try:
        skeleton, shapes = build_model(config).to("meta"), config.parameter_shapes()
        theta = torch.empty(2, config.D, device="meta")
        x = torch.empty(2, 2, *config.dataset_spec.input_shape, device="meta")

        def one(row: Tensor, inputs: Tensor) -> Tensor:
            return functional_call(skeleton, parameter_views(row, shapes), (inputs,))

        logits = vmap(one)(theta, x)
    except Exception as problem:  # whatever vmap or the module raises: the runs train one at a time
        return f"torch.func.vmap cannot evaluate {config.model!r}: {type(problem).__name__}: {problem}"
    expected = (2, 2, config.dataset_spec.classes)
    if tuple(logits.shape) != expected:
        return f"{config.model!r} under vmap gives logits of shape {tuple(logits.shape)}, not {expected}"
    return None


class StackedFastfood:
    """K_L fastfood projections of one block size L, as (K_L, n, L) tensors: (K_L, L) ↦ rows of P·v."""

    def __init__(self, projections: list[FastfoodProjection]):
        self.L = projections[0].L
        self.B, self.G, self.Pi, self.S = (torch.stack([getattr(p, name) for p in projections])
                                           for name in ("B", "G", "Pi", "S"))
        self.native = all(p.B_signs is not None for p in projections) and fastfood_kernel.usable(self.L, self.G)
        if self.native:   # the kernel's B and Π (`fastfood_kernel.signs`, `permutation`), stacked from each run's
            self.B, self.Pi = (torch.stack([getattr(p, name) for p in projections]) for name in ("B_signs", "Pi_bits"))
            self.S = self.S.flatten(1)

    def _V(self, x: Tensor, blocks: slice) -> Tensor:
        """V^r_b·x_r for b in blocks: (K_L, L) → (K_L, n_blocks, L)."""
        y = fwht(self.B[:, blocks] * x.unsqueeze(-2))                 # H·B_b·x
        y = torch.gather(y, -1, self.Pi[:, blocks])                   # (Π_b y)_i = y_{Π_b(i)}
        return self.S[:, blocks] * fwht(self.G[:, blocks] * y)        # S_b·H·G_b·…

    def rows(self, x: Tensor, rows: slice, base: Tensor | None = None) -> Tensor:
        """base_r[rows] + (P^r·x_r)[rows] for every r (base: (K_L, D) or None), transforming only the blocks
        these rows fall in: (K_L, |rows|)."""
        if self.native:
            return fastfood_kernel.fastfood_rows(x, self.B, self.G, self.Pi, self.S, rows.start, rows.stop, base)
        L = self.L
        b0, b1 = rows.start // L, -(-rows.stop // L)
        y = _part(self._V(x, slice(b0, b1)).flatten(-2), rows.start - b0 * L, rows.stop - rows.start)
        return y if base is None else _part(base, rows.start, rows.stop - rows.start) + y


class StackedNetworks:
    """Θ_D of K subspace networks (`theta_D`), and the K networks evaluated at it (`logits`).

    The networks share the architecture (config.parameter_shapes()) and the L2 scope —
    `batched.compatible` checks it. Row i of Θ_D is `networks[i]`, the given network `order[i]`:
    the stack orders its runs by group, so that Θ_D is one concatenation.

    Every tensor of a run is cut from Θ_D by `split` (whose backward concatenates), never by
    slicing (whose backward writes into a zero-filled K×D tensor, once per slice and step).
    """

    def __init__(self, networks: list[SubspaceNetwork], config: RunConfig, forward: str = "auto"):
        if forward not in FORWARDS:
            raise ValueError(f"forward must be one of {FORWARDS}, got {forward!r}")
        self.K, self.D = len(networks), config.D
        self.shapes = config.parameter_shapes()
        self.rows = row_slices(config)
        self.sizes = [rows.stop - rows.start for rows in self.rows]
        self.penalized = [config.weight_decay_scope == "all" or is_kernel(name) for name, _ in self.shapes]
        self.skeleton = build_model(config).to("meta")
        self.forward = ("explicit" if config.model == "fc" else "vmap") if forward == "auto" else forward
        if self.forward == "explicit" and config.model != "fc":
            raise ValueError(f"forward 'explicit' is written for model 'fc'; use 'vmap' for {config.model!r}")

        # Groups of rows computed together: one per fastfood block size L (and number T of feature
        # vectors: 1, or one per weight tensor with rff_per_tensor), then one per other run.
        # The stack keeps its runs group after group: `order[i]` is the given index of its run i.
        fastfood: dict[tuple[int, int], list[int]] = {}
        solo: list[int] = []
        for r, network in enumerate(networks):
            P = network.P
            if isinstance(P, FastfoodProjection) and P.c is None:
                fastfood.setdefault((P.L, network.phi.n_vectors), []).append(r)
            else:
                solo.append(r)
        groups = [members for _, members in sorted(fastfood.items())]
        self.order = [r for members in groups for r in members] + solo
        self.networks = [networks[r] for r in self.order]
        self.groups, start = [], 0
        for members in groups:
            stacked = range(start, start + len(members))
            self.groups.append((stacked, StackedFastfood([networks[r].P for r in members]),
                                torch.stack([networks[r].theta_0 for r in members])))
            start += len(members)
        self.solo = range(start, self.K)

    # ---- Θ_D ------------------------------------------------------------------------------

    def theta_D(self) -> Tensor:
        """Θ_D ∈ R^{K×D}: row i = θ_0^i + P^i·φ^i(θ_d^i), differentiable w.r.t. every run's leaves."""
        parts = []
        for members, P, theta_0 in self.groups:
            networks = [self.networks[i] for i in members]
            # φ^i(θ_d^i) zero-padded from k_i to L: (K_L, T, L)
            features = torch.stack([F.pad(net.phi(net.theta_d), (0, P.L - net.phi.k)) for net in networks])
            if features.shape[1] > 1:   # one B per weight tensor: θ_D[rows_t] uses the features of tensor t
                parts.append(torch.cat([P.rows(features[:, t], rows, theta_0) for t, rows in enumerate(self.rows)],
                                       -1))
            else:
                parts.append(P.rows(features[:, 0], slice(0, self.D), theta_0))
        if self.solo:
            parts.append(torch.stack([self.networks[i].theta_D() for i in self.solo]))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def squared_norm(self, theta_D: Tensor) -> Tensor:
        """Σ_{t penalised} ‖Θ_D[i, rows_t]‖² for every i: (K,)."""
        if all(self.penalized):
            return theta_D.square().sum(-1)
        blocks = zip(theta_D.split(self.sizes, -1), self.penalized, strict=True)
        return sum(W.square().sum(-1) for W, penalized in blocks if penalized)

    # ---- f(x; Θ_D) ------------------------------------------------------------------------

    def logits(self, theta_D: Tensor, x: Tensor, shared: bool = False) -> Tensor:
        """f(x_r; Θ_D[r]) for every r: (K, b, classes).

        x: (K, b, C, H, W), one minibatch per run; or with `shared` (b, C, H, W), the same inputs for all.
        """
        if self.forward == "explicit":
            return self._fc_logits(theta_D, x)
        skeleton, shapes = self.skeleton, self.shapes

        def one(theta: Tensor, inputs: Tensor) -> Tensor:
            return functional_call(skeleton, parameter_views(theta, shapes), (inputs,))

        return vmap(one, in_dims=(0, None if shared else 0))(theta_D, x)

    def _fc_logits(self, theta_D: Tensor, x: Tensor) -> Tensor:
        """The fc network, h^{l+1} = relu(h^l·W^lᵀ + b^l) with one W^l, b^l per run (rows of Θ_D)."""
        K = theta_D.shape[0]
        tensors = theta_D.split(self.sizes, -1)
        h = x.flatten(-3)                                       # (K, b, in), or (b, in) shared
        layers = len(self.shapes) // 2
        for layer in range(layers):
            (_, (n_out, n_in)), W, b = self.shapes[2 * layer], tensors[2 * layer], tensors[2 * layer + 1]
            W, b = W.view(K, n_out, n_in), b.unsqueeze(1)                  # (K, out, in), (K, 1, out)
            if h.dim() == 3:
                h = torch.baddbmm(b, h, W.transpose(1, 2))
            else:   # the same inputs for every run: one product with the K weight matrices side by side
                h = (h @ W.reshape(K * n_out, n_in).T).view(-1, K, n_out).transpose(0, 1) + b
            if layer < layers - 1:
                h = torch.relu(h)
        return h


def _part(y: Tensor, start: int, length: int) -> Tensor:
    """y[..., start:start + length], cut by split: its backward concatenates instead of filling zeros."""
    return y.split([start, length, y.shape[-1] - start - length], -1)[1]

