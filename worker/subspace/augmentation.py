"""Augmentations φ: fixed nonlinear features of the trained weights θ_d (Lam & Lee 2020).

    linear     φ(θ) = θ                                            k = d
    power      φ(θ) = [θ, λ_2·θ², λ_3·θ³, …]   (element-wise)       k = d·(1 + #orders)
    rff        φ(θ) = [θ, a·cos(Bθ), a·sin(Bθ)],  B ∈ R^{m×d} ~ N(0, σ²)   k = d + 2m
               centred: [θ, a·(cos(Bθ) − 1), a·sin(Bθ)]
    power+rff  the concatenation of the power and the rff features  k = the sum

With `rff_centered` the cosine features are a·(cos(Bθ) − 1): every feature is then 0 at
θ = 0, so θ_D(θ_d = 0) = θ_0. Lam & Lee's form is uncentred: at θ_d = 0 it already
moves θ_D by P·[0, a·1, 0], a step of norm ≈ a·√m for unit-norm columns.

Only θ_d is trained — the features add no trainable weights — unless `train_rff_b`
makes B a parameter too (a diagnostic, as train_p is for P). With `rff_per_tensor`
each weight tensor t of the network gets its own B_t, so φ differs per tensor and
the forward pass returns one feature vector per tensor: (T, k) instead of (1, k).
The block layout (names and widths) comes from `RunConfig.feature_blocks()`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from idlab.config import RunConfig


class Augmentation(nn.Module):
    """φ: R^d → R^k, with its random matrices B drawn once from the run's generator."""

    def __init__(self, config: RunConfig, n_tensors: int, generator: torch.Generator):
        super().__init__()
        self.d = config.d
        self.k = config.k
        self.blocks = config.feature_blocks()
        self.power_orders = list(config.power_orders) if "power" in config.augmentation else []
        self.power_coefs = list(config.power_coefs) if "power" in config.augmentation else []
        self.uses_rff = "rff" in config.augmentation
        self.rff_amplitude = config.rff_amplitude
        self.cos_offset = 1.0 if config.rff_centered else 0.0
        self.repeat_linear = config.augmentation == "power+rff"
        n_B = n_tensors if (self.uses_rff and config.rff_per_tensor) else 1
        if self.uses_rff:
            # B_t ~ N(0, σ²), one per weight tensor or one shared: (n_B, m, d)
            B = torch.randn(n_B, config.m, config.d, generator=generator) * config.rff_scale
        else:
            B = torch.empty(0)
        if self.uses_rff and config.train_rff_b:
            self.B = nn.Parameter(B)
        else:
            self.register_buffer("B", B)
        self.n_vectors = n_B

    @property
    def per_tensor(self) -> bool:
        return self.n_vectors > 1

    def forward(self, theta_d: Tensor) -> Tensor:
        """φ(θ_d) as a (T, k) tensor: T = 1 unless one B per weight tensor."""
        powers = zip(self.power_orders, self.power_coefs, strict=True)
        features = [theta_d] + [coef * theta_d**order for order, coef in powers]
        shared = torch.cat(features) if len(features) > 1 else theta_d
        if not self.uses_rff:
            return shared.unsqueeze(0)
        if self.repeat_linear:
            shared = torch.cat([shared, theta_d])
        B_theta = self.B @ theta_d                                   # (T, m)
        a = self.rff_amplitude
        cosine = torch.cos(B_theta) - self.cos_offset if self.cos_offset else torch.cos(B_theta)
        fourier = torch.cat([a * cosine, a * torch.sin(B_theta)], dim=1)   # (T, 2m)
        return torch.cat([shared.expand(self.n_vectors, -1), fourier], dim=1)
