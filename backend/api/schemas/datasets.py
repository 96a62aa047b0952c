"""What /api/datasets reports: each dataset a run can use, and whether its files are there."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class DatasetOut(BaseModel):
    name: str = Field(description="The run-config `dataset` value.")
    state: Literal["present", "missing", "generated", "plugin"] = Field(description=(
        "`present`: every file is in its folder; `missing`: some are not; `generated`: made in memory, no files; "
        "`plugin`: loaded by the installed package that registers it (GET /api/config/plugins)."))
    folder: str | None = Field(description="Where its files go, under the data directory (none when generated).")
    missing_files: list[str] = Field(description="The files not found (raw or .gz for the IDX datasets).")
    download_on_first_use: bool = Field(description=(
        "A run of it fetches the missing files first (the setting allow_download), verified; when false, such "
        "a run fails with the files to put in `folder`."))
    download_bytes: int | None = Field(description="What a download transfers from the public mirrors, in bytes.")
    mirrors: list[str] = Field(description="The base URLs a download tries, in order (the setting dataset_mirrors).")
