"""The network evaluated at θ_D, trained either in a subspace or directly.

Subspace training (Li et al. 2018):

    θ_D = θ_0 + P · φ(θ_d)          θ_0 ∈ R^D fixed, P ∈ R^{D×k} fixed, θ_d ∈ R^d trained

With `use_theta0 = False` the offset is dropped: θ_D = P · φ(θ_d). With one RFF
matrix per weight tensor t, the rows of tensor t use their own features:
θ_D[rows_t] = θ_0[rows_t] + (P · φ_t(θ_d))[rows_t].

Direct training (the baseline) trains all D weights of θ_D, starting at θ_0.

The network itself is a parameterless skeleton on the meta device: each forward
pass splits one flat θ_D into views of the layer shapes and evaluates the
skeleton at them (`model.AtPoint`, what `torch.func.functional_call` computes),
so gradient reaches only θ_d (and P when it is trainable). A training step takes
θ_D as those parts together with the L2 penalty's squared norm at them (`point`):
for fastfood both come from the native kernel's one pass per block, whose backward
reads the parts' gradients where autograd left them; otherwise θ_D is split, and its
gradient is put together by one concatenation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from idlab.config import RunConfig
from worker.subspace import fastfood_kernel
from worker.subspace.augmentation import Augmentation
from worker.subspace.model import AtPoint, build_model, initial_theta, is_kernel
from worker.subspace.projection import Projection, build_projection


def row_slices(config: RunConfig) -> list[slice]:
    """The rows of θ_D that hold each parameter tensor, in `parameter_shapes` order."""
    slices, start = [], 0
    for _, shape in config.parameter_shapes():
        size = math.prod(shape)
        slices.append(slice(start, start + size))
        start += size
    return slices


class _FlatNetwork(nn.Module):
    """Evaluates the configured architecture at a flat weight vector θ_D."""

    def __init__(self, config: RunConfig):
        super().__init__()
        self.shapes = config.parameter_shapes()
        self.rows = row_slices(config)
        # The tensors the L2 penalty covers: all of θ_D, or the kernels only (Li et al.).
        self.sizes = [rows.stop - rows.start for rows in self.rows]
        self.penalized = [config.weight_decay_scope == "all" or is_kernel(name) for name, _ in self.shapes]
        # Not registered as a submodule: its own (meta) weights are never used or trained.
        self._at = (AtPoint(build_model(config).to("meta"), self.shapes),)

    def theta_D(self) -> Tensor:
        raise NotImplementedError

    def split(self, theta_D: Tensor) -> tuple[Tensor, ...]:
        """θ_D cut into its parameter tensors (flat), in `parameter_shapes` order."""
        if theta_D.dim() != 1 or theta_D.numel() != sum(self.sizes):
            raise ValueError(f"θ_D must be a vector of length D = {sum(self.sizes)}, got shape {tuple(theta_D.shape)}")
        return theta_D.split(self.sizes)

    def squared_norm(self, theta_D: Tensor | tuple[Tensor, ...]) -> Tensor:
        """‖θ_D‖² over the weights the L2 penalty covers, Σ_{t penalised} ‖θ_D[rows_t]‖² (θ_D or its `split`).

        Split, not sliced: a slice's backward writes its gradient into a zero-filled D-vector, once
        per tensor and step; `point` passes the parts the network is called with.
        """
        parts = self.split(theta_D) if isinstance(theta_D, Tensor) else theta_D
        return sum(W.square().sum() for W, penalized in zip(parts, self.penalized, strict=True) if penalized)

    def point(self, penalty: bool = True) -> tuple[tuple[Tensor, ...], Tensor | None]:
        """θ_D as its `split`, and the penalty's `squared_norm` there (None without a penalty): a step's point."""
        parts = self.split(self.theta_D())
        return parts, self.squared_norm(parts) if penalty else None

    def call(self, x: Tensor, parts: tuple[Tensor, ...]) -> Tensor:
        """f(x; θ_D), θ_D given as its `split`."""
        return self._at[0](parts, x)

    def forward(self, x: Tensor, theta_D: Tensor | None = None) -> Tensor:
        return self.call(x, self.split(self.theta_D() if theta_D is None else theta_D))


class SubspaceNetwork(_FlatNetwork):
    """θ_D = θ_0 + P·φ(θ_d); θ_d (and P with `train_p`) are the only trainable tensors.

    Random draws, all from one generator seeded by `config.seed`, in a fixed order:
    θ_0, then P, then B, then θ_d.
    """

    def __init__(self, config: RunConfig, from_run_stats: dict[str, dict] | None = None):
        super().__init__(config)
        generator = torch.Generator().manual_seed(config.seed)
        theta_0 = initial_theta(config, generator)
        self.register_buffer("theta_0", theta_0 if config.use_theta0 else torch.zeros_like(theta_0))
        self.P: Projection = build_projection(config, self.rows, generator, from_run_stats)
        self.phi = Augmentation(config, len(self.rows), generator)
        if config.theta_d_init == "normal":
            theta_d = torch.randn(config.d, generator=generator) * config.theta_d_std
        else:
            theta_d = torch.zeros(config.d)
        self.theta_d = nn.Parameter(theta_d)
        self._layout: fastfood_kernel.Layout | None = None   # the parts of `point`, made on first use

    def theta_D(self, theta_d: Tensor | None = None) -> Tensor:
        """θ_0 + P·φ(θ_d), at the trained θ_d unless another point is given."""
        features = self.phi(self.theta_d if theta_d is None else theta_d)   # (T, k)
        if self.phi.per_tensor:
            return self.P.affine_blocks(self.theta_0, list(features), self.rows)
        return self.P.affine(self.theta_0, features[0])

    def point(self, penalty: bool = True) -> tuple[tuple[Tensor, ...], Tensor | None]:
        """θ_D's parts and squared norm; for fastfood, through the native kernel in one pass per block, which
        hands autograd the parts themselves: their gradients reach Pᵀ without a concatenation into a D-vector,
        and the penalty's gradient is added in the same pass (`FastfoodProjection.point`)."""
        if self._layout is None:
            vectors = list(range(len(self.rows))) if self.phi.per_tensor else [0] * len(self.rows)
            self._layout = fastfood_kernel.Layout(self.rows, vectors, self.penalized)
        fused = self.P.point(self.theta_0, self.phi(self.theta_d), self._layout)
        if fused is None:
            return super().point(penalty)
        parts, squared_norm = fused
        return parts, squared_norm if penalty else None

    @torch.no_grad()
    def offset_at_zero(self) -> float:
        """‖θ_D(θ_d = 0) − θ_0‖ = ‖P·φ(0)‖: 0 unless an uncentred RFF feature is a·cos(0) = a there."""
        return (self.theta_D(torch.zeros_like(self.theta_d)) - self.theta_0).norm().item()


class DirectNetwork(_FlatNetwork):
    """Ordinary training of all D weights, from the same θ_0 as a subspace run of this seed."""

    def __init__(self, config: RunConfig):
        super().__init__(config)
        generator = torch.Generator().manual_seed(config.seed)
        self.theta = nn.Parameter(initial_theta(config, generator))

    def theta_D(self) -> Tensor:
        return self.theta


def build_network(config: RunConfig, from_run_stats: dict[str, dict] | None = None) -> _FlatNetwork:
    if config.method == "direct":
        return DirectNetwork(config)
    return SubspaceNetwork(config, from_run_stats)
