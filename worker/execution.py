"""One execution: claim a run (and its batchmates), train them with the engine, record how each ended.

This is where the engine meets the database. The engine (`worker.subspace`) gets
configs, the data and a callback per run (`RunRecorder`), and returns a RunResult per
run; this module turns that into rows: the points, the "statistics" artefact, the final
status through `backend.domain.lifecycle`. A run trains alone (`training.train`) or, with the
compatible queued runs claimed beside it (`worker.batching`), in one batch
(`batched.train_batch`); either way each run keeps its own claim, heartbeat, points and
outcome, recorded when that run ends. Every change to a run is conditional on its claim
token, so an execution that lost a run (reaped while unreachable) changes nothing of it.
"""

from __future__ import annotations

import base64
import logging
import threading
import traceback
from collections import Counter
from datetime import datetime, timezone

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.domain import lifecycle, search_rounds
from backend.domain.db import make_engine
from backend.domain.models import CANCELLED, FAILED, MODEL_ARTIFACT, STATISTICS_ARTIFACT, Run, RunArtifact
from backend.domain.settings import Settings
from backend.domain.validation import check_run_config
from idlab import metrics as M
from idlab.config import RunConfig, validation_messages
from idlab.metrics import json_safe
from worker import presence
from worker.batching import Claimed, claim_batchmates, mark_batch
from worker.devices import configure_native_kernels, configure_torch_threads, device_label
from worker.heartbeat import Heartbeat
from worker.recorder import LOST, SHUTDOWN, RunRecorder

log = logging.getLogger(__name__)

TRACEBACK_FRAMES = 4
#: Model files stored with their run: θ_d's are kilobytes; a trained dense P (D×k floats) is left out.
MAX_STORED_MODEL_BYTES = 8 * 2**20
ERROR_CHARS = 4000


class RunSetupError(RuntimeError):
    """The run cannot start (bad config, missing dataset, missing from_run statistics): failed with this message."""


def execute(run_id: int, worker_name: str, settings: Settings, shutdown: threading.Event) -> str:
    """Claim run `run_id` for `worker_name`, with its batchmates, and execute them; returns how it ended, for the log.

    A run that is not queued (a duplicate delivery, a run cancelled while queued, a run
    already executed, a run claimed as another's batchmate) is left alone: "dropped".
    """
    engine = make_engine(settings.database)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    try:
        with sessions() as session:
            run = session.get(Run, run_id)
            token = lifecycle.claim(session, run_id, worker_name)
            if token is None:
                status = session.scalar(select(Run.status).where(Run.id == run_id))
                log.info("run %s is %s, not queued: message dropped (a duplicate delivery, a cancelled run or a "
                         "run trained in another's batch)", run_id, status or "missing")
                return "dropped"
            lead = Claimed(run_id, token, dict(run.config))
            members = [lead] + batchmates(session, lead, worker_name, settings)
            mark_batch(session, members)
        log.info("run %s claimed by %s (token %s)", run_id, worker_name, token[:8])
        for mate in members[1:]:
            log.info("run %s claimed by %s (token %s) to train in one batch with run %s", mate.run_id,
                     worker_name, mate.token[:8], run_id)
        return Execution(sessions, settings, members, worker_name, shutdown).run()
    finally:
        engine.dispose()


def batchmates(session: Session, lead: Claimed, worker_name: str, settings: Settings) -> list[Claimed]:
    """The queued runs claimed to train with `lead`; none when its config is invalid (it fails alone)."""
    try:
        config = check_run_config(lead.raw_config, settings)
    except ValidationError:
        return []
    return claim_batchmates(session, lead, config, worker_name, settings)


class Execution:
    """The runs one task trains: one, or a batch. One heartbeat beats them all; each ends on its own."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, members: list[Claimed],
                 worker_name: str, shutdown: threading.Event):
        self.sessions, self.settings, self.worker_name = sessions, settings, worker_name
        self.batch = [member.run_id for member in members] if len(members) > 1 else None
        self.heartbeat = Heartbeat(sessions, worker_name, settings.heartbeat_seconds, batch=self.batch)
        self.runs = [RunExecution(sessions, settings, member, worker_name, shutdown, self.heartbeat)
                     for member in members]
        for run in self.runs:
            self.heartbeat.add(run.run_id, run.token, run.recorder.progress, run.recorder.lost)
        self.lead_id = members[0].run_id

    def run(self) -> str:
        with self.sessions() as session:
            presence.busy(session, self.worker_name, self.lead_id, batch=self.batch)
        self.heartbeat.start()
        try:
            self.train()
        finally:
            self.heartbeat.stop()
            try:
                with self.sessions() as session:
                    presence.idle(session, self.worker_name, self.lead_id)
            except Exception:
                log.exception("could not mark worker %s idle", self.worker_name)
        outcomes = [run.outcome or "lost" for run in self.runs]
        if len(outcomes) == 1:
            return outcomes[0]
        counts = Counter(outcomes)
        return f"batch of {len(outcomes)}: " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items())

    def train(self) -> None:
        from worker.subspace.data import DatasetCorrupt, DatasetMissing, DownloadError, load_dataset

        ready = [run for run in self.runs if run.prepare()]
        if not ready:
            return
        threads = configure_torch_threads(self.settings.torch_threads)
        configure_native_kernels(self.settings.kernel_cache_dir, self.settings.c_compiler)
        self.describe_device(ready[0].config)
        try:
            splits = load_dataset(ready[0].config, self.settings.data_dir, download=self.settings.allow_download,
                                  on_progress=lambda done, total: [run.recorder.download_progress(done, total)
                                                                   for run in ready],
                                  mirrors=self.settings.dataset_mirrors)
        except (DatasetMissing, DatasetCorrupt, DownloadError) as problem:
            for run in ready:
                run.conclude(FAILED, error=str(problem))
            return
        except Exception as problem:
            log.exception("run(s) %s: loading the data failed", ", ".join(str(run.run_id) for run in ready))
            for run in ready:
                run.conclude(FAILED, error=failure_text(problem))
            return
        log.info("training %s (%s threads)", "; ".join(run.describe() for run in ready), threads)
        if len(ready) == 1:
            self.train_alone(ready[0], splits)
        else:
            self.train_together(ready, splits)

    def train_alone(self, run: RunExecution, splits) -> None:
        from worker.subspace.training import train

        try:
            result = train(run.config, splits, run.recorder, from_run_stats=run.from_run_stats,
                           on_phase=run.recorder.enter_phase, compile_step=self.settings.compile_step)
        except Exception as problem:  # the run fails with the reason; the worker lives on
            log.exception("run %s failed", run.run_id)
            run.conclude(FAILED, error=failure_text(problem))
            return
        run.conclude_result(result)

    def train_together(self, runs: list[RunExecution], splits) -> None:
        """One batch (`batched.train_batch`); a run that cannot be built fails alone and the others train on."""
        from worker.subspace.batched import BatchSetupError, train_batch

        while runs:
            try:
                train_batch([run.config for run in runs], splits, callbacks=[run.recorder for run in runs],
                            from_run_stats=[run.from_run_stats for run in runs],
                            on_phase=[run.recorder.enter_phase for run in runs],
                            on_result=[run.conclude_result for run in runs], compile_step=self.settings.compile_step)
                return
            except BatchSetupError as problem:
                failed = runs.pop(problem.index)
                log.warning("run %s could not be built; its batchmates train without it", failed.run_id)
                failed.conclude(FAILED, error=failure_text(problem.__cause__ or problem))
            except Exception as problem:  # every run still training fails with the reason; the worker lives on
                log.exception("batch %s failed", ", ".join(str(run.run_id) for run in runs))
                for run in runs:
                    if run.outcome is None:
                        run.conclude(FAILED, error=failure_text(problem))
                return

    def describe_device(self, config: RunConfig) -> None:
        try:
            label = device_label(config.device)
            with self.sessions() as session:
                presence.busy(session, self.worker_name, self.lead_id, device=label, batch=self.batch)
        except Exception:  # only the workers table's description; training reports real device errors
            log.debug("could not describe the device", exc_info=True)


class RunExecution:
    """One run of an execution: its claim, its recorder, and how it ends."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, member: Claimed, worker_name: str,
                 shutdown: threading.Event, heartbeat: Heartbeat):
        self.sessions, self.settings, self.worker_name, self.heartbeat = sessions, settings, worker_name, heartbeat
        self.run_id, self.token, self.raw_config = member.run_id, member.token, member.raw_config
        self.recorder = RunRecorder(sessions, self.run_id, self.token, shutdown)
        self.config: RunConfig | None = None
        self.from_run_stats: dict | None = None
        self.outcome: str | None = None    # how it ended, once it has

    def prepare(self) -> bool:
        """Its config and the statistics it samples P from; False (and failed) when it cannot start."""
        self.recorder.enter_phase(M.PREPARING)
        try:
            self.config = self.validated_config()
            with self.sessions() as session:
                self.from_run_stats = from_run_statistics(session, self.config)
        except RunSetupError as problem:
            self.conclude(FAILED, error=str(problem))
            return False
        except Exception as problem:
            log.exception("run %s could not be prepared", self.run_id)
            self.conclude(FAILED, error=failure_text(problem))
            return False
        return True

    def validated_config(self) -> RunConfig:
        try:
            return check_run_config(self.raw_config, self.settings)
        except ValidationError as error:
            problems = "; ".join(f"{p['field']}: {p['message']}" for p in validation_messages(error))
            raise RunSetupError(f"invalid run config: {problems}") from error

    def describe(self) -> str:
        config = self.config
        return f"run {self.run_id} (" + ("direct" if config.method == "direct" else
                                         f"{config.projection}, d={config.d}") + ")"

    def conclude_result(self, result) -> None:
        """The engine's RunResult, recorded; a batch calls it the moment the run leaves the batch."""
        try:
            self.conclude(result.status, metrics=result.metrics, error=result.error, statistics=result.statistics,
                          model=result.model)
        except Exception:  # its batchmates train on; without beats the reaper takes this run over
            log.exception("run %s: its outcome (%s) could not be recorded", self.run_id, result.status)
            self.outcome = "lost"

    def conclude(self, status: str, *, metrics: dict | None = None, error: str | None = None,
                 statistics: dict | None = None, model: bytes | None = None) -> str:
        """Write the last points, then the outcome — unless the run is no longer this execution's."""
        self.heartbeat.drop(self.run_id)  # no beat may race the final status
        self.outcome = "lost"             # until recorded
        self.recorder.flush()
        reason = self.recorder.stop_reason
        if reason == LOST:
            log.warning("run %s was taken over while executing: this execution's outcome (%s) is discarded",
                        self.run_id, status)
            return self.outcome
        if status == CANCELLED and reason == SHUTDOWN and not self.cancel_requested():
            self.outcome = self.hand_back()
            return self.outcome
        with self.sessions() as session:
            lifecycle.heartbeat(session, self.run_id, self.token, self.recorder.progress())  # the final progress
            # The artefact and the final status in one transaction that holds the claim: a stale
            # execution (reaped meanwhile) writes neither.
            done = lifecycle.holds_claim(session, self.run_id, self.token)
            if done:
                if statistics:
                    store_artifact(session, self.run_id, STATISTICS_ARTIFACT, json_safe(statistics))
                if model is not None and len(model) <= MAX_STORED_MODEL_BYTES:
                    store_artifact(session, self.run_id, MODEL_ARTIFACT, model_artifact(model))
                done = lifecycle.finish(session, self.run_id, self.token, status,
                                        metrics=json_safe(metrics) if metrics is not None else None,
                                        error=error[:ERROR_CHARS] if error else None)
        if not done:
            log.warning("run %s: finishing as %s did not apply: the run was reaped or requeued meanwhile",
                        self.run_id, status)
            return self.outcome
        log.info("run %s %s%s", self.run_id, status, f": {error}" if error else "")
        self.outcome = status
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


def model_artifact(model: bytes) -> dict:
    """A model file as a JSON artefact (the artefacts table holds JSON)."""
    return {"format": 1, "bytes": len(model), "base64": base64.b64encode(model).decode("ascii")}


def store_artifact(session: Session, run_id: int, name: str, data: dict) -> None:
    """Insert or replace the artefact `name` of the run (a re-execution replaces its own)."""
    artifact = session.scalar(select(RunArtifact).where(RunArtifact.run_id == run_id, RunArtifact.name == name))
    if artifact is None:
        session.add(RunArtifact(run_id=run_id, name=name, data=data))
    else:
        artifact.data = data
    session.flush()


def failure_text(problem: BaseException) -> str:
    """The exception and the last frames of its traceback: enough to act on, short enough to show."""
    frames = traceback.extract_tb(problem.__traceback__)[-TRACEBACK_FRAMES:]
    tail = "".join(traceback.format_list(frames))
    return f"{type(problem).__name__}: {problem}\n\nTraceback (last {len(frames)} frames):\n{tail}"[:ERROR_CHARS]
