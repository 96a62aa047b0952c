"""/api/datasets: which datasets are in the data directory and which a run would download first.

Only looks for the files (`idlab.dataset_files`, no torch, no reading of their content: cheap enough
for every form load); `idlab data list` verifies their content. It is the API's data directory that is
looked at: in the embedded lab the worker shares it; a deployed worker on another machine has its own.
"""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import SettingsDep
from backend.api.schemas.datasets import DatasetOut
from idlab import plugins
from idlab.config import DATASETS
from idlab.dataset_download import mirror_bases
from idlab.dataset_files import CATALOG

router = APIRouter(tags=["datasets"])


@router.get("/datasets", response_model=list[DatasetOut], summary="The datasets: present, missing or generated")
def list_datasets(settings: SettingsDep) -> list[DatasetOut]:
    """Every dataset a run config may name, in the schema's order, with the state of its files (a plugin's
    dataset: `plugin`, its package loads it)."""
    answers = []
    for name in plugins.dataset_names():
        if name not in DATASETS:
            answers.append(DatasetOut(name=name, state="plugin", folder=None, missing_files=[],
                                      download_on_first_use=False, download_bytes=None, mirrors=[]))
            continue
        entry = CATALOG.get(name)
        if entry is None:
            answers.append(DatasetOut(name=name, state="generated", folder=None, missing_files=[],
                                      download_on_first_use=False, download_bytes=None, mirrors=[]))
            continue
        missing = entry.missing(settings.data_dir)
        answers.append(DatasetOut(
            name=name, state="missing" if missing else "present",
            folder=str(entry.directory(settings.data_dir).resolve()),
            missing_files=missing, download_on_first_use=bool(missing) and settings.allow_download,
            download_bytes=entry.served_bytes, mirrors=mirror_bases(name, settings.dataset_mirrors)))
    return answers
