"""/api/config: the run-config schema and the paper presets, for forms and clients (the single sources of
truth are idlab.config and idlab.presets)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from backend.api.deps import SessionDep, SettingsDep
from backend.api.errors import reject
from backend.api.schemas.common import MAX_ID
from backend.api.schemas.plugins import PluginsOut
from backend.api.schemas.presets import PresetOut
from backend.domain.analysis import search
from backend.domain.lifecycle import RETRYABLE
from backend.domain.models import FINISHED, STATUSES, SUCCEEDED, Run
from backend.domain.validation import error
from idlab import plugins, presets
from idlab.config import RunConfig
from idlab.metrics import FINAL, SERIES

router = APIRouter(prefix="/config", tags=["config"])


@router.get("/schema", summary="The run-config JSON schema, with defaults and descriptions")
def run_config_schema(settings: SettingsDep) -> dict[str, Any]:
    """The JSON schema a run config must satisfy, the server's dense-P and memory budgets (in MiB; cross-field
    checks are applied on submission), the metric keys runs report, and the statuses a run or a search
    group can be in (in their lifecycle's order: the dashboard lists, filters and sorts by them)."""
    return {"schema": RunConfig.model_json_schema(), "dense_p_budget_mb": settings.dense_p_budget_mb,
            "memory_budget_mb": settings.memory_budget_mb,
            "series": list(SERIES), "final_metrics": list(FINAL),
            "run_statuses": list(STATUSES), "finished_statuses": list(FINISHED),
            "retryable_statuses": list(RETRYABLE), "search_statuses": list(search.STATUSES)}


@router.get("/plugins", response_model=PluginsOut, summary="The models and datasets installed: built-ins and plugins")
def list_plugins() -> dict[str, Any]:
    """Every model and dataset a run config may name — the built-ins, then those that installed packages register
    through the entry-point groups `idlab.models` and `idlab.datasets` — with the providing package, its version
    and a description; and the entry points that could not be registered, with why. The API's process is
    asked: a worker validates against its own environment, which must hold the same plugins."""
    return plugins.catalogue()


@router.get("/presets", response_model=list[PresetOut],
            summary="The paper presets: experiment requests with their settings")
def list_presets() -> list[dict[str, Any]]:
    """Li et al. (2018) and Lam & Lee (2020) as experiment requests (POST them to /api/experiments), each with
    its paper, what the paper reports and where the lab's config differs. A preset with `parameters` is a
    template: fill it with GET /api/config/presets/{id}?run_id=…."""
    return [preset.as_json() for preset in presets.PRESETS]


@router.get("/presets/{preset_id}", response_model=PresetOut,
            summary="One preset; a template filled with its source run")
def read_preset(
    preset_id: Annotated[str, Path(max_length=64, description="The preset's id, e.g. `li-mnist-fc`.")],
    session: SessionDep,
    run_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description=(
        "For a template: the succeeded run with trained P whose per-block statistics the new P is drawn from; "
        "its network and augmentation fields are copied so the blocks match."))] = None,
) -> dict[str, Any]:
    try:
        preset = presets.get(preset_id)
    except presets.PresetError as unknown:
        raise HTTPException(404, unknown.message) from None
    if run_id is None:
        return preset.as_json()
    source = None
    if preset.is_template:
        run = session.get(Run, run_id)
        if run is None:
            raise HTTPException(404, f"run {run_id} not found")
        if run.status != SUCCEEDED:
            raise reject([error(("query", "run_id"), f"run {run_id} is {run.status}: its trained P is recorded "
                                "once it has succeeded", input_=run_id)])
        source = run.config
    try:
        request = presets.fill(preset, run_id, source)
    except presets.PresetError as problem:
        raise reject([error(("query", "run_id"), problem.message, input_=run_id)]) from None
    return {**preset.as_json(), "parameters": [], "request": request, "run_count": presets.run_count(request)}
