"""Models and datasets from installed packages: the entry-point groups `idlab.models` and `idlab.datasets`.

A package adds a network or a dataset to the lab by naming, in its metadata, an object of this module:

    [project.entry-points."idlab.models"]
    resnet_small = "my_package.specs:residual_cnn"        # a ModelPlugin
    [project.entry-points."idlab.datasets"]
    wine = "my_package.specs:wine"                        # a DatasetPlugin

The entry point's name is the name a run config uses (`"model": "resnet_small"`). The object it
names is a description, torch-free, so that the API — which never imports torch — can validate a
run against it: a model's parameter shapes (hence D, and with d the checks d ≤ D and the memory
budgets), a dataset's input shape, classes and split sizes. The torch code sits behind a
"module:attribute" string (`ModelPlugin.build`, `DatasetPlugin.load`) that only the worker imports.

Only what is installed is ever imported: a run config names a plugin, never a module, and a name
that is not registered is refused at validation (`idlab.config`). A plugin that cannot be loaded
(its module fails to import, the object is of the wrong type, its name is taken) is logged and
listed with its error (`Registry.broken`); the lab runs on without it.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

log = logging.getLogger("idlab.plugins")

MODEL_GROUP = "idlab.models"
DATASET_GROUP = "idlab.datasets"
#: The built-in names, which no plugin may take (idlab.config builds them).
BUILTIN_MODELS = ("fc", "lenet")
BUILTIN_DATASETS = ("mnist", "fashion_mnist", "cifar10", "synthetic")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
TARGET_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

InputShape = tuple[int, int, int]
ParameterShapes = list[tuple[str, tuple[int, ...]]]


@dataclass(frozen=True)
class ModelPlugin:
    """A network, described without torch.

    parameter_shapes(input_shape, classes) → [(name, shape), …]: the module's parameters in
        `named_parameters()` order, for inputs of shape (C, H, W) and `classes` outputs. It is θ_D's
        layout: D = Σ prod(shape). Raise ValueError with a sentence when the network cannot take
        such inputs (the run is refused with it, on the field `model`).
    build: "module:factory", factory(input_shape, classes) → torch.nn.Module returning logits
        (N, classes) for inputs (N, C, H, W); imported by the worker only. The module holds
        parameters and no buffers (θ_D is all of its state); parameters whose name ends in
        `weight` are kernels (He-normal θ_0 with fan_in = prod(shape[1:])), the others biases.
    activations_per_example(input_shape, classes) → values one example leaves in memory on its way
        through the network (input and every layer's output), for the memory budget; None: the input
        and the logits only.
    batchable: whether several runs may be evaluated as one torch.func.vmap over the module
        (the worker also checks it); False trains its runs one at a time.
    """

    description: str
    parameter_shapes: Callable[[InputShape, int], ParameterShapes]
    build: str
    activations_per_example: Callable[[InputShape, int], int] | None = None
    batchable: bool = True


@dataclass(frozen=True)
class DatasetPlugin:
    """A dataset, described without torch or numpy.

    input_shape (C, H, W): images, or a table of F features as (F, 1, 1) — each feature a channel,
        so that `standardize` scales each feature by its own mean and standard deviation.
    classes, train_size, test_size: labels are 0 … classes − 1; the splits hold exactly these sizes.
    pixels: True when the inputs are 0 … 255 values (uint8 images: `unit` scaling divides by 255);
        False for real-valued features (float32; `unit` scaling is refused).
    load: "module:function", function(data_dir) → (train_x, train_y, test_x, test_y) numpy arrays,
        x of shape (N, C, H, W) (uint8 with pixels, else float32), y integers; data_dir is the lab's
        data directory (a pathlib.Path, or None outside the lab) for a dataset that keeps files there.
        Imported by the worker only; the arrays are checked against this description.
    """

    description: str
    input_shape: InputShape
    classes: int
    train_size: int
    test_size: int
    load: str
    pixels: bool = True


@dataclass(frozen=True)
class Installed:
    """A registered plugin: its name in run configs, its description object and where it comes from."""

    name: str
    plugin: ModelPlugin | DatasetPlugin
    package: str
    version: str
    target: str                    # the entry point's value, "module:attribute"
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class BrokenPlugin:
    """An entry point that could not be registered, and why."""

    group: str
    name: str
    package: str
    version: str
    error: str


@dataclass(frozen=True)
class Registry:
    """The installed plugins, by name, and the entry points that failed."""

    models: dict[str, Installed] = field(default_factory=dict)
    datasets: dict[str, Installed] = field(default_factory=dict)
    broken: tuple[BrokenPlugin, ...] = ()


@functools.cache
def registry() -> Registry:
    """The plugins installed in this process's environment, discovered once (`reload` discovers again)."""
    broken: list[BrokenPlugin] = []
    models = _discover(MODEL_GROUP, ModelPlugin, BUILTIN_MODELS, broken)
    datasets = _discover(DATASET_GROUP, DatasetPlugin, BUILTIN_DATASETS, broken)
    return Registry(models, datasets, tuple(broken))


def reload() -> Registry:
    """Discover the plugins again (after installing one into a running process, or in tests)."""
    registry.cache_clear()
    importlib.invalidate_caches()
    return registry()


def _discover(group: str, kind: type, reserved: tuple[str, ...], broken: list[BrokenPlugin]) -> dict[str, Installed]:
    found: dict[str, Installed] = {}
    for entry in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
        package, version = _origin(entry)
        try:
            found[entry.name] = _register(entry, kind, reserved, found, package, version)
        except Exception as problem:  # a plugin's import may raise anything; the lab runs on without it
            message = str(problem) or type(problem).__name__
            log.error("plugin %r (entry point %s = %s, package %s %s) was not registered: %s",
                      entry.name, group, entry.value, package, version, message)
            broken.append(BrokenPlugin(group, entry.name, package, version, message))
    return found


def _register(entry: metadata.EntryPoint, kind: type, reserved: tuple[str, ...], found: dict[str, Installed],
              package: str, version: str) -> Installed:
    """The entry point loaded and checked; raises ValueError (or whatever its import raises) otherwise."""
    if not NAME_PATTERN.match(entry.name):
        raise ValueError(f"the name {entry.name!r} is not a lowercase identifier of at most 40 characters")
    if entry.name in reserved:
        raise ValueError(f"the name {entry.name!r} is built into the lab")
    if entry.name in found:
        raise ValueError(f"the name {entry.name!r} is already registered by {found[entry.name].package}")
    torch_before = "torch" in sys.modules
    try:
        plugin = entry.load()
    except (Exception, SystemExit) as problem:      # a module that calls sys.exit() on import must not end the lab
        raise ValueError(f"loading {entry.value} failed: {type(problem).__name__}: {problem}") from problem
    if not isinstance(plugin, kind):
        raise ValueError(f"{entry.value} is a {type(plugin).__name__}, not an idlab.plugins.{kind.__name__}")
    _check(plugin)
    warnings = ()
    if not torch_before and "torch" in sys.modules:
        warnings = (f"loading {entry.value} imported torch: the API validates runs without torch, so keep "
                    "the torch code in the module named by build/load",)
        log.warning("plugin %r: %s", entry.name, warnings[0])
    return Installed(entry.name, plugin, package, version, entry.value, warnings)


def _check(plugin: ModelPlugin | DatasetPlugin) -> None:
    """Refuse a description the lab could not use: a bad target string, sizes that are not positive."""
    target = plugin.build if isinstance(plugin, ModelPlugin) else plugin.load
    if not isinstance(target, str) or not TARGET_PATTERN.match(target):
        raise ValueError(f"{'build' if isinstance(plugin, ModelPlugin) else 'load'} must be a "
                         f"'module:attribute' string, got {target!r}")
    if isinstance(plugin, DatasetPlugin):
        shape = tuple(plugin.input_shape)
        sizes = (*shape, plugin.classes, plugin.train_size, plugin.test_size)
        if len(shape) != 3 or not all(isinstance(v, int) and v >= 1 for v in sizes):
            raise ValueError(f"input_shape must be (C, H, W) and every size a positive integer, got input_shape "
                             f"{plugin.input_shape!r}, classes {plugin.classes!r}, train_size "
                             f"{plugin.train_size!r}, test_size {plugin.test_size!r}")
        if plugin.classes < 2:
            raise ValueError(f"a classification dataset has at least 2 classes, got {plugin.classes}")


def _origin(entry: metadata.EntryPoint) -> tuple[str, str]:
    """(distribution name, version) that declares the entry point."""
    dist = getattr(entry, "dist", None)
    if dist is None:
        return "unknown", "unknown"
    return dist.metadata["Name"] or "unknown", dist.version or "unknown"


def load_target(target: str) -> Any:
    """The attribute a "module:attribute" string names: for the worker, from a registered plugin only."""
    module_name, _, attribute = target.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


# ---- what is installed, for the API, the CLI and the form ------------------------------------


def model_plugin(name: str) -> ModelPlugin | None:
    """The registered model plugin called `name`, or None (a built-in or unknown name)."""
    installed = registry().models.get(name)
    return installed.plugin if installed else None  # type: ignore[return-value]


def dataset_plugin(name: str) -> DatasetPlugin | None:
    """The registered dataset plugin called `name`, or None (a built-in or unknown name)."""
    installed = registry().datasets.get(name)
    return installed.plugin if installed else None  # type: ignore[return-value]


def model_names() -> list[str]:
    """Every model a run config may name: the built-ins, then the plugins."""
    return [*BUILTIN_MODELS, *registry().models]


def dataset_names() -> list[str]:
    """Every dataset a run config may name: the built-ins, then the plugins."""
    return [*BUILTIN_DATASETS, *registry().datasets]


def describe_installed(name: str, installed: Installed | None, builtin_description: str = "") -> dict[str, Any]:
    """One model or dataset as the API and the CLI list it."""
    if installed is None:
        return {"name": name, "source": "built-in", "package": "idlab", "version": None,
                "description": builtin_description, "warnings": []}
    plugin = installed.plugin
    entry: dict[str, Any] = {"name": name, "source": "plugin", "package": installed.package,
                             "version": installed.version, "description": plugin.description,
                             "entry_point": installed.target, "warnings": list(installed.warnings)}
    if isinstance(plugin, ModelPlugin):
        entry["batchable"] = plugin.batchable
    else:
        entry.update(input_shape=list(plugin.input_shape), classes=plugin.classes, train_size=plugin.train_size,
                     test_size=plugin.test_size, pixels=plugin.pixels)
    return entry


BUILTIN_DESCRIPTIONS = {
    "fc": "Fully connected: in → fc_widths… → classes, ReLU between layers.",
    "lenet": "LeNet-5: conv 6@5×5, pool, conv 16@5×5, pool, 120, 84, classes (inputs of at least 16×16).",
    "mnist": "MNIST handwritten digits, 1×28×28, 10 classes (60,000 / 10,000).",
    "fashion_mnist": "Fashion-MNIST clothing, 1×28×28, 10 classes (60,000 / 10,000).",
    "cifar10": "CIFAR-10 colour images, 3×32×32, 10 classes (50,000 / 10,000).",
    "synthetic": "Generated in memory: MNIST-shaped images of 10 classes (6,000 / 1,000).",
}


def catalogue() -> dict[str, Any]:
    """Every model and dataset installed — built-ins and plugins — and the plugins that failed to load."""
    found = registry()
    return {
        "models": [describe_installed(n, found.models.get(n), BUILTIN_DESCRIPTIONS.get(n, "")) for n in model_names()],
        "datasets": [describe_installed(n, found.datasets.get(n), BUILTIN_DESCRIPTIONS.get(n, ""))
                     for n in dataset_names()],
        "broken": [{"group": b.group, "name": b.name, "package": b.package, "version": b.version, "error": b.error}
                   for b in found.broken],
    }


# ---- the run-config fields that name a model or a dataset --------------------------------------


class RegisteredName:
    """A pydantic annotation for `model` and `dataset`: a string that must be an installed name.

    Validation refuses any other string with the list of what is installed; the JSON schema's
    `enum` is that list as it stands when the schema is asked for (built-ins, then plugins).
    """

    def __init__(self, kind: str, names: Callable[[], list[str]], found: Callable[[], Registry]):
        self.kind, self.names, self.found = kind, names, found

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self.check, core_schema.str_schema(max_length=200))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "enum": self.names()}

    def check(self, value: str) -> str:
        from pydantic_core import PydanticCustomError

        names = self.names()
        if value in names:
            return value
        plugins = self.found().models if self.kind == "model" else self.found().datasets
        listed = ", ".join(f"{n} ({plugins[n].package} {plugins[n].version})" if n in plugins else n for n in names)
        message = (f"unknown {self.kind} {value[:60]!r}: the installed {self.kind}s are {listed} — "
                   f"a plugin package registers more (entry-point group idlab.{self.kind}s)")
        raise PydanticCustomError(f"unknown_{self.kind}", message.replace("{", "(").replace("}", ")"))


def summary() -> str:
    """One line for a process's start-up log: the plugins it registered, and how many failed."""
    found = registry()

    def listed(entries: dict[str, Installed]) -> str:
        return ", ".join(f"{n} ({i.package} {i.version})" for n, i in entries.items()) or "none"

    broken = f"; {len(found.broken)} not registered (see above)" if found.broken else ""
    return f"plugin models: {listed(found.models)}; plugin datasets: {listed(found.datasets)}{broken}"
