"""/api/config: the run-config schema, for forms and clients (the single source of truth is idlab.config)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.deps import SettingsDep
from idlab.config import RunConfig
from idlab.metrics import FINAL, SERIES

router = APIRouter(prefix="/config", tags=["config"])


@router.get("/schema", summary="The run-config JSON schema, with defaults and descriptions")
def run_config_schema(settings: SettingsDep) -> dict[str, Any]:
    """The JSON schema a run config must satisfy, the server's dense-P budget (in MiB; cross-field
    checks are applied on submission) and the metric keys runs report."""
    return {"schema": RunConfig.model_json_schema(), "dense_p_budget_mb": settings.dense_p_budget_mb,
            "series": list(SERIES), "final_metrics": list(FINAL)}
