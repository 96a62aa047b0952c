"""What /api/config/plugins reports: every model and dataset a run config may name, and the plugins that failed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class InstalledOut(BaseModel):
    name: str = Field(description="The run-config `model` or `dataset` value.")
    source: Literal["built-in", "plugin"] = Field(description="Built into the lab, or registered by a package.")
    package: str = Field(description="The distribution that provides it (`idlab` for the built-ins).")
    version: str | None = Field(description="The providing package's version (none for the built-ins).")
    description: str = Field(description="What it is, in the plugin's words.")
    entry_point: str | None = Field(None, description="The entry point's target, `module:attribute` (plugins only).")
    warnings: list[str] = Field(description="Problems that do not stop it from being used.")


class ModelOut(InstalledOut):
    batchable: bool | None = Field(None, description=(
        "Whether the plugin allows several runs to be evaluated as one vmap (plugins only; the worker also tries)."))


class DatasetPluginOut(InstalledOut):
    input_shape: list[int] | None = Field(None, description="(C, H, W); a table of F features is (F, 1, 1).")
    classes: int | None = None
    train_size: int | None = None
    test_size: int | None = None
    pixels: bool | None = Field(None, description="0–255 pixel values (`unit` scaling allowed), or real-valued.")


class BrokenOut(BaseModel):
    group: str = Field(description="The entry-point group: `idlab.models` or `idlab.datasets`.")
    name: str
    package: str
    version: str
    error: str = Field(description="Why it was not registered (also in the log).")


class PluginsOut(BaseModel):
    models: list[ModelOut]
    datasets: list[DatasetPluginOut]
    broken: list[BrokenOut]
