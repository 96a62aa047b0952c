"""/api/experiments: sweeps of runs (base × grid × seeds + baseline) or searches of d, their summary,
export and events; archiving and deleting them."""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload
from sse_starlette import EventSourceResponse

from backend.api.auth import WRITE
from backend.api.deps import CeleryDep, SessionDep, SettingsDep
from backend.api.errors import reject
from backend.api.events import event_stream, experiment_events
from backend.api.routers.replay import IdempotencyKeyHeader, Idempotent, commit
from backend.api.routers.runs import active_references, enqueue, reference_refusal
from backend.api.routers.tags import TagFilter, add_tag, checked_tag_filter, commit_tags, remove_tag
from backend.api.schemas.common import MAX_ID
from backend.api.schemas.experiments import (
    ContrastOut,
    ExperimentCreate,
    ExperimentCreated,
    ExperimentDetail,
    ExperimentOut,
    ExperimentPage,
    RunBrief,
    SummaryOut,
)
from backend.api.schemas.runs import ArchivedFilter
from backend.api.schemas.tags import ObjectPatch, TagIn
from backend.domain import lifecycle, search_rounds, tags
from backend.domain.analysis import export
from backend.domain.analysis.contrast import METRICS, ContrastError, contrast, table
from backend.domain.analysis.summary import summarize
from backend.domain.grid import BASELINE, plan_experiment, search_rounds_at_most
from backend.domain.models import FINISHED, Experiment, Run, SearchGroup
from backend.domain.validation import echo, error, from_run_problem
from idlab.metrics import json_safe

router = APIRouter(prefix="/experiments", tags=["experiments"])

ExperimentId = Annotated[int, Path(ge=1, le=MAX_ID, description="The experiment's id.")]


def get_experiment(session: Session, experiment_id: int) -> Experiment:
    experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        raise HTTPException(404, f"experiment {experiment_id} not found")
    return experiment


def status_counts(session: Session, experiment_ids: list[int]) -> dict[int, dict[str, int]]:
    """{experiment id: {status: number of runs}} in one grouped query."""
    counts: dict[int, dict[str, int]] = {i: {} for i in experiment_ids}
    if experiment_ids:
        rows = session.execute(select(Run.experiment_id, Run.status, func.count()).where(
            Run.experiment_id.in_(experiment_ids)).group_by(Run.experiment_id, Run.status))
        for experiment_id, status, count in rows:
            counts[experiment_id][status] = count
    return counts


def check_from_runs(session: Session, request: ExperimentCreate, plan) -> None:
    """422 naming p_init (base.p_init or grid.p_init[i]) when a run it samples P from has no statistics."""
    errors, seen = [], set()
    grid_values = list(request.grid.get("p_init") or [])
    for planned in plan.runs:
        p_init = planned.config.p_init
        if p_init in seen:
            continue
        seen.add(p_init)
        if (problem := from_run_problem(session, planned.config)) is not None:
            loc = ("body", "grid", "p_init", grid_values.index(p_init)) if p_init in grid_values \
                else ("body", "base", "p_init")
            errors.append(error(loc, problem, input_=echo(p_init)))
    if errors:
        raise reject(errors)


def preview(plan) -> dict:
    """What an experiment request would queue: its runs with D, k and dense-P memory (for a search: its
    first round and the baselines, and how many runs it could queue at most)."""
    runs = [{"role": p.role, "config": p.config.model_dump(mode="json"), "D": p.config.D,
             "k": p.config.k if p.config.method == "subspace" else p.config.D,
             "dense_p_bytes": p.config.dense_p_bytes() if p.config.method == "subspace"
             and p.config.projection == "dense" else 0} for p in plan.runs]
    dense = [r["dense_p_bytes"] for r in runs]
    answer = {"kind": plan.kind, "run_count": len(runs), "baseline_count": sum(r["role"] == BASELINE for r in runs),
              "runs": runs, "total_dense_p_bytes": sum(dense), "max_dense_p_bytes": max(dense, default=0),
              "warnings": sorted({w for p in plan.runs for w in p.config.warnings})}
    if plan.search is not None:
        baselines, rounds = answer["baseline_count"], search_rounds_at_most(plan.search)
        answer.update(search=plan.search, group_count=len(plan.groups), groups=plan.groups, max_rounds_per_group=rounds,
                      max_run_count=(len(runs) - baselines) * rounds + baselines)
    return answer


def describe(experiment: Experiment, counts: dict[str, int]) -> dict:
    return {"id": experiment.id, "name": experiment.name, "kind": experiment.kind or "grid",
            "search": experiment.search, "created_at": experiment.created_at,
            "base": experiment.base_config, "grid": experiment.grid, "seeds": experiment.seeds,
            "baseline": experiment.baseline or {"mode": None, "value": None},
            "run_count": sum(counts.values()), "counts": counts, "archived": bool(experiment.archived),
            "tags": tags.tags_of(experiment), "notes": experiment.notes or ""}


@router.post("", status_code=201, response_model=ExperimentCreated, dependencies=WRITE, summary="Launch a sweep",
             responses={422: {"description": "An invalid request, or an Idempotency-Key used before for a "
                                             "different request."}})
def create_experiment(request: ExperimentCreate, session: SessionDep, settings: SettingsDep,
                      celery: CeleryDep, dry_run: Annotated[bool, Query(
                          description="Validate and expand only: answer the runs it would queue, their sizes "
                                      "and memory, and store nothing.")] = False,
                      idempotency_key: IdempotencyKeyHeader = None) -> dict | JSONResponse:
    """Expand base × grid × seeds (+ one direct-training run per seed when `baseline` is true),
    validate every run, store them all and queue them; nothing is stored if any run is invalid.

    With `search`, the grid's combinations are groups whose d is searched: what is queued now is
    round 1 (every group at search.d_start × seeds) and the baselines; each next round is queued
    as the previous one finishes.

    With an `Idempotency-Key` header, a repeat of the same request answers the first answer again
    (the same experiment and run ids) and queues nothing. A dry run stores nothing and ignores the key."""
    keyed = None if dry_run else Idempotent.of(session, settings, idempotency_key, "POST /api/experiments",
                                               request.model_dump(mode="json"))
    if keyed is not None and (earlier := keyed.earlier()) is not None:
        return earlier
    plan = plan_experiment(request, settings)
    check_from_runs(session, request, plan)
    if dry_run:
        return JSONResponse(jsonable_encoder(preview(plan)))
    experiment = Experiment(name=request.name, kind=plan.kind, base_config=plan.base, grid=plan.grid,
                            seeds=plan.seeds, baseline=plan.baseline, search=plan.search)
    session.add(experiment)
    session.flush()
    runs = [lifecycle.new_run(p.config, experiment_id=experiment.id, role=p.role) for p in plan.runs]
    session.add_all(runs)
    if plan.search is not None:
        session.flush()
        session.add_all(search_rounds.first_round(plan, runs))
    counts = dict(Counter(run.status for run in runs))
    if keyed is not None:
        session.flush()
        answer = ExperimentCreated.model_validate(
            {**describe(experiment, counts), "run_ids": [run.id for run in runs]}).model_dump(mode="json")
        keyed.keep(201, answer)
    if (winner := commit(session, keyed)) is not None:
        return winner
    # Baselines first: every group's threshold waits for them.
    warnings = [w for run in sorted(runs, key=lambda r: r.role != BASELINE) for w in enqueue(celery, run)]
    notes = [f"{len(warnings)} of {len(runs)} runs: {warnings[0]}"] if warnings else []
    if keyed is not None:
        if notes:   # the replay must tell of the broker's failure too
            keyed.keep(201, {**answer, "warnings": notes})
            session.commit()
        return JSONResponse({**answer, "warnings": notes}, status_code=201)
    return {**describe(experiment, counts), "run_ids": [run.id for run in runs], "warnings": notes}


@router.get("", response_model=ExperimentPage, summary="List experiments")
def list_experiments(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    archived: Annotated[ArchivedFilter, Query(description=(
        "false: hide archived experiments (the default); true: only those; all: every experiment."))] = "false",
    tag: TagFilter = None,
) -> dict:
    """Experiments, newest first, each with its number of runs per status. `tag=…` (repeat) keeps those
    holding all of these tags."""
    conditions = [] if archived == "all" else [Experiment.archived.is_(archived == "true")]
    conditions += tags.experiment_tag_conditions(checked_tag_filter(tag))
    total = session.scalar(select(func.count()).select_from(Experiment).where(*conditions))
    experiments = session.scalars(select(Experiment).where(*conditions).order_by(Experiment.id.desc())
                                  .limit(limit).offset(offset).options(selectinload(Experiment.tag_rows))).all()
    counts = status_counts(session, [e.id for e in experiments])
    return {"items": [describe(e, counts[e.id]) for e in experiments], "total": total, "limit": limit, "offset": offset}


@router.get("/{experiment_id}", response_model=ExperimentDetail, summary="An experiment and its runs")
def read_experiment(experiment_id: ExperimentId, session: SessionDep) -> dict:
    experiment = get_experiment(session, experiment_id)
    runs = session.execute(select(Run.id, Run.status, Run.role).where(Run.experiment_id == experiment_id)
                           .order_by(Run.id)).all()
    counts = dict(Counter(run.status for run in runs))
    return {**describe(experiment, counts), "run_ids": [run.id for run in runs],
            "runs": [RunBrief(id=run.id, status=run.status, role=run.role) for run in runs]}


@router.patch("/{experiment_id}", response_model=ExperimentOut, dependencies=WRITE,
              summary="Archive or unarchive an experiment, set its tags or notes",
              responses={409: {"description": "Its tags were changed by another request meanwhile: try again."}})
def update_experiment(experiment_id: ExperimentId, patch: ObjectPatch, session: SessionDep) -> dict:
    """`{"archived": true}` hides the experiment from the experiments list and its runs from the runs
    list (`archived=true|all` shows them); nothing is deleted, and its runs go on if they were running.
    `{"tags": [...]}` replaces its tags, `{"notes": "..."}` its notes (its runs keep theirs); fields left
    out stay as they are."""
    experiment = get_experiment(session, experiment_id)
    patch.apply_to(experiment)
    commit_tags(session, experiment)
    return describe(experiment, status_counts(session, [experiment_id])[experiment_id])


@router.post("/{experiment_id}/tags", response_model=ExperimentOut, dependencies=WRITE, summary="Tag an experiment",
             responses={422: {"description": "Not a tag, or the experiment holds the most tags already."}})
def tag_experiment(experiment_id: ExperimentId, body: TagIn, session: SessionDep) -> dict:
    """Add one tag to the experiment (not to its runs); one it has already, in any case, is left as it is."""
    experiment = get_experiment(session, experiment_id)
    add_tag(session, experiment, body.tag)
    return describe(experiment, status_counts(session, [experiment_id])[experiment_id])


@router.delete("/{experiment_id}/tags/{tag:path}", response_model=ExperimentOut, dependencies=WRITE,
               summary="Untag an experiment")
def untag_experiment(experiment_id: ExperimentId, tag: str, session: SessionDep) -> dict:
    """Remove one tag, in any case (an experiment without it is left as it is). URL-encode the tag."""
    experiment = get_experiment(session, experiment_id)
    remove_tag(session, experiment, tag)
    return describe(experiment, status_counts(session, [experiment_id])[experiment_id])


@router.delete("/{experiment_id}", status_code=204, response_class=Response, dependencies=WRITE,
               summary="Delete an experiment and its runs",
               responses={409: {"description": "Some of its runs are queued or running (cancel them first), or a "
                                               "queued or running run elsewhere samples its P from one of them."}})
def delete_experiment(experiment_id: ExperimentId, session: SessionDep) -> Response:
    """Delete the experiment with every run of it (their points, envelopes and artifacts) and its search
    groups. Refused while any of its runs is queued or running: cancel them first (a queued run is
    cancelled at once, a running one stops at its worker's next check)."""
    # The experiment's lock (a search's next round is queued under it): no round is added meanwhile.
    experiment = search_rounds.lock_experiment(session, experiment_id)
    if experiment is None:
        session.rollback()
        raise HTTPException(404, f"experiment {experiment_id} not found")
    counts = status_counts(session, [experiment_id])[experiment_id]
    active = {status: n for status, n in counts.items() if status not in FINISHED}
    if active:
        session.rollback()
        described = " and ".join(f"{n} {status}" for status, n in sorted(active.items()))
        plural = "s" if sum(active.values()) > 1 else ""
        raise HTTPException(409, f"experiment {experiment_id} has {described} run{plural}: "
                                 f"cancel them first (the experiment page's Cancel remaining, or POST "
                                 f"/api/runs/{{id}}/cancel), then delete it once they have stopped")
    run_ids = list(session.scalars(select(Run.id).where(Run.experiment_id == experiment_id)))
    if refusal := reference_refusal(active_references(session, run_ids)):
        session.rollback()
        raise HTTPException(409, refusal)
    # Finished runs only, then none may be left: a run retried meanwhile keeps the experiment (409).
    # Points, envelopes, artifacts and search groups go by ON DELETE CASCADE.
    session.execute(delete(Run).where(Run.experiment_id == experiment_id, Run.status.in_(FINISHED)))
    if session.scalar(select(func.count()).select_from(Run).where(Run.experiment_id == experiment_id)):
        session.rollback()
        raise HTTPException(409, f"a run of experiment {experiment_id} was queued again meanwhile: cancel it "
                                 "first, then delete the experiment")
    session.execute(delete(Experiment).where(Experiment.id == experiment_id))
    session.commit()
    return Response(status_code=204)


@router.get("/{experiment_id}/summary", response_model=SummaryOut, summary="Accuracy against d, and d_int90")
def experiment_summary(experiment_id: ExperimentId, session: SessionDep) -> dict:
    """Per combination of the grid fields other than d (e.g. per augmentation): mean ± std of the
    final test accuracy over seeds at each d, the baseline, the threshold 0.9 × baseline, and
    d_int90 — the smallest d reaching it, interpolated on log d, a 95 % interval, its flags (≤ d_min,
    not reached) — and the runs left out or not converged (docs/statistics.md).
    For a search experiment, each group also has `search`: its rounds, bracket and status."""
    experiment = get_experiment(session, experiment_id)
    runs = session.scalars(select(Run).where(Run.experiment_id == experiment_id).order_by(Run.id)).all()
    groups = session.scalars(select(SearchGroup).where(SearchGroup.experiment_id == experiment_id)
                             .order_by(SearchGroup.position)).all()
    return json_safe(summarize(experiment, runs, groups))


@router.get("/{experiment_id}/contrast", response_model=ContrastOut, summary="Does group a beat group b? Δ per d")
def experiment_contrast(
    experiment_id: ExperimentId, session: SessionDep,
    field: Annotated[str, Query(max_length=100, description="The grid field whose values name the two groups.")],
    a: Annotated[str, Query(max_length=200, description="Group a's value of the field (its JSON or its text).")],
    b: Annotated[str, Query(max_length=200, description="Group b's value.")],
    metric: Annotated[Literal[METRICS], Query(description="Each run's final test_acc or its best_test_acc.")]
    = "test_acc",
    confidence: Annotated[float, Query(ge=0.5, lt=1, description="The intervals' coverage; α = 1 − it.")] = 0.95,
    margin: Annotated[float | None, Query(gt=0, le=1, description="Equivalence margin δ: test |Δ| < δ.")] = None,
    format: Annotated[Literal["json", "csv"], Query(description="csv: one row per stratum × d, as an attachment.")]
    = "json",
) -> dict | Response:
    """Per d both groups ran (and per combination of the other grid fields): Δ = mean_a − mean_b of the
    succeeded runs' metric, Welch's interval, the one-sided p of a > b, Holm's adjustment over the d, with a
    margin the equivalence test, and beside it the seed-matched (paired) analysis (docs/statistics.md)."""
    experiment = get_experiment(session, experiment_id)
    runs = session.scalars(select(Run).where(Run.experiment_id == experiment_id).order_by(Run.id)).all()
    try:
        result = json_safe(contrast(experiment, runs, field, a, b, metric, confidence, margin))
    except ContrastError as problem:
        given = {"field": field, "a": a, "b": b, "metric": metric, "confidence": confidence, "margin": margin}
        raise reject([error(("query", problem.field), problem.message, input_=given.get(problem.field))]) from None
    if format == "json":
        return result
    filename = f"experiment-{experiment_id}-contrast-{field}.csv"
    return Response(export.to_csv(*table(result)), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/{experiment_id}/export", summary="Every run's config and final metrics, as CSV or JSON",
            responses={200: {"content": {"text/csv": {}, "application/json": {}}}})
def export_experiment(experiment_id: ExperimentId, session: SessionDep,
                      format: Literal["csv", "json"] = "csv") -> Response:
    """One row per run: its status and sizes, `config.<field>` for every run-config field and
    `final.<metric>` for every final metric. Served as an attachment."""
    get_experiment(session, experiment_id)
    runs = session.scalars(select(Run).where(Run.experiment_id == experiment_id).order_by(Run.id)
                           .options(selectinload(Run.tag_rows))).all()
    columns, table = export.rows(runs)
    filename = f"experiment-{experiment_id}.{format}"
    if format == "csv":
        body, media_type = export.to_csv(columns, table), "text/csv; charset=utf-8"
    else:
        body = json.dumps({"columns": columns, "rows": json_safe(table)}, allow_nan=False)
        media_type = "application/json"
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/{experiment_id}/events", summary="Live status of the experiment's runs (Server-Sent Events)",
            response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "An event stream."}})
async def experiment_event_stream(request: Request, experiment_id: ExperimentId,
                                  settings: SettingsDep) -> EventSourceResponse:
    """`event: status` with the runs whose status or progress changed (every run in the first one),
    `event: end` once every run has finished."""
    return await event_stream(request, lambda db, shutdown: experiment_events(
        db, experiment_id, settings.sse_poll_seconds, shutdown),
        check=lambda session: get_experiment(session, experiment_id))
