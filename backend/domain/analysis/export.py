"""An experiment's runs as flat rows — config and final metrics side by side — for CSV or JSON.

Columns: the run's own fields (its tags and notes among them), then `config.<field>` for every run-config field,
then `final.<metric>` for every final metric any run reported. In CSV, list values
(fc_widths, adam_betas, …) are written as JSON text; in JSON they stay lists.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from backend.domain import lifecycle
from backend.domain.models import Run
from backend.domain.tags import tags_of
from idlab.config import RunConfig

RUN_COLUMNS = ("run_id", "experiment_id", "role", "status", "attempt", "D", "k", "d", "created_at",
               "started_at", "finished_at", "duration_seconds", "error", "tags", "notes")


def rows(runs: Sequence[Run]) -> tuple[list[str], list[dict]]:
    """(columns, one dict per run)."""
    config_fields = list(RunConfig.model_fields)
    config_fields += sorted({name for run in runs for name in run.config} - set(config_fields))
    metrics = sorted({name for run in runs for name in (run.final_metrics or {})})
    columns = [*RUN_COLUMNS, *(f"config.{name}" for name in config_fields), *(f"final.{name}" for name in metrics)]
    table = []
    for run in runs:
        row = {
            "run_id": run.id, "experiment_id": run.experiment_id, "role": run.role, "status": run.status,
            "attempt": run.attempt, "D": run.D, "k": run.k, "d": run.d,
            "created_at": _time(run.created_at), "started_at": _time(run.started_at),
            "finished_at": _time(run.finished_at), "duration_seconds": lifecycle.duration_seconds(run),
            "error": run.error, "tags": tags_of(run), "notes": run.notes,
        }
        row |= {f"config.{name}": run.config.get(name) for name in config_fields}
        row |= {f"final.{name}": (run.final_metrics or {}).get(name) for name in metrics}
        table.append(row)
    return columns, table


def to_csv(columns: list[str], table: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({name: _cell(value) for name, value in row.items()})
    return out.getvalue()


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        # Spreadsheets execute cells starting with these; a quote makes them text.
        return "'" + value
    return value


def _time(value):
    return value.isoformat() if value is not None else None
