"""A search experiment's rounds in the database: its groups at creation, and each next round.

`backend.domain.analysis.search` decides which d comes next from a group's outcomes; this
module records those outcomes and queues the runs. A group's round is complete when
every run of it has finished — and, for an individual baseline, every direct-training
run the group's threshold depends on. Then its outcome (mean accuracy, reached or not)
is stored in the round, and the group is decided, stopped, or given its next round:
one run per seed at the next d, with the config of the round's runs but for d.

Who advances: the worker that finishes a run of a search experiment (`advance_after_run`,
called from `worker.execution`), and, as a safety net, every reaper pass
(`advance_pending`) — so a worker killed between finishing a run and queueing the next
round delays the search by a reaper interval, never stalls it.

Concurrency: two workers may finish the last two runs of a round at once and both find
it complete. `advance` therefore re-reads everything under a lock on the experiment row
(SELECT … FOR UPDATE on PostgreSQL; BEGIN IMMEDIATE on SQLite, which serialises writers),
and a round is appended only if the group's last round is still the complete one.
Messages are sent after the commit; a message that cannot be sent leaves the run queued,
and the reaper sends it again.

Runs that did not succeed:
    diverged            counts as falling short of the threshold at its d (backend.domain.analysis.search)
    failed, cancelled   the group is "blocked", with the run and its error as the reason: no
                        further round is queued (cancelling an experiment's runs halts its search).
                        Retrying the run (POST /api/runs/{id}/retry) resumes the search once it
                        has finished. A failed or cancelled baseline blocks the groups it serves.
                        (A worker that vanished is already retried by the reaper, up to max_attempts.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from backend.domain import lifecycle
from backend.domain.analysis import search as algorithm
from backend.domain.analysis.summary import FRACTION, final_accuracy, matching_baselines
from backend.domain.grid import BASELINE, MEMBER
from backend.domain.models import CANCELLED, DIVERGED, FAILED, FINISHED, SUCCEEDED, Experiment, Run, SearchGroup
from backend.domain.queue import enqueue_run
from backend.domain.settings import Settings
from backend.domain.validation import check_run_config

log = logging.getLogger(__name__)

SEARCH = "search"
OPEN = (algorithm.SEARCHING, algorithm.BLOCKED)
REASON_CHARS = 500


def parameters(experiment: Experiment) -> algorithm.Parameters:
    return algorithm.Parameters(**experiment.search)


def first_round(plan, runs: Sequence[Run]) -> list[SearchGroup]:
    """The groups of a new search experiment, each with its round 1 (`runs` are the plan's, flushed: with ids)."""
    members: dict[int, list[int]] = {}
    for planned, run in zip(plan.runs, runs, strict=True):
        if planned.role == MEMBER:
            members.setdefault(planned.group, []).append(run.id)
    d_start = plan.search["d_start"]
    return [SearchGroup(experiment_id=runs[0].experiment_id, position=position, grid_values=values,
                        status=algorithm.SEARCHING, rounds=[_new_round(1, d_start, members[position])])
            for position, values in enumerate(plan.groups)]


# ---- advancing -----------------------------------------------------------------------------


def advance(session: Session, experiment_id: int, settings: Settings, celery=None) -> list[int]:
    """Record the complete rounds of the experiment's open groups and queue their next ones.

    Returns the ids of the runs it queued. Commits. Safe to call from any number of
    processes at once, and as often as wanted: it does nothing unless a round is complete.
    """
    session.commit()
    if not _has_work(session, experiment_id):
        session.commit()
        return []
    experiment = lock_experiment(session, experiment_id)
    if experiment is None or experiment.kind != SEARCH:
        session.commit()
        return []
    groups = session.scalars(select(SearchGroup).where(SearchGroup.experiment_id == experiment_id,
                                                       SearchGroup.status.in_(OPEN))
                             .order_by(SearchGroup.position).execution_options(populate_existing=True)).all()
    runs = {run.id: run for run in session.scalars(select(Run).where(Run.experiment_id == experiment_id)
                                                   .execution_options(populate_existing=True))}
    baselines = [run for run in runs.values() if run.role == BASELINE]
    new_rounds = {group: _advance_group(session, experiment, group, runs, baselines, settings) for group in groups}
    session.flush()                                         # the new runs get their ids
    queued: list[Run] = []
    for group, new_runs in new_rounds.items():
        if new_runs:
            group.rounds = [*group.rounds[:-1], {**group.rounds[-1], "run_ids": [run.id for run in new_runs]}]
            queued += new_runs
    session.commit()
    for run in queued:
        _send(celery, run)
    if queued:
        log.info("experiment %s: next search round queued: runs %s", experiment_id,
                 ", ".join(str(r.id) for r in queued))
    return [run.id for run in queued]


def advance_after_run(sessions: sessionmaker[Session], run_id: int, settings: Settings, celery=None) -> list[int]:
    """After run `run_id` finished: advance its experiment's search, if it belongs to one."""
    with sessions() as session:
        experiment_id = session.scalar(select(Run.experiment_id).join(Experiment, Run.experiment_id == Experiment.id)
                                       .where(Run.id == run_id, Experiment.kind == SEARCH))
        session.commit()
        if experiment_id is None:
            return []
        return advance(session, experiment_id, settings, celery)


def advance_pending(session: Session, settings: Settings, celery=None) -> list[int]:
    """Advance every search experiment with an open group whose round is complete (the reaper's pass)."""
    experiment_ids = session.scalars(select(SearchGroup.experiment_id).where(SearchGroup.status.in_(OPEN))
                                     .distinct().order_by(SearchGroup.experiment_id)).all()
    session.commit()
    queued = []
    for experiment_id in experiment_ids:
        try:
            queued += advance(session, experiment_id, settings, celery)
        except Exception:  # one experiment's trouble must not hold up the others'
            session.rollback()
            log.exception("could not advance the search of experiment %s", experiment_id)
    return queued


def lock_experiment(session: Session, experiment_id: int) -> Experiment | None:
    """Begin a transaction holding the experiment's lock until commit: one advancer at a time."""
    session.commit()            # the lock must begin the transaction: what it reads after is current
    if session.get_bind().dialect.name == "sqlite":
        # SQLite locks the database, not a row: take the write lock now, so that what is read next is
        # what the previous writer committed (a deferred transaction could read, then write on stale reads).
        session.execute(text("BEGIN IMMEDIATE"))
        return session.get(Experiment, experiment_id, populate_existing=True)
    return session.scalar(select(Experiment).where(Experiment.id == experiment_id).with_for_update()
                          .execution_options(populate_existing=True))


# ---- one group -------------------------------------------------------------------------------


def _advance_group(session: Session, experiment: Experiment, group: SearchGroup, runs: dict[int, Run],
                   baselines: list[Run], settings: Settings) -> list[Run]:
    """The group's next round (its runs, added to the session), or [] with the group's new status."""
    current = group.rounds[-1]
    round_runs = [runs[i] for i in current["run_ids"] if i in runs]
    serving = matching_baselines(baselines, group.grid_values) if _individual(experiment) else []
    broken = [run for run in [*round_runs, *serving] if _broken(run.role, run.status)]
    if broken:
        _block(group, broken[0])
        return []
    if any(run.status not in FINISHED for run in [*round_runs, *serving]):
        if group.status == algorithm.BLOCKED:           # its run was retried: the search goes on
            group.status, group.reason = algorithm.SEARCHING, None
        return []
    threshold = _threshold(experiment, serving)
    if threshold is None:
        return _set(group, algorithm.STOPPED, "no baseline accuracy: the baseline runs reported no test accuracy")
    group.threshold = threshold
    mean, reached = algorithm.round_outcome([_accuracy(run) for run in round_runs], threshold)
    group.rounds = [*group.rounds[:-1], {**current, "mean": mean, "reached": reached,
                                         "n": sum(_accuracy(run) is not None for run in round_runs),
                                         "diverged": sum(run.status == DIVERGED for run in round_runs)}]
    step = algorithm.next_step(parameters(experiment), [(r["d"], r["reached"]) for r in group.rounds])
    group.bracket_lo, group.bracket_hi = step.lo, step.hi
    if step.status != algorithm.SEARCHING:
        return _set(group, step.status, step.reason)
    next_runs = []
    for run in round_runs:
        try:
            config = check_run_config({**run.config, "d": step.d}, settings)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
            return _set(group, algorithm.STOPPED, f"the runs at d = {step.d} would be invalid: {problems}")
        next_runs.append(lifecycle.new_run(config, experiment_id=experiment.id, role=MEMBER))
    session.add_all(next_runs)
    group.status, group.reason = algorithm.SEARCHING, None
    group.rounds = [*group.rounds, _new_round(len(group.rounds) + 1, step.d, [])]   # run ids after the flush
    return next_runs


def _has_work(session: Session, experiment_id: int) -> bool:
    """Without a lock: does an open group of the experiment have a complete round, or a block lifted?"""
    groups = session.execute(select(SearchGroup.status, SearchGroup.grid_values, SearchGroup.rounds)
                             .where(SearchGroup.experiment_id == experiment_id, SearchGroup.status.in_(OPEN))).all()
    if not groups:
        return False
    status = dict(session.execute(select(Run.id, Run.status).where(Run.experiment_id == experiment_id)).all())
    mode = session.scalar(select(Experiment.baseline).where(Experiment.id == experiment_id)) or {}
    baselines = session.execute(select(Run.id, Run.config).where(Run.experiment_id == experiment_id,
                                                                  Run.role == BASELINE)).all()
    for group in groups:
        ids = group.rounds[-1]["run_ids"]
        serving = ([row.id for row in matching_baselines(baselines, group.grid_values)]
                   if mode.get("mode") == "individual" else [])
        statuses = [status.get(i) for i in [*ids, *serving]]
        if group.status == algorithm.SEARCHING and all(s in FINISHED for s in statuses):
            return True
        roles = [MEMBER] * len(ids) + [BASELINE] * len(serving)
        if group.status == algorithm.BLOCKED and not any(_broken(r, s) for r, s in zip(roles, statuses, strict=True)):
            return True
    return False


def _broken(role: str, status: str | None) -> bool:
    """A run that blocks its group until retried: failed or cancelled, or a baseline that diverged."""
    return status in (FAILED, CANCELLED) or (role == BASELINE and status == DIVERGED)


def _threshold(experiment: Experiment, serving: list[Run]) -> float | None:
    """0.9 × the baseline: the global number, or the mean accuracy of the group's (succeeded) baselines."""
    baseline = experiment.baseline or {}
    if baseline.get("mode") == "global":
        return FRACTION * float(baseline["value"])
    accuracies = [a for a in (final_accuracy(run) for run in serving if run.status == SUCCEEDED) if a is not None]
    return FRACTION * sum(accuracies) / len(accuracies) if accuracies else None


def _accuracy(run: Run) -> float | None:
    return final_accuracy(run) if run.status == SUCCEEDED else None


def _individual(experiment: Experiment) -> bool:
    return (experiment.baseline or {}).get("mode") == "individual"


def _block(group: SearchGroup, run: Run) -> None:
    what = "baseline run" if run.role == BASELINE else "run"
    why = f": {run.error.splitlines()[0]}" if run.error else ""
    _set(group, algorithm.BLOCKED, f"{what} #{run.id} {run.status}{why}; retry it to go on")


def _set(group: SearchGroup, status: str, reason: str | None) -> list[Run]:
    group.status, group.reason = status, reason[:REASON_CHARS] if reason else None
    return []


def _new_round(number: int, d: int, run_ids: list[int]) -> dict:
    return {"round": number, "d": d, "run_ids": run_ids, "mean": None, "n": 0, "reached": None, "diverged": 0}


def _send(celery, run: Run) -> None:
    try:
        enqueue_run(run.id, run.config, app=celery)
    except Exception:  # the broker is down: the run stays queued, and the reaper sends it again
        log.exception("search: could not send run %s to the broker", run.id)
