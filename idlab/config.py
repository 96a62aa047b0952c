"""The run configuration: the one schema for the API, the worker, the UI form and the CLI.

Everything here is pure Python (pydantic only), so the backend can validate a run
without importing torch. The sizes that validation needs — the network's
parameter count D and the augmented dimension k — are computed from the same
tables the engine builds its models and features from (`parameter_shapes`,
`feature_blocks`); the engine's tests check that both agree.

Defaults follow Li et al. (2018): unit-column P, θ_d = 0, Adam with lr 1e-3
and betas (0.9, 0.99), batch 128, L2 1e-4 on θ_D. The settings that reproduce
their reference code exactly (Keras' truncated He-normal θ_0, [0, 1] inputs,
L2 on kernels only) are options the paper presets turn on (idlab/presets.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from idlab import plugins
from idlab.plugins import RegisteredName

#: A built-in dataset or model, or one a plugin registered (idlab.plugins): never anything else.
DatasetName = Annotated[str, RegisteredName("dataset", plugins.dataset_names, plugins.registry)]
ModelName = Annotated[str, RegisteredName("model", plugins.model_names, plugins.registry)]
Method = Literal["subspace", "direct"]
ProjectionName = Literal["dense", "sparse", "fastfood"]
AugmentationName = Literal["linear", "power", "rff", "power+rff"]
OptimizerName = Literal["adam", "sgd"]
NormalizeP = Literal["unit_columns", "none", "block_sum"]
ThetaDInit = Literal["zeros", "normal"]
InputScaling = Literal["standardize", "unit", "raw"]
OnDivergence = Literal["fail", "reduce_lr"]
EarlyStoppingMetric = Literal["train_acc", "train_loss", "test_acc", "test_loss"]
Theta0Init = Literal["he_normal", "he_truncated"]
BiasInit = Literal["zeros", "he_normal"]
WeightDecayScope = Literal["all", "kernels"]
SparseScope = Literal["per_tensor", "global"]
FromRunMean = Literal["zero", "trained"]

P_INITS = ("normal", "uniform", "rademacher", "sparse", "orthogonal")
FROM_RUN_PATTERN = re.compile(r"^from_run:([A-Za-z0-9_-]{1,64})$")
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d{1,2})?)$"

#: Environment variable holding the largest dense P (in MiB) a run may allocate.
DENSE_BUDGET_ENV = "IDLAB_DENSE_P_BUDGET_MB"
DEFAULT_DENSE_BUDGET_MB = 2048
BYTES_PER_FLOAT = 4
#: A sparse P's non-zero is stored twice (P̃ and its transpose), each a value and an index.
BYTES_PER_SPARSE_ENTRY = 2 * (BYTES_PER_FLOAT + 8)
#: Most weights a run may train: θ, its gradient and Adam's two moments take 16 GB at this size.
MAX_WEIGHTS = 1_000_000_000
#: Highest power the power augmentation may add: θ^i of an entry of θ_d above 1 overflows float32 soon after.
MAX_POWER_ORDER = 10
#: Largest |λ| of a power feature, and the largest value of the scale-like floats (p_scale, rff_scale, …).
MAX_POWER_COEF = 1_000.0
MAX_SCALE = 1_000_000.0
#: Largest L2 weight: beyond it the penalty swamps any loss.
MAX_WEIGHT_DECAY = 100.0
#: Most epochs early stopping may wait (the most epochs a run may take).
MAX_EPOCHS = 10_000
#: Largest train_size / test_size accepted before the dataset is known (the dataset's split caps it further).
MAX_SPLIT_SIZE = 10_000_000

#: Environment variable holding the memory (in MiB) one run may take for training: θ, its gradient and the
#: optimizer's moments, and the activations of a batch. The same mechanism as the dense-P budget.
MEMORY_BUDGET_ENV = "IDLAB_MEMORY_BUDGET_MB"
DEFAULT_MEMORY_BUDGET_MB = 8192
#: Bytes per trained weight: the value, its gradient and Adam's two moments (float32 each).
BYTES_PER_TRAINED_WEIGHT = 16
#: Each activation is kept for the backward pass and gets a gradient there.
ACTIVATION_COPIES = 2


@dataclass(frozen=True)
class DatasetSpec:
    """Shape of a dataset's inputs and its split sizes."""

    channels: int
    height: int
    width: int
    classes: int
    train_size: int
    test_size: int
    pixels: bool = True     # 0 … 255 values (`unit` scaling divides by 255); False: real-valued features

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a built-in dataset, or of one a plugin registered (`idlab.plugins`)."""
    if name in DATASETS:
        return DATASETS[name]
    plugin = plugins.dataset_plugin(name)
    if plugin is None:
        raise ValueError(f"unknown dataset {name!r}")
    return DatasetSpec(*plugin.input_shape, plugin.classes, plugin.train_size, plugin.test_size, plugin.pixels)


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(1, 28, 28, 10, 60_000, 10_000),
    "fashion_mnist": DatasetSpec(1, 28, 28, 10, 60_000, 10_000),
    "cifar10": DatasetSpec(3, 32, 32, 10, 50_000, 10_000),
    # Generated in memory; MNIST-shaped so every model runs on it.
    "synthetic": DatasetSpec(1, 28, 28, 10, 6_000, 1_000),
}

LENET_CHANNELS = (6, 16)
LENET_KERNEL = 5
LENET_HIDDEN = (120, 84)


def parameter_shapes(
    model: str, dataset: str, fc_widths: list[int] | tuple[int, ...] = (200, 200)
) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of the network's parameters, in the order they are flattened into θ_D.

    fc:    Linear layers in → widths… → classes (weight (out, in), bias (out)).
    lenet: conv 6@5×5 → 2×2 max-pool → conv 16@5×5 → 2×2 max-pool → 120 → 84 → classes.
    a plugin's model: its own `parameter_shapes(input_shape, classes)` (idlab.plugins.ModelPlugin).

    Raises ValueError, with a sentence, when the model cannot take the dataset's inputs.
    """
    spec = dataset_spec(dataset)
    if (plugin := plugins.model_plugin(model)) is not None:
        return checked_shapes(model, plugin_call(model, plugin.parameter_shapes, spec.input_shape, spec.classes))
    shapes: list[tuple[str, tuple[int, ...]]] = []
    if model == "fc":
        sizes = [spec.channels * spec.height * spec.width, *fc_widths, spec.classes]
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            shapes += [(f"layers.{i}.weight", (n_out, n_in)), (f"layers.{i}.bias", (n_out,))]
        return shapes
    if model == "lenet":
        c1, c2 = LENET_CHANNELS
        k = LENET_KERNEL
        h, w = spec.height, spec.width
        for _ in range(2):  # valid convolution then 2×2 pooling, twice
            h, w = (h - k + 1) // 2, (w - k + 1) // 2
        if min(h, w) < 1:
            raise ValueError(f"lenet needs images of at least 16×16 pixels; {dataset} has inputs of shape "
                             f"{spec.channels}×{spec.height}×{spec.width}: use model 'fc'")
        flat = c2 * h * w
        shapes = [
            ("conv1.weight", (c1, spec.channels, k, k)), ("conv1.bias", (c1,)),
            ("conv2.weight", (c2, c1, k, k)), ("conv2.bias", (c2,)),
        ]
        sizes = [flat, *LENET_HIDDEN, spec.classes]
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            shapes += [(f"fc{i + 1}.weight", (n_out, n_in)), (f"fc{i + 1}.bias", (n_out,))]
        return shapes
    raise ValueError(f"unknown model {model!r}")


def plugin_call(model: str, function: Any, input_shape: tuple[int, int, int], classes: int) -> Any:
    """A model plugin's description function at these inputs; its ValueError as is (the model cannot take them),
    any other error as a ValueError that names the plugin, so a faulty plugin is a refused run, not a crash."""
    try:
        return function(input_shape, classes)
    except ValueError:
        raise
    except Exception as problem:
        raise ValueError(f"model plugin {model!r} failed to describe itself for inputs {input_shape} and {classes} "
                         f"classes: {type(problem).__name__}: {problem}") from problem


def checked_shapes(model: str, shapes: Any) -> list[tuple[str, tuple[int, ...]]]:
    """A plugin's parameter shapes as [(name, (int, …))], each name unique and each size positive."""
    try:
        checked = [(str(name), tuple(int(n) for n in shape)) for name, shape in shapes]
    except (TypeError, ValueError) as problem:
        raise ValueError(f"model {model!r} described its parameters wrongly ({problem}): parameter_shapes "
                         "must return [(name, shape), …]") from None
    names = [name for name, _ in checked]
    if not checked or len(set(names)) != len(names) or any(min(shape, default=1) < 1 for _, shape in checked):
        raise ValueError(f"model {model!r} described its parameters wrongly: parameter_shapes must return at least "
                         f"one (name, shape), names unique, sizes positive; got {checked[:8]}")
    return checked


def activations_per_example(model: str, dataset: str, fc_widths: list[int] | tuple[int, ...] = (200, 200)) -> int:
    """Values one example leaves in memory on its way through the network: input, every layer's output."""
    spec = dataset_spec(dataset)
    inputs = spec.channels * spec.height * spec.width
    if (plugin := plugins.model_plugin(model)) is not None:
        if plugin.activations_per_example is None:
            return inputs + spec.classes
        return int(plugin_call(model, plugin.activations_per_example, spec.input_shape, spec.classes))
    if model == "fc":
        return inputs + 2 * sum(fc_widths) + spec.classes            # pre-activation and ReLU output per layer
    c1, c2 = LENET_CHANNELS
    h1, w1 = spec.height - LENET_KERNEL + 1, spec.width - LENET_KERNEL + 1
    h2, w2 = (h1 // 2) - LENET_KERNEL + 1, (w1 // 2) - LENET_KERNEL + 1
    conv = 2 * (c1 * h1 * w1 + c2 * h2 * w2) + c1 * (h1 // 2) * (w1 // 2) + c2 * (h2 // 2) * (w2 // 2)
    return inputs + conv + 2 * sum(LENET_HIDDEN) + spec.classes


def validation_context(dense_budget_mb: float = DEFAULT_DENSE_BUDGET_MB,
                       memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB) -> dict[str, float]:
    """The context RunConfig.model_validate checks a run's memory against: the largest P (dense, sparse,
    RFF's B) and the training memory of one run, in MiB. The lab's own budgets come from its settings
    (`Settings.validation_context()`); without a context, the defaults apply."""
    return {"dense_budget_mb": float(dense_budget_mb), "memory_budget_mb": float(memory_budget_mb)}


class RunConfig(BaseModel):
    """One subspace-training (or direct-training) run: θ_D = θ_0 + P·φ(θ_d)."""

    # No field means anything infinite, and NaN or inf would pass every bound (NaN > 0 is false, but so is
    # NaN <= 0): the schema refuses them itself, wherever a config is validated (API, CLI, client, worker).
    model_config = ConfigDict(extra="forbid", validate_assignment=False, allow_inf_nan=False)

    # What is trained, on what.
    dataset: DatasetName = Field("mnist", description="Dataset read from the data directory; `synthetic` is generated; "
                                 "or one an installed plugin registers (GET /api/config/plugins).")
    model: ModelName = Field("fc", description="Network: `fc` (fully connected) or `lenet`, or one an installed "
                             "plugin registers (GET /api/config/plugins).")
    fc_widths: list[int] = Field([200, 200], min_length=1, max_length=8,
                                 description="Hidden widths of the fc model (784-200-200-10 by default).")
    method: Method = Field("subspace", description="`subspace` trains θ_d only; `direct` trains all D weights (the baseline).")
    theta0_init: Theta0Init = Field("he_normal", description="Kernels of θ_0: `he_normal` N(0, 2/fan_in), or `he_truncated` (Keras' he_normal of 2018: cut at 2σ without variance correction, std ≈ 0.88·√(2/fan_in); Li et al., Lam & Lee).")
    bias_init: BiasInit = Field("zeros", description="Biases of θ_0: `zeros`, or `he_normal` like the kernels with fan_in = the bias length (Lam & Lee's code).")

    # The subspace.
    projection: ProjectionName = Field("fastfood", description="How P·v is computed: explicit `dense`, `sparse` (density 1/√D_t per weight tensor) or structured `fastfood`.")
    sparse_scope: SparseScope = Field("per_tensor", description="Sparse P: `per_tensor` draws each weight tensor's rows with density 1/√D_t (Li et al.), `global` the whole P with density 1/√D.")
    augmentation: AugmentationName = Field("linear", description="Feature map φ: `linear` φ(θ)=θ, `power` adds λ_i·θ^i, `rff` adds a·cos(Bθ), a·sin(Bθ); `power+rff` concatenates both.")
    d: int = Field(750, gt=0, le=10_000_000, description="Intrinsic dimension: the number of trained weights θ_d.")
    p_init: str = Field("normal", description="Entries of P: normal, uniform, rademacher, sparse, orthogonal (dense, k ≤ D) or from_run:<id> (per-block statistics of an earlier run's trained P).")
    from_run_mean: FromRunMean = Field("zero", description="With p_init from_run:<id>, each block of P ~ N(μ, σ²) with σ the trained per-block std and μ = 0 (`zero`, Lam & Lee) or the trained mean (`trained`).")
    p_scale: float = Field(1.0, gt=0, le=MAX_SCALE, allow_inf_nan=False, description="Standard deviation of P's entries before normalisation.")
    normalize_p: NormalizeP = Field("unit_columns", description="`unit_columns` (Li et al.), `none`, or `block_sum` (Lam & Lee; numerically fragile).")
    train_p: bool = Field(False, description="Train P as well (dense only): a diagnostic that records P before and after training.")
    theta_d_init: ThetaDInit = Field("zeros", description="θ_d at the start: zeros (Li et al.) or normal with std `theta_d_std`.")
    theta_d_std: float = Field(0.05, gt=0, le=MAX_SCALE, allow_inf_nan=False, description="Standard deviation of θ_d when theta_d_init is normal (Lam & Lee: 0.05).")
    use_theta0: bool = Field(True, description="False gives θ_D = P·φ(θ_d) with no offset θ_0.")

    # Augmentation options.
    power_orders: list[int] = Field([2, 3], max_length=6, description="Powers added by the power augmentation.")
    power_coefs: list[float] = Field([0.1, 0.01], max_length=6, description="λ for each power in `power_orders`.")
    rff_features: int | None = Field(None, ge=1, le=10_000_000, description="m, the number of random Fourier features (default d//2).")
    rff_scale: float = Field(1.0, gt=0, le=MAX_SCALE, allow_inf_nan=False, description="σ: B ~ N(0, σ²).")
    rff_amplitude: float = Field(1.0, gt=0, le=MAX_SCALE, allow_inf_nan=False, description="a: the amplitude of the cos and sin features.")
    rff_per_tensor: bool = Field(False, description="Draw one B per weight tensor (Lam & Lee) instead of one shared B.")
    rff_centered: bool = Field(False, description="Centred features a·(cos(Bθ) − 1), so that θ_D = θ_0 at θ_d = 0; off: Lam & Lee's a·cos(Bθ), which already moves θ_D by P·[0, a, 0] there.")
    train_rff_b: bool = Field(False, description="Train the RFF matrices B as well (a diagnostic, like train_p): records B before and after training.")

    # Training.
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds θ_0, P, B, θ_d and the data order.")
    epochs: int = Field(10, ge=1, le=MAX_EPOCHS, description="Passes over the training set.")
    batch_size: int = Field(128, ge=1, le=65_536, description="Minibatch size.")
    optimizer: OptimizerName = Field("adam", description="`adam` (with `adam_betas`) or `sgd` (with `momentum`).")
    lr: float = Field(1e-3, gt=0, le=100, allow_inf_nan=False, description="Learning rate.")
    adam_betas: tuple[float, float] = Field((0.9, 0.99), description="Adam's β₁, β₂.")
    momentum: float = Field(0.9, ge=0, lt=1, allow_inf_nan=False, description="SGD momentum.")
    lr_decay: float = Field(1.0, gt=0, le=1, allow_inf_nan=False, description="Learning rate multiplied by this after every epoch.")
    weight_decay: float = Field(1e-4, ge=0, le=MAX_WEIGHT_DECAY, allow_inf_nan=False, description="L2 penalty weight_decay·‖θ_D‖² added to the loss.")
    weight_decay_scope: WeightDecayScope = Field("all", description="Weights the L2 penalty covers: `all` of θ_D, or `kernels` only, no biases (Li et al.).")
    early_stopping_patience: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="Stop after this many epochs without improvement of `early_stopping_metric`.")
    early_stopping_metric: EarlyStoppingMetric = Field("train_acc", description="Metric watched by early stopping.")
    input_scaling: InputScaling = Field("standardize", description="`standardize` (zero mean, unit std), `unit` (÷255) or `raw` (0–255, as Lam & Lee).")
    train_size: int | None = Field(None, ge=1, le=MAX_SPLIT_SIZE, description="Use only the first N training examples (all by default).")
    test_size: int | None = Field(None, ge=1, le=MAX_SPLIT_SIZE, description="Evaluate on only the first N test examples (all by default).")
    on_divergence: OnDivergence = Field("fail", description="On a NaN/inf loss: `fail`, or `reduce_lr` (restart with lr × 0.1).")
    max_lr_reductions: int = Field(3, ge=0, le=10, description="How many times `reduce_lr` may restart a run.")
    log_every: int = Field(10, ge=1, le=100_000, description="Steps between logged training points (divergence is checked at each).")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="`auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.")

    # ---- derived sizes -------------------------------------------------------------

    @property
    def dataset_spec(self) -> DatasetSpec:
        return dataset_spec(self.dataset)

    def parameter_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return parameter_shapes(self.model, self.dataset, self.fc_widths)

    @property
    def D(self) -> int:  # noqa: N802 - the paper's name
        return sum(math.prod(shape) for _, shape in self.parameter_shapes())

    @property
    def m(self) -> int:
        """Number of random Fourier features."""
        return self.rff_features if self.rff_features is not None else max(1, self.d // 2)

    def feature_blocks(self) -> list[tuple[str, int]]:
        """The blocks of φ(θ_d), in order, with their widths; their sum is k.

        linear: [θ]; power: [θ, λ_i θ^i …]; rff: [θ, a cos(Bθ), a sin(Bθ)];
        power+rff: the concatenation of the power and the rff features.
        """
        power = [("linear", self.d)] + [(f"power_{o}", self.d) for o in self.power_orders]
        rff = [("cos", self.m), ("sin", self.m)]
        if self.augmentation == "linear":
            return [("linear", self.d)]
        if self.augmentation == "power":
            return power
        if self.augmentation == "rff":
            return [("linear", self.d), *rff]
        return [*power, ("rff_linear", self.d), *rff]

    @property
    def k(self) -> int:
        return sum(width for _, width in self.feature_blocks())

    @property
    def from_run_id(self) -> str | None:
        match = FROM_RUN_PATTERN.match(self.p_init)
        return match.group(1) if match else None

    def rff_B_bytes(self) -> int:
        """Memory of the RFF matrices B ∈ R^{m×d} (one per weight tensor with rff_per_tensor; ×4 when trained)."""
        if "rff" not in self.augmentation:
            return 0
        copies = len(self.parameter_shapes()) if self.rff_per_tensor else 1
        return copies * self.m * self.d * BYTES_PER_FLOAT * (4 if self.train_rff_b else 1)

    def training_bytes(self) -> int:
        """Memory of training, besides P and B: θ_D with its gradient and Adam's moments (direct: 16 bytes per
        weight; subspace: θ_0, θ_D and its gradient, 12 bytes per weight, plus θ_d's 16 bytes per entry) and the
        activations of a batch, kept for the backward pass with their gradients."""
        if self.method == "direct":
            weights = BYTES_PER_TRAINED_WEIGHT * self.D
        else:
            weights = 3 * BYTES_PER_FLOAT * self.D + BYTES_PER_TRAINED_WEIGHT * self.k
        return weights + self.activation_bytes()

    def memory_bytes(self) -> int:
        """All the memory a run trains with: training's (`training_bytes`), P's and the RFF matrices'."""
        projection = {"dense": self.dense_p_bytes, "sparse": self.sparse_p_bytes}.get(self.projection)
        subspace = self.method == "subspace"
        return self.training_bytes() + (projection() if subspace and projection else 0) + (
            self.rff_B_bytes() if subspace else 0)

    def activation_bytes(self) -> int:
        """The activations of one batch, each kept for the backward pass and given a gradient there."""
        return (ACTIVATION_COPIES * BYTES_PER_FLOAT * self.batch_size
                * activations_per_example(self.model, self.dataset, self.fc_widths))

    def dense_p_bytes(self) -> int:
        """Memory of an explicit D×k P (×4 when trained: value, gradient, two Adam moments)."""
        return self.D * self.k * BYTES_PER_FLOAT * (4 if self.train_p else 1)

    def sparse_p_nonzeros(self) -> int:
        """Non-zeros of a sparse P: ~k·Σ_t √D_t (density 1/√D_t per weight tensor t), or ~k·√D (global)."""
        if self.sparse_scope == "global":
            return math.ceil(self.k * math.sqrt(self.D))
        return math.ceil(self.k * sum(math.sqrt(math.prod(shape)) for _, shape in self.parameter_shapes()))

    def sparse_p_bytes(self) -> int:
        """Memory of a sparse P: its non-zeros, each stored twice (P̃ and its transpose)."""
        return self.sparse_p_nonzeros() * BYTES_PER_SPARSE_ENTRY

    # ---- cross-field validation ---------------------------------------------------

    @model_validator(mode="after")
    def _check_combinations(self, info: Any) -> RunConfig:
        context = info.context or {}
        try:
            self.parameter_shapes()
            self.activation_bytes()
        except ValueError as unusable:      # the model cannot take this dataset's inputs: no size is known
            errors = [("model", str(unusable))]
        else:
            errors = [*self._field_errors(), *self._method_errors(), *self._memory_errors(context),
                      *self._projection_budget_errors(context)]
        if errors:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [InitErrorDetails(type=PydanticCustomError("invalid_run_config", message),
                                  loc=(field,), input=getattr(self, field)) for field, message in errors],
            )
        return self

    def _field_errors(self) -> Iterator[tuple[str, str]]:
        """(field, message) for each field out of its range, or not matching the field beside it."""
        if not (self.p_init in P_INITS or self.from_run_id is not None):
            yield "p_init", f"unknown p_init {self.p_init!r}: use one of {', '.join(P_INITS)} or from_run:<run id>"
        if len(self.power_coefs) != len(self.power_orders):
            yield "power_coefs", (f"give one coefficient per power: {len(self.power_orders)} orders "
                                  f"{self.power_orders} but {len(self.power_coefs)} coefficients")
        orders = self.power_orders
        if any(o < 2 or o > MAX_POWER_ORDER for o in orders) or len(set(orders)) != len(orders):
            yield "power_orders", (f"power orders must be distinct integers ≥ 2 and ≤ {MAX_POWER_ORDER} "
                                   "(the linear term is always present)")
        if not all(0 <= beta < 1 for beta in self.adam_betas):
            yield "adam_betas", f"Adam's β₁ and β₂ lie in [0, 1), e.g. [0.9, 0.99]; got {list(self.adam_betas)}"
        if any(w < 1 or w > 100_000 for w in self.fc_widths):
            yield "fc_widths", "each hidden width must be between 1 and 100000"
        if any(not math.isfinite(c) or abs(c) > MAX_POWER_COEF for c in self.power_coefs):
            yield "power_coefs", (f"each power coefficient λ must be a finite number between {-MAX_POWER_COEF:g} "
                                  f"and {MAX_POWER_COEF:g} (e.g. [0.1, 0.01])")
        spec = self.dataset_spec
        if self.input_scaling == "unit" and not spec.pixels:
            yield "input_scaling", (f"input_scaling 'unit' divides pixel values 0–255 by 255, but {self.dataset} "
                                    "holds real-valued features: use 'standardize' or 'raw'")
        if self.train_size is not None and self.train_size > spec.train_size:
            yield "train_size", (f"train_size {self.train_size:,} exceeds the {spec.train_size:,} training examples "
                                 f"of {self.dataset}: lower it, or leave it unset to use them all")
        if self.test_size is not None and self.test_size > spec.test_size:
            yield "test_size", (f"test_size {self.test_size:,} exceeds the {spec.test_size:,} test examples "
                                f"of {self.dataset}: lower it, or leave it unset to use them all")

    def _method_errors(self) -> Iterator[tuple[str, str]]:
        """(field, message) for each setting the method, projection or network size rules out."""
        subspace = self.method == "subspace"
        if self.D > MAX_WEIGHTS:
            yield self._size_field(), (f"the network has D = {self.D:,} weights, more than the {MAX_WEIGHTS:,} a run may "
                                "train (θ, its gradient and Adam's two moments alone would take "
                                f"{16 * self.D / 2**30:,.0f} GiB): narrow fc_widths")
        if subspace and self.d > self.D:
            yield "d", (f"d = {self.d:,} exceeds D = {self.D:,}, the number of weights of the network: a subspace "
                        "of the weight space has at most D dimensions; lower d (or train all weights with method "
                        "'direct')")
        if subspace and self.train_p and self.projection != "dense":
            yield "train_p", (f"train_p needs projection 'dense' (got {self.projection!r}): "
                              "only an explicit matrix can be trained")
        if self.train_p and not subspace:
            yield "train_p", "train_p applies to subspace training, not method 'direct'"
        if self.train_rff_b and not (subspace and "rff" in self.augmentation):
            yield "train_rff_b", ("train_rff_b trains the RFF matrices B: it needs method 'subspace' and an "
                                  f"augmentation with rff (got {self.method!r}, {self.augmentation!r})")
        if subspace and self.projection == "fastfood" and self.p_init != "normal":
            yield "p_init", ("fastfood has its own structure (Gaussian diagonal between Hadamard transforms); "
                             f"p_init {self.p_init!r} needs projection 'dense' or 'sparse'")
        if subspace and self.p_init == "orthogonal":
            if self.projection != "dense":
                yield "p_init", "p_init 'orthogonal' needs projection 'dense'"
            elif self.k > self.D:
                yield "p_init", (f"p_init 'orthogonal' needs k ≤ D, but k = {self.k} > D = {self.D}: "
                                 "lower d or the number of features")

    def _memory_errors(self, context: dict) -> Iterator[tuple[str, str]]:
        """Training's memory (weights, optimiser state, a batch's activations) over the memory budget."""
        memory_mb = float(context.get("memory_budget_mb", DEFAULT_MEMORY_BUDGET_MB))
        if self.D <= MAX_WEIGHTS and (need_mb := self.training_bytes() / 2**20) > memory_mb:
            weights_part = (f"{self.D:,} weights × 16 bytes (θ, gradient, Adam's two moments)"
                            if self.method != "subspace" else f"θ_0, θ_D and its gradient for D = {self.D:,} weights")
            field = "batch_size" if self._activations_dominate() else self._size_field()
            yield field, (f"training needs about {need_mb:,.0f} MiB ({weights_part}, plus the activations of a "
                          f"batch of {self.batch_size:,}), over the memory budget of {memory_mb:,.0f} MiB "
                          f"({MEMORY_BUDGET_ENV}): narrow fc_widths or lower batch_size")

    def _projection_budget_errors(self, context: dict) -> Iterator[tuple[str, str]]:
        """A dense or sparse P, or the RFF matrices B, over the budget of one matrix."""
        subspace = self.method == "subspace"
        budget_mb = float(context.get("dense_budget_mb", DEFAULT_DENSE_BUDGET_MB))
        over = f"over the budget of {budget_mb:,.0f} MiB ({DENSE_BUDGET_ENV})"
        memory = {"dense": self.dense_p_bytes, "sparse": self.sparse_p_bytes}.get(self.projection)
        if subspace and memory and (need_mb := memory() / 2**20) > budget_mb:
            if self.projection == "dense":
                yield "projection", (f"a dense P of D×k = {self.D:,}×{self.k:,} needs {need_mb:,.0f} MiB, {over}; "
                                     "use projection 'sparse' or 'fastfood', or lower d")
            else:
                yield "projection", (f"a sparse P of D×k = {self.D:,}×{self.k:,} holds "
                                     f"~{self.sparse_p_nonzeros():,} non-zeros, {need_mb:,.0f} MiB, "
                                     f"{over}; use projection 'fastfood', or lower d")
        if subspace and "rff" in self.augmentation and (need_mb := self.rff_B_bytes() / 2**20) > budget_mb:
            yield "rff_features", (f"the RFF matrices B (m×d = {self.m:,}×{self.d:,}"
                                   f"{' per weight tensor' if self.rff_per_tensor else ''}) need {need_mb:,.0f} MiB, "
                                   f"{over}: set rff_features lower or share one B across tensors"
                                   + (" (a trained B takes four times its size)" if self.train_rff_b else ""))

    def _size_field(self) -> str:
        """The field that sets the network's size: fc_widths for fc, the model itself otherwise."""
        return "fc_widths" if self.model == "fc" else "model"

    def _activations_dominate(self) -> bool:
        """Whether a batch's activations take more of training's memory than the weights do."""
        return 2 * self.activation_bytes() > self.training_bytes()

    @property
    def warnings(self) -> list[str]:
        """Valid but questionable choices a researcher should be told about."""
        notes = []
        if self.method == "subspace" and self.normalize_p == "block_sum":
            notes.append("normalize_p 'block_sum' divides by column sums that can be near zero: "
                         "kept for faithful reproduction of Lam & Lee; expect unstable runs")
        if self.from_run_id is not None and self.normalize_p != "none":
            notes.append(f"p_init {self.p_init!r} samples P from the trained statistics, then normalize_p "
                         f"{self.normalize_p!r} rescales it: use normalize_p 'none' to keep those statistics")
        return notes


def validation_messages(error: ValidationError) -> list[dict[str, str]]:
    """A ValidationError as [{"field": ..., "message": ...}], for people and for 422 bodies."""
    return [{"field": ".".join(str(p) for p in e["loc"]) or "config", "message": e["msg"]} for e in error.errors()]
