"""Database models: experiments, runs, their metric points and artefacts, and the workers.

The runs table is the source of truth for what has to run: the broker message
carries only a run id. A run moves queued → running → succeeded | failed |
cancelled | diverged; `attempt` counts the executions charged against max_attempts
(a hand-back at shutdown is not charged; a retry starts again), `claim_token` says
which execution owns it (a message delivered twice executes once).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The run statuses are a contract (idlab.statuses); the domain's modules import them from here.
from idlab.statuses import CANCELLED, DIVERGED, FAILED, FINISHED, QUEUED, RUNNING, STATUSES, SUCCEEDED  # noqa: F401

# Integer primary keys that autoincrement on SQLite and Postgres alike.
BigId = BigInteger().with_variant(Integer, "sqlite")



def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC timestamps on every database (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return value.astimezone(timezone.utc) if value is not None and value.tzinfo else value

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default="grid")
    base_config: Mapped[dict] = mapped_column(JSON)
    grid: Mapped[dict] = mapped_column(JSON, default=dict)
    seeds: Mapped[list] = mapped_column(JSON, default=list)
    baseline: Mapped[dict] = mapped_column(JSON, default=dict)      # {"mode": "individual"|"global"|None, "value": …}
    # kind "search": {"d_start", "tolerance", "d_max", "max_rounds"} (backend.domain.analysis.search.Parameters)
    search: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Hidden from the lists (its runs too) unless asked for; nothing else changes.
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Free text a researcher keeps with it (backend.domain.tags.clean_notes), shown as text, never as HTML.
    notes: Mapped[str] = mapped_column(Text, default="", server_default="")

    runs: Mapped[list[Run]] = relationship(back_populates="experiment", order_by="Run.id")
    tag_rows: Mapped[list[ExperimentTag]] = relationship(order_by="ExperimentTag.tag_key",
                                                         cascade="all, delete-orphan", passive_deletes=True)
    search_groups: Mapped[list[SearchGroup]] = relationship(order_by="SearchGroup.position",
                                                              cascade="all, delete-orphan")


class SearchGroup(Base):
    """The adaptive search of one group of a search experiment (one combination of its grid fields).

    `rounds` lists the evaluated d in order: [{"round", "d", "run_ids", "mean", "n", "reached",
    "diverged"}, …], the last one possibly still running (mean and reached null). The bracket
    (lo, hi] holds the crossing of the threshold. Rounds are appended under a lock on the
    experiment row (`backend.domain.search_rounds`), so two workers finishing at once queue one round.
    """

    __tablename__ = "search_groups"
    __table_args__ = (UniqueConstraint("experiment_id", "position", name="uq_search_groups_experiment_position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)                  # the group's place in the grid's order
    grid_values: Mapped[dict] = mapped_column(JSON, default=dict)   # e.g. {"augmentation": "rff"}
    # backend.domain.analysis.search.STATUSES
    status: Mapped[str] = mapped_column(String(20), default="searching", index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    threshold: Mapped[float | None] = mapped_column(Float)
    bracket_lo: Mapped[int | None] = mapped_column(Integer)
    bracket_hi: Mapped[int | None] = mapped_column(Integer)
    rounds: Mapped[list] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    experiment_id: Mapped[int | None] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20), default="member")   # member | baseline
    config: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default=QUEUED, index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    claim_token: Mapped[str | None] = mapped_column(String(64))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # Column names differ from the attributes: SQLite identifiers are case-insensitive, so
    # columns "D" and "d" (or "dim_D" and "dim_d") would collide.
    D: Mapped[int | None] = mapped_column("full_dim", Integer)
    k: Mapped[int | None] = mapped_column("feature_dim", Integer)
    d: Mapped[int | None] = mapped_column("intrinsic_dim", Integer)
    progress: Mapped[dict] = mapped_column(JSON, default=dict)        # latest step, epoch and metric values
    final_metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)
    # The batch its latest execution trained in (runs trained together share it; None when trained alone).
    batch_id: Mapped[str | None] = mapped_column(String(32), index=True)
    # Hidden from the runs list unless asked for (as are the runs of an archived experiment).
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Free text a researcher keeps with it (backend.domain.tags.clean_notes), shown as text, never as HTML.
    notes: Mapped[str] = mapped_column(Text, default="", server_default="")

    experiment: Mapped[Experiment | None] = relationship(back_populates="runs")
    tag_rows: Mapped[list[RunTag]] = relationship(order_by="RunTag.tag_key", cascade="all, delete-orphan",
                                                  passive_deletes=True)


class RunTag(Base):
    """One tag of one run. Tags are rows, not a JSON list, so that `?tag=` is an indexed EXISTS on SQLite
    and Postgres alike and a run's tags go with it (ON DELETE CASCADE); see migration 0006.
    `tag` is the spelling given, `tag_key` its lower case: filters and uniqueness compare the key."""

    __tablename__ = "run_tags"
    __table_args__ = (UniqueConstraint("run_id", "tag_key", name="uq_run_tags_run_id_tag_key"),
                      Index("ix_run_tags_tag_key_run_id", "tag_key", "run_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(BigId, ForeignKey("runs.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(40))
    tag_key: Mapped[str] = mapped_column(String(40))


class ExperimentTag(Base):
    """One tag of one experiment (as RunTag)."""

    __tablename__ = "experiment_tags"
    __table_args__ = (UniqueConstraint("experiment_id", "tag_key", name="uq_experiment_tags_experiment_id_tag_key"),
                      Index("ix_experiment_tags_tag_key_experiment_id", "tag_key", "experiment_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(BigId, ForeignKey("experiments.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(40))
    tag_key: Mapped[str] = mapped_column(String(40))


class MetricPoint(Base):
    """One value of one series of one run; (run, key, step) is unique, so re-executions never duplicate."""

    __tablename__ = "metric_points"
    __table_args__ = (UniqueConstraint("run_id", "key", "step", name="uq_metric_points_run_key_step"),
                      Index("ix_metric_points_run_id_id", "run_id", "id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)   # the SSE event id: increases as points arrive
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(40))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    value: Mapped[float] = mapped_column(Float)


class MetricEnvelope(Base):
    """The envelope of one series over a bucket of ENVELOPE_STEPS steps: its first, lowest, highest
    and last point. Written beside the points, so a long curve is drawn from a few thousand rows
    instead of every point, and a spike of any height still shows (backend/domain/points.py)."""

    __tablename__ = "metric_envelopes"
    __table_args__ = (UniqueConstraint("run_id", "key", "bucket", name="uq_metric_envelopes_run_key_bucket"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(40))
    bucket: Mapped[int] = mapped_column(Integer)          # step // ENVELOPE_STEPS
    n: Mapped[int] = mapped_column(Integer)               # points written into it (overwrites count again)
    first_step: Mapped[int] = mapped_column(Integer)
    first_value: Mapped[float] = mapped_column(Float)
    first_epoch: Mapped[int] = mapped_column(Integer)
    last_step: Mapped[int] = mapped_column(Integer)
    last_value: Mapped[float] = mapped_column(Float)
    last_epoch: Mapped[int] = mapped_column(Integer)
    min_step: Mapped[int] = mapped_column(Integer)
    min_value: Mapped[float] = mapped_column(Float)
    min_epoch: Mapped[int] = mapped_column(Integer)
    max_step: Mapped[int] = mapped_column(Integer)
    max_value: Mapped[float] = mapped_column(Float)
    max_epoch: Mapped[int] = mapped_column(Integer)


#: The artifact holding a run's histograms and per-block statistics of P, θ_d (and B): what
#: p_init from_run:<id> samples from and GET /api/runs/{id}/distributions serves.
STATISTICS_ARTIFACT = "statistics"
#: A succeeded subspace run's model file (worker/subspace/export.py), base64 in {"format", "bytes", "base64"}.
MODEL_ARTIFACT = "model"


class RunArtifact(Base):
    """What a run keeps besides its curves: histograms and statistics of P and θ_d."""

    __tablename__ = "run_artifacts"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_run_artifacts_run_name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Worker(Base):
    """A worker process, as it last reported itself."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200))
    device: Mapped[str] = mapped_column(String(60))
    queues: Mapped[list] = mapped_column(JSON, default=list)
    current_run_id: Mapped[int | None] = mapped_column(Integer)
    current_batch: Mapped[list | None] = mapped_column(JSON, nullable=True)   # the run ids it trains together
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyKey(Base):
    """The answer to a POST sent with an Idempotency-Key header, kept so that a client retrying the
    same request gets the same answer (the same ids) instead of creating its resources again.

    Stored in the transaction that creates the resources: the unique (key, endpoint) makes a
    concurrent duplicate fail its commit, and with it everything it would have created.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("key", "endpoint", name="uq_idempotency_keys_key_endpoint"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    endpoint: Mapped[str] = mapped_column(String(100))         # e.g. "POST /api/runs"
    request_hash: Mapped[str] = mapped_column(String(64))      # sha256 of the canonical request
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ModelEvaluation(Base):
    """A model file sent to the lab to be rebuilt and evaluated by a worker on the lab's own data.

    queued → running → succeeded | failed (backend.domain.evaluations). The file is kept with it
    (a few kilobytes: θ_d, and P or B where trained), so the worker needs nothing but the id.
    """

    __tablename__ = "model_evaluations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default=QUEUED, index=True)
    device: Mapped[str] = mapped_column(String(20))                   # as asked: cpu | cuda | cuda:N | auto
    file: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))                   # of the whole file, as sent
    config: Mapped[dict] = mapped_column(JSON)                        # the run config the file describes
    recorded_test_acc: Mapped[float | None] = mapped_column(Float)    # as the run recorded it at export
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # test_acc, test_loss, device, sizes
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
