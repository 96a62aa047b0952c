"""The networks whose objective landscapes are measured, and their initialisation θ_0.

A network is an ordinary `torch.nn.Module`, but the engine never trains its
parameters in place: it evaluates the network at a point θ_D ∈ R^D,

    f(x; θ_D) = torch.func.functional_call(model, parameter_views(θ_D, shapes), x),

where `parameter_views` cuts the flat vector θ_D into views shaped like the
module's parameters, so gradients flow back to θ_D (and from there to θ_d).
The order of the parameters in θ_D is `idlab.config.parameter_shapes`, the
single source of truth for D; `build_model` checks that the module agrees.

Models (all output logits):

    fc:    x ↦ flatten(x) → Linear → ReLU → … → Linear        in → fc_widths… → classes
    lenet: x ↦ conv 6@5×5 → ReLU → maxpool 2×2 → conv 16@5×5 → ReLU → maxpool 2×2
             → flatten → 120 → ReLU → 84 → ReLU → classes
    a plugin's model: the module its `build` factory returns (idlab.plugins.ModelPlugin), held to
             the same contract: parameters exactly its `parameter_shapes`, and no buffers — θ_D is
             all of a network's state.

θ_0 (He et al. 2015, "He-normal"): every weight tensor W with fan_in inputs per
output unit (in_features for Linear, in_channels·kh·kw for Conv2d) is drawn, with
σ = √(2 / fan_in),

    he_normal     W_ij ~ N(0, σ²)
    he_truncated  W_ij ~ N(0, σ²) conditioned on |W_ij| ≤ 2σ   (Keras' he_normal until 2.2,
                  which Li et al. and Lam & Lee used: no variance correction, so
                  std(W_ij) = σ·√(1 − 2·2·φ(2) / (Φ(2) − Φ(−2))) ≈ 0.8796·σ)

and every bias is 0 (bias_init "zeros") or drawn like the kernels with fan_in = its
length (bias_init "he_normal": Keras computes the fans of a 1-D shape as its length;
Lam & Lee's code).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from idlab import plugins
from idlab.config import LENET_CHANNELS, LENET_HIDDEN, LENET_KERNEL, RunConfig

ParameterShapes = list[tuple[str, tuple[int, ...]]]


class FullyConnected(nn.Module):
    """in → widths… → classes, ReLU between layers; parameters `layers.i.weight`, `layers.i.bias`."""

    def __init__(self, input_shape: tuple[int, int, int], widths: list[int], classes: int):
        super().__init__()
        sizes = [math.prod(input_shape), *widths, classes]
        self.layers = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


class LeNet(nn.Module):
    """LeNet-5 (6c5-pool-16c5-pool-120-84-classes) for C×H×W inputs, valid convolutions."""

    def __init__(self, input_shape: tuple[int, int, int], classes: int):
        super().__init__()
        channels, height, width = input_shape
        c1, c2 = LENET_CHANNELS
        k = LENET_KERNEL
        for _ in range(2):  # each stage: valid k×k convolution, then 2×2 pooling
            height, width = (height - k + 1) // 2, (width - k + 1) // 2
        h1, h2 = LENET_HIDDEN
        self.conv1 = nn.Conv2d(channels, c1, k)
        self.conv2 = nn.Conv2d(c1, c2, k)
        self.fc1 = nn.Linear(c2 * height * width, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def build_model(config: RunConfig) -> nn.Module:
    """The network named by `config.model` for `config.dataset`, on the CPU.

    Its own parameters hold torch's default initialisation (drawn without
    advancing the global RNG); they matter only if the module is used directly —
    load θ_0 with `load_theta`. The engine instead calls it at θ_D through
    `torch.func.functional_call(model, parameter_views(θ_D, config.parameter_shapes()), x)`.
    """
    spec = config.dataset_spec
    with torch.random.fork_rng(devices=[]):
        if config.model == "fc":
            model: nn.Module = FullyConnected(spec.input_shape, list(config.fc_widths), spec.classes)
        elif config.model == "lenet":
            model = LeNet(spec.input_shape, spec.classes)
        else:
            model = build_plugin_model(config.model, spec.input_shape, spec.classes)
    actual = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    expected = config.parameter_shapes()
    if actual != expected:
        raise RuntimeError(f"{config.model} on {config.dataset}: module parameters {actual} "
                             f"disagree with idlab.config.parameter_shapes {expected}")
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        raise RuntimeError(f"{config.model}: the module holds buffers {buffers[:5]}, but a network's only state is "
                           "θ_D (its parameters): use normalisation without running statistics (GroupNorm, "
                           "LayerNorm) and keep constants out of the module's state")
    return model


def build_plugin_model(name: str, input_shape: tuple[int, int, int], classes: int) -> nn.Module:
    """The module a registered model plugin's `build` factory makes for these inputs and classes."""
    plugin = plugins.model_plugin(name)
    if plugin is None:
        raise ValueError(f"unknown model {name!r}: neither built in nor registered by a plugin")
    model = plugins.load_target(plugin.build)(input_shape, classes)
    if not isinstance(model, nn.Module):
        raise RuntimeError(f"model plugin {name!r}: {plugin.build} returned a {type(model).__name__}, "
                           "not a torch.nn.Module")
    return model


def fan_in(shape: tuple[int, ...]) -> int:
    """Inputs feeding one output unit: in_features (Linear), in_channels·kh·kw (Conv2d)."""
    return math.prod(shape[1:])


def is_kernel(name: str) -> bool:
    """Whether a parameter is a kernel (a weight matrix or filter bank) rather than a bias."""
    return name.endswith("weight")


def initial_theta(config: RunConfig, generator: torch.Generator) -> torch.Tensor:
    """θ_0 ∈ R^D (float32, CPU): He-normal (or truncated He-normal) kernels, zero or He-normal biases.

    The tensors are drawn from `generator` (a CPU generator) one after another in
    `config.parameter_shapes()` order and concatenated, so the same generator
    state gives the same θ_0. Zero biases draw nothing.
    """
    blocks = []
    for name, shape in config.parameter_shapes():
        n = math.prod(shape)
        if is_kernel(name):
            blocks.append(he_draw(n, fan_in(shape), config.theta0_init, generator))
        elif config.bias_init == "he_normal":
            blocks.append(he_draw(n, n, config.theta0_init, generator))
        else:
            blocks.append(torch.zeros(n, dtype=torch.float32))
    return torch.cat(blocks)


def he_draw(n: int, fan: int, law: str, generator: torch.Generator) -> torch.Tensor:
    """n entries with σ = √(2/fan): N(0, σ²) (`he_normal`) or N(0, σ²) cut at ±2σ (`he_truncated`)."""
    sigma = math.sqrt(2.0 / fan)
    if law == "he_truncated":
        values = torch.empty(n, dtype=torch.float32)
        return nn.init.trunc_normal_(values, 0.0, sigma, -2 * sigma, 2 * sigma, generator=generator)
    return torch.randn(n, generator=generator, dtype=torch.float32) * sigma


def parameter_views(theta: torch.Tensor, shapes: ParameterShapes) -> dict[str, torch.Tensor]:
    """θ_D cut into views {name: tensor of shape}, in order; no copy, so autograd reaches θ_D.

    The argument of `torch.func.functional_call(model, parameter_views(θ_D, shapes), x)`.
    """
    sizes = [math.prod(shape) for _, shape in shapes]
    if theta.dim() != 1 or theta.numel() != sum(sizes):
        raise ValueError(f"θ_D must be a vector of length D = {sum(sizes)}, got shape {tuple(theta.shape)}")
    return {name: block.view(shape) for (name, shape), block in zip(shapes, theta.split(sizes), strict=True)}


class AtPoint:
    """f(x; θ_D) for one module: its parameter slots filled with the tensors of θ_D for one call.

    What `torch.func.functional_call(model, views, x)` computes, with the bookkeeping done once:
    the slots (a submodule's parameter table and the name in it) are found at construction, and a
    call writes the views into them, runs the module and empties them again, so no reference to
    this step's graph outlives the call. functional_call re-resolves every dotted name and swaps
    the tensors back in a context manager on every call: about 0.1 ms a call for `fc`, most of a
    small step's overhead. The module must not be called concurrently (each network owns one).
    """

    def __init__(self, module: nn.Module, shapes: ParameterShapes):
        self.module, self.shapes = module, shapes
        self.sizes = [math.prod(shape) for _, shape in shapes]
        self.slots = []
        for name, _ in shapes:
            owner, _, attribute = name.rpartition(".")
            self.slots.append((module.get_submodule(owner)._parameters, attribute))

    def __call__(self, parts: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The module's output on x with parameter i = parts[i].view(shape_i) (parts: θ_D split by `sizes`)."""
        for (table, attribute), part, (_, shape) in zip(self.slots, parts, self.shapes, strict=True):
            table[attribute] = part.view(shape)
        try:
            return self.module(x)
        finally:
            for table, attribute in self.slots:
                table[attribute] = None


@torch.no_grad()
def load_theta(model: nn.Module, theta: torch.Tensor) -> None:
    """Copy θ_D into the module's own parameters (for using the module directly)."""
    shapes = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    views = parameter_views(theta, shapes)
    for name, parameter in model.named_parameters():
        parameter.copy_(views[name])
