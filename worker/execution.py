"""One execution of one run: claim it, train it with the engine, record how it ended.

This is where the engine meets the database. The engine (`worker.subspace`) gets a
config, the data and a callback (`RunRecorder`), and returns a RunResult; this
module turns that into rows: the points, the "statistics" artefact, the final
status through `backend.lifecycle`. Every change to the run is conditional on the
claim token, so an execution that lost its run (reaped while unreachable) changes
nothing.
"""

from __future__ import annotations

import logging
import threading
import traceback
from datetime import datetime, timezone

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend import lifecycle, search_rounds
from backend.db import make_engine
from backend.models import CANCELLED, FAILED, STATISTICS_ARTIFACT, Run, RunArtifact
from backend.settings import Settings
from idlab import metrics as M
from idlab.config import RunConfig, validation_messages
from worker import presence
from worker.devices import configure_torch_threads, device_label
from worker.heartbeat import Heartbeat
from worker.recorder import LOST, SHUTDOWN, RunRecorder

log = logging.getLogger(__name__)

TRACEBACK_FRAMES = 4
ERROR_CHARS = 4000


class RunSetupError(RuntimeError):
    """The run cannot start (bad config, missing dataset, missing from_run statistics): failed with this message."""


def execute(run_id: int, worker_name: str, settings: Settings, shutdown: threading.Event) -> str:
    """Claim run `run_id` for `worker_name` and execute it; returns how it ended, for the log.

    A run that is not queued (a duplicate delivery, a run cancelled while queued, a
    run already executed) is left alone: "dropped".
    """
    engine = make_engine(settings.database)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    try:
        with sessions() as session:
            run = session.get(Run, run_id)
            token = lifecycle.claim(session, run_id, worker_name)
            if token is None:
                status = session.scalar(select(Run.status).where(Run.id == run_id))
                log.info("run %s is %s, not queued: message dropped (a duplicate delivery or a cancelled run)",
                         run_id, status or "missing")
                return "dropped"
            raw_config = dict(run.config)
        log.info("run %s claimed by %s (token %s)", run_id, worker_name, token[:8])
        return Execution(sessions, settings, run_id, token, worker_name, raw_config, shutdown).run()
    finally:
        engine.dispose()


class Execution:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings, run_id: int, token: str,
                 worker_name: str, raw_config: dict, shutdown: threading.Event):
        self.sessions, self.settings, self.run_id, self.token = sessions, settings, run_id, token
        self.worker_name, self.raw_config = worker_name, raw_config
        self.recorder = RunRecorder(sessions, run_id, token, shutdown)
        self.heartbeat = Heartbeat(sessions, run_id, token, worker_name, settings.heartbeat_seconds,
                                   self.recorder.progress, self.recorder.lost)

    def run(self) -> str:
        with self.sessions() as session:
            presence.busy(session, self.worker_name, self.run_id)
        self.heartbeat.start()
        try:
            try:
                result = self.train()
            except RunSetupError as problem:
                return self.conclude(FAILED, error=str(problem))
            except Exception as problem:  # the run fails with the reason; the worker lives on
                log.exception("run %s failed", self.run_id)
                return self.conclude(FAILED, error=failure_text(problem))
            return self.conclude(result.status, metrics=result.metrics, error=result.error,
                                 statistics=result.statistics)
        finally:
            self.heartbeat.stop()
            try:
                with self.sessions() as session:
                    presence.idle(session, self.worker_name, self.run_id)
            except Exception:
                log.exception("could not mark worker %s idle", self.worker_name)

    def train(self):
        from worker.subspace.data import DatasetCorrupt, DatasetMissing, DownloadError, load_dataset
        from worker.subspace.training import train

        config = self.config()
        self.recorder.enter_phase(M.PREPARING)
        threads = configure_torch_threads(self.settings.torch_threads)
        self.describe_device(config)
        with self.sessions() as session:
            from_run_stats = from_run_statistics(session, config)
        try:
            splits = load_dataset(config, self.settings.data_dir, download=self.settings.allow_download)
        except (DatasetMissing, DatasetCorrupt, DownloadError) as problem:
            raise RunSetupError(str(problem)) from problem
        what = "direct" if config.method == "direct" else f"{config.projection}, d={config.d}"
        log.info("run %s: training (%s, %s threads)", self.run_id, what, threads)
        return train(config, splits, self.recorder, from_run_stats=from_run_stats,
                     on_phase=self.recorder.enter_phase)

    def config(self) -> RunConfig:
        try:
            return RunConfig.model_validate(self.raw_config, context={"dense_budget_mb": self.settings.dense_p_budget_mb,
                                                                     "memory_budget_mb": self.settings.memory_budget_mb})
        except ValidationError as error:
            problems = "; ".join(f"{p['field']}: {p['message']}" for p in validation_messages(error))
            raise RunSetupError(f"invalid run config: {problems}") from error

    def describe_device(self, config: RunConfig) -> None:
        try:
            label = device_label(config.device)
            with self.sessions() as session:
                presence.busy(session, self.worker_name, self.run_id, device=label)
        except Exception:  # only the workers table's description; training reports real device errors
            log.debug("could not describe the device", exc_info=True)

    def conclude(self, status: str, *, metrics: dict | None = None, error: str | None = None,
                 statistics: dict | None = None) -> str:
        """Write the last points, then the outcome — unless the run is no longer this execution's."""
        self.heartbeat.stop()  # no beat may race the final status
        self.recorder.flush()
        reason = self.recorder.stop_reason
        if reason == LOST:
            log.warning("run %s was taken over while executing: this execution's outcome (%s) is discarded",
                        self.run_id, status)
            return "lost"
        if status == CANCELLED and reason == SHUTDOWN and not self.cancel_requested():
            return self.hand_back()
        with self.sessions() as session:
            lifecycle.heartbeat(session, self.run_id, self.token, self.recorder.progress())  # the final progress
            if statistics:
                store_artifact(session, self.run_id, STATISTICS_ARTIFACT, finite(statistics))
            done = lifecycle.finish(session, self.run_id, self.token, status,
                                    metrics=finite(metrics) if metrics is not None else None,
                                    error=error[:ERROR_CHARS] if error else None)
        if not done:
            log.warning("run %s: finishing as %s did not apply: the run was reaped or requeued meanwhile",
                        self.run_id, status)
            return "lost"
        log.info("run %s %s%s", self.run_id, status, f": {error}" if error else "")
        self.advance_search()
        return status

    def advance_search(self) -> None:
        """If the run belongs to a search experiment, queue the next round its finish completed."""
        try:
            search_rounds.advance_after_run(self.sessions, self.run_id, self.settings)
        except Exception:  # the run's outcome stands; the reaper's next pass advances the search
            log.exception("run %s: could not advance its experiment's search", self.run_id)

    def cancel_requested(self) -> bool:
        with self.sessions() as session:
            return bool(session.scalar(select(Run.cancel_requested).where(Run.id == self.run_id)))

    def hand_back(self) -> str:
        """The worker shuts down: the run goes back to the queue; its message is sent when the worker has stopped."""
        now = datetime.now(timezone.utc)
        reason = handed_back_reason(self.worker_name) + f" at {now:%Y-%m-%d %H:%M:%S} UTC; requeued"
        with self.sessions() as session:
            released = lifecycle.release(session, self.run_id, self.token, reason)
        if released:
            log.info("run %s handed back to the queue: %s", self.run_id, reason)
            return "requeued"
        return "lost"


def handed_back_reason(worker_name: str) -> str:
    """How the error of a run handed back by `worker_name` begins (`worker.reaper.resend_handed_back` looks for it)."""
    return f"worker {worker_name} shut down"


def from_run_statistics(session: Session, config: RunConfig) -> dict | None:
    """For p_init from_run:<id>: the per-block mean and std of that run's trained P (its "statistics" artefact)."""
    reference = config.from_run_id
    if reference is None:
        return None
    from worker.subspace.statistics import sampling_stats

    data = None
    if reference.isdigit():
        data = session.scalar(select(RunArtifact.data).where(RunArtifact.run_id == int(reference),
                                                             RunArtifact.name == STATISTICS_ARTIFACT))
    if not data or not data.get("P"):
        raise RunSetupError(
            f"p_init {config.p_init!r}: run {reference} has no stored statistics of its P to sample from "
            f"(it does not exist, has not succeeded yet, or is not a subspace run); "
            f"retry this run once run {reference} has succeeded")
    try:
        return sampling_stats(data["P"])
    except (KeyError, TypeError, ValueError) as problem:
        raise RunSetupError(f"p_init {config.p_init!r}: the statistics of run {reference} cannot be sampled from: "
                            f"{problem}") from problem


def store_artifact(session: Session, run_id: int, name: str, data: dict) -> None:
    """Insert or replace the artefact `name` of the run (a re-execution replaces its own)."""
    artifact = session.scalar(select(RunArtifact).where(RunArtifact.run_id == run_id, RunArtifact.name == name))
    if artifact is None:
        session.add(RunArtifact(run_id=run_id, name=name, data=data))
    else:
        artifact.data = data
    session.flush()


def finite(value):
    """`value` with every NaN or infinity replaced by None: JSON columns (and Postgres) reject them."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def failure_text(problem: BaseException) -> str:
    """The exception and the last frames of its traceback: enough to act on, short enough to show."""
    frames = traceback.extract_tb(problem.__traceback__)[-TRACEBACK_FRAMES:]
    tail = "".join(traceback.format_list(frames))
    return f"{type(problem).__name__}: {problem}\n\nTraceback (last {len(frames)} frames):\n{tail}"[:ERROR_CHARS]
