"""Settings of the lab, read from the environment (prefix IDLAB_) or a .env file.

The one place every setting is declared: the API, the worker and the CLI read it.
Left unset, the database and the broker are the embedded ones, inside the data
directory: SQLite at <data_dir>/idlab.db and a filesystem queue at <data_dir>/broker.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from idlab.config import DEFAULT_DENSE_BUDGET_MB, DEFAULT_MEMORY_BUDGET_MB, validation_context
from idlab.dataset_download import DEFAULT_MIRRORS, parse_mirror


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IDLAB_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("idlab-data"), description="The lab's folder: datasets (MNIST/raw/…, cifar-10-batches-py/…) and, in the embedded mode, the database and the queue.")
    database_url: str | None = Field(None, description="SQLAlchemy URL, e.g. postgresql+psycopg2://user@host/db (default: SQLite in data_dir).")
    broker_url: str | None = Field(None, description="Celery broker, e.g. redis://host:6379/0 (default: a filesystem queue in data_dir).")
    api_token: str | None = Field(None, description="When set, every mutating call needs 'Authorization: Bearer <token>'.")
    allow_download: bool = Field(True, description=(
        "Download a missing dataset on first use (each file verified against its published digests) instead of "
        "failing; false keeps the lab offline: a missing dataset is then an error naming the files and the folder."))
    dataset_mirrors: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_MIRRORS), description=(
        "Where downloads come from, tried in turn: DATASET=URL (that dataset's files at URL<file>) or URL (every "
        "dataset's files at URL<dataset>/<file>), comma-separated or a JSON list (default: the public mirrors)."))
    dense_p_budget_mb: float = Field(DEFAULT_DENSE_BUDGET_MB, gt=0, description="Largest dense P a run may allocate, in MiB.")
    memory_budget_mb: float = Field(DEFAULT_MEMORY_BUDGET_MB, gt=0, description=(
        "Memory one run may take for training, in MiB: θ, its gradient and Adam's moments (16 bytes per weight "
        "when training directly) and the activations of a batch; a larger run is refused at submission."))
    heartbeat_seconds: float = Field(5.0, gt=0, description="How often a worker reports that its run is alive.")
    stale_after_seconds: float = Field(60.0, gt=0, description="A running run without heartbeat this long is reaped.")
    max_attempts: int = Field(3, ge=1, description="Executions of a run before a vanished worker fails it instead of requeueing.")
    reaper_seconds: float = Field(5.0, gt=0, description="How often the reaper looks for runs whose worker vanished and for lost queue messages.")
    batch_runs: int | None = Field(None, ge=1, le=256, description=(
        "Subspace runs a worker trains together as one batch when they share data, model and batch size "
        "(default: 32 on a GPU, 4 on a CPU; 1 trains every run alone). `idlab worker --batch-runs K` sets it."))
    torch_threads: int | None = Field(None, ge=1, description="CPU threads torch may use per run (default: the cores divided among the worker's training processes).")
    worker_processes: int = Field(1, ge=1, description="Training processes of this worker (`idlab worker --concurrency`, set by it): a batch takes its share of the queued runs it can train, so every process gets work.")
    kernel_cache_dir: Path | None = Field(None, description="Folder of the native kernels a worker builds for its CPU on first use (default: ~/.cache/idlab/kernels).")
    c_compiler: str | None = Field(None, description="C compiler that builds the native fastfood kernel (default: cc, gcc or clang on PATH; without one, fastfood computes with torch ops, slower).")
    compile_step: Literal["auto", "always", "never"] = Field("auto", description="torch.compile of each run's training step: always, never, or auto — only where the measured gain on the run's device over the run's expected steps exceeds the compile time (worker/subspace/compiled.py; on a CPU it does not).")
    train_niceness: int = Field(10, ge=0, le=19, description="Niceness of a training process (os.nice): the API and the worker's own loop, at 0, are scheduled first on a machine whose cores all train.")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "Origins allowed by CORS (none by default): comma-separated, or a JSON list."))
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "Host names the lab answers to besides localhost, 127.0.0.1 and [::1] (any port): comma-separated, or a "
        "JSON list, e.g. lab.example,10.0.0.5. A request for any other Host is refused with 400 (DNS rebinding)."))
    max_request_bytes: int = Field(1_048_576, ge=1024, description="Largest request body the API reads, in bytes (1 MiB); "
                                   "a larger one is refused with 413 before it is parsed.")
    max_experiment_runs: int = Field(1000, ge=1, description="Most runs one experiment request may queue (grid × seeds + baselines).")
    idempotency_key_hours: float = Field(24.0, gt=0, le=24 * 365, description=(
        "How long the answer to a POST sent with an Idempotency-Key is kept: a repeat within it gets the "
        "same answer and creates nothing; after it, the key may be used again."))
    sse_poll_seconds: float = Field(0.3, gt=0, le=10, description="How often an open event stream looks for new points and status changes.")
    sse_ping_seconds: float = Field(15.0, gt=0, description="Keep-alive comment interval of event streams (proxies drop silent connections).")
    sse_max_streams: int = Field(100, ge=1, description="Most event streams the API serves at once; one more is refused with 503.")
    sse_max_streams_per_client: int = Field(10, ge=1, description=(
        "Most event streams one client address may hold open; one more is refused with 429 (a browser tab "
        "holds one or two)."))

    @field_validator("cors_origins", "allowed_hosts", "dataset_mirrors", mode="before")
    @classmethod
    def _split_list(cls, value):
        """IDLAB_CORS_ORIGINS=http://a.example,http://b.example as well as a JSON list (and so for hosts)."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]

    @field_validator("dataset_mirrors")
    @classmethod
    def _mirror_entries(cls, entries: list[str]) -> list[str]:
        """Each entry DATASET=URL or URL, checked at start-up rather than at a run's first download."""
        for entry in entries:
            parse_mirror(entry)
        return entries

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names_only(cls, hosts: list[str]) -> list[str]:
        """Names as a Host header carries them, without scheme, path or port: lab.example, 10.0.0.5, [2001:db8::5]."""
        for host in hosts:
            bare = host.strip("[]")
            if not host or "/" in host or (":" in host and not (host.startswith("[") and host.endswith("]"))) \
                    or any(c in bare for c in " []@"):
                raise ValueError(f"{host!r} is not a host name: give names or addresses without scheme or port, "
                                 "e.g. lab.example or 10.0.0.5 or [2001:db8::5]")
        return hosts

    def validation_context(self) -> dict[str, float]:
        """The context a run config is validated in here: this lab's dense-P and memory budgets."""
        return validation_context(self.dense_p_budget_mb, self.memory_budget_mb)

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'idlab.db').resolve()}"

    @property
    def broker(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def embedded_broker_dir(self) -> Path:
        return (self.data_dir / "broker").resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
