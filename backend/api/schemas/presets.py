"""Paper presets as the API serves them (the presets themselves live in idlab.presets)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PresetParameter(BaseModel):
    name: str = Field(description="What a template needs before it can be submitted, e.g. `run_id`.")
    description: str


class PresetOut(BaseModel):
    id: str
    label: str = Field(description="Short name, for a button.")
    paper: str = Field(description="The paper whose settings the preset holds.")
    title: str = Field(description="The settings in one line.")
    description: str = Field(description="Every setting, and where the lab's config differs from the paper.")
    published: dict[str, Any] = Field(description="What the paper reports, to compare a measurement with.")
    parameters: list[PresetParameter] = Field(description="Empty, or what a template needs: fill it with "
                                              "GET /api/config/presets/{id}?run_id=….")
    request: dict[str, Any] = Field(description="The experiment request to POST to /api/experiments.")
    run_count: int = Field(description="Runs the request queues.")
