"""The residual CNN (worker side): the torch module `specs.residual_cnn` describes.

    x ↦ h₀ = relu(stem(x))                                     3×3, C → 16
        h₁ = relu(h₀ + block1.conv2(relu(block1.conv1(h₀))))   two 3×3, 16 → 16, identity skip
        h₂ = relu(down(h₁))                                    3×3 stride 2, 16 → 32
        h₃ = relu(h₂ + block2.conv2(relu(block2.conv1(h₂))))   two 3×3, 32 → 32, identity skip
        logits = head(mean over pixels of h₃)                  32 → classes

No normalisation layer: the lab evaluates the network from θ_D alone, so the module holds
parameters and no buffers (no BatchNorm running statistics).
"""

from __future__ import annotations

import torch
from torch import nn

from idlab_plugin_example.specs import KERNEL, WIDTHS


class ResidualBlock(nn.Module):
    """h ↦ relu(h + conv2(relu(conv1(h)))), channel count and resolution kept."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, KERNEL, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, KERNEL, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(h + self.conv2(torch.relu(self.conv1(h))))


class ResidualCNN(nn.Module):
    """The network for inputs (N, C, H, W) and `classes` outputs (logits)."""

    def __init__(self, input_shape: tuple[int, int, int], classes: int):
        super().__init__()
        c1, c2 = WIDTHS
        self.stem = nn.Conv2d(input_shape[0], c1, KERNEL, padding=1)
        self.block1 = ResidualBlock(c1)
        self.down = nn.Conv2d(c1, c2, KERNEL, stride=2, padding=1)
        self.block2 = ResidualBlock(c2)
        self.head = nn.Linear(c2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block1(torch.relu(self.stem(x)))
        h = self.block2(torch.relu(self.down(h)))
        return self.head(h.mean(dim=(2, 3)))
