"""/api/runs: create, list, inspect, cancel, retry, archive and delete runs; their curves, events and
distributions."""

from __future__ import annotations

import base64
import logging
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, HTTPException, Path, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload
from sse_starlette import EventSourceResponse

from backend.api.auth import WRITE
from backend.api.deps import CeleryDep, SessionDep, SettingsDep
from backend.api.errors import reject
from backend.api.events import event_stream, run_events
from backend.api.routers.replay import IdempotencyKeyHeader, Idempotent, commit
from backend.api.routers.tags import TagFilter, add_tag, checked_tag_filter, commit_tags, remove_tag
from backend.api.run_filters import archived_condition, checked_config_fields, config_conditions
from backend.api.run_sorts import sort_order
from backend.api.schemas.common import MAX_ID, RunConfigJSON
from backend.api.schemas.runs import (
    ArchivedFilter,
    DistributionsOut,
    MetricsOut,
    RunOut,
    RunPage,
    RunRole,
    RunStatus,
    SeriesOut,
)
from backend.api.schemas.tags import ObjectPatch, TagIn
from backend.domain import lifecycle, points, tags
from backend.domain.analysis.downsample import downsample
from backend.domain.models import FINISHED, MODEL_ARTIFACT, QUEUED, RUNNING, STATISTICS_ARTIFACT, Run, RunArtifact
from backend.domain.queue import enqueue_run
from backend.domain.validation import check_run_config, config_errors, echo, error, from_run_problem
from idlab.metrics import json_safe

log = logging.getLogger("idlab.api")
router = APIRouter(prefix="/runs", tags=["runs"])

RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="The run's id.")]
KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,40}$"
#: Largest |x_min|, |x_max| of a zoom: 2^53, past every step a run can log (and where float steps stay exact).
MAX_STEP = float(2**53)
#: Most points LTTB may keep per series: its loop costs one pass per kept point.
MAX_LTTB_POINTS = 5000


def get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise HTTPException(404, f"run {run_id} not found")
    return run


def enqueue(celery, run: Run) -> list[str]:
    """Send the run's message (after its commit); a broker failure leaves it queued in the database."""
    try:
        enqueue_run(run.id, run.config, app=celery)
    except Exception as exc:  # noqa: BLE001 - any broker error: the database stays the source of truth
        log.error("run %s stored but not sent to the broker: %s", run.id, exc)
        return [f"stored as queued, but the broker could not be reached ({type(exc).__name__}): "
                "it starts once the message is re-sent"]
    return []


def active_references(session: Session, run_ids: list[int]) -> dict[int, list[int]]:
    """{run id: the queued or running runs whose p_init is from_run:<that id>}: those read its P
    statistics when they start, so it must stay until they have."""
    wanted, found = set(run_ids), {}
    rows = session.execute(select(Run.id, Run.config["p_init"].as_string()).where(
        Run.status.in_((QUEUED, RUNNING)), Run.config["p_init"].as_string().like("from_run:%")))
    for reader, p_init in rows:
        reference = p_init.removeprefix("from_run:")
        if reference.isdigit() and int(reference) in wanted and reader not in wanted:
            found.setdefault(int(reference), []).append(reader)
    return found


def deletion_refusal(run: Run) -> str | None:
    """Why this run cannot be deleted now (its worker would still write to it), or None."""
    if run.status == QUEUED:
        return (f"run {run.id} is queued: cancel it first (POST /api/runs/{run.id}/cancel cancels a queued run "
                "at once), then delete it")
    if run.status == RUNNING and run.cancel_requested:
        return (f"run {run.id} is still running: its cancel was requested and it stops at its worker's next "
                "check; delete it once its status is cancelled")
    if run.status == RUNNING:
        return (f"run {run.id} is running: cancel it first (POST /api/runs/{run.id}/cancel) and delete it once "
                "it has stopped")
    return None


def reference_refusal(references: dict[int, list[int]]) -> str | None:
    if not references:
        return None
    source, readers = next(iter(references.items()))
    return (f"run {source} is the source of P (p_init from_run:{source}) of queued or running run"
            f"{'s' if len(readers) > 1 else ''} {', '.join(map(str, sorted(readers)[:10]))}: delete it once "
            "they have started training (or cancel them first)")


@router.post("", status_code=201, response_model=RunOut, dependencies=WRITE, summary="Queue a run",
             responses={422: {"description": "An invalid config, or an Idempotency-Key used before for a "
                                             "different request."}})
def create_run(config: Annotated[RunConfigJSON, Body()], session: SessionDep, settings: SettingsDep,
               celery: CeleryDep, idempotency_key: IdempotencyKeyHeader = None) -> RunOut | Response:
    """Validate a run config (every field optional: defaults fill the rest), store it and queue it.

    With an `Idempotency-Key` header, a repeat of the same request answers the first answer again
    (the same run) and queues nothing."""
    keyed = Idempotent.of(session, settings, idempotency_key, "POST /api/runs", config)
    if keyed is not None and (earlier := keyed.earlier()) is not None:
        return earlier
    try:
        valid = check_run_config(config, settings)
    except ValidationError as exc:
        raise reject(config_errors(exc, lambda name: ("body", name) if name else ("body",))) from None
    if (problem := from_run_problem(session, valid)) is not None:
        raise reject([error(("body", "p_init"), problem, input_=echo(valid.p_init))])
    run = lifecycle.new_run(valid)
    session.add(run)
    if keyed is None:
        session.commit()
        return RunOut.of(run, enqueue(celery, run))
    session.flush()
    answer = RunOut.of(run)
    keyed.keep(201, answer.model_dump(mode="json"))
    if (winner := commit(session, keyed)) is not None:
        return winner
    if warnings := enqueue(celery, run):
        # The replay must tell of the broker's failure too.
        answer.warnings += warnings
        keyed.keep(201, answer.model_dump(mode="json"))
        session.commit()
    return answer


@router.get("", response_model=RunPage, summary="List runs")
def list_runs(
    request: Request,
    session: SessionDep,
    status: Annotated[list[RunStatus] | None,
                      Query(description="Any of these statuses (repeat the parameter).")] = None,
    experiment_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    role: RunRole | None = None,
    batch_id: Annotated[str | None, Query(pattern="^[0-9a-f]{32}$", description=(
        "The runs that trained in this batch (a run's `batch_id`)."))] = None,
    sort: Annotated[str, Query(max_length=100, description=(
        "id, created_at, status, role, experiment_id, d, duration, metrics.<key> (test_acc, train_loss, …: the final "
        "value, or the latest while a run goes) or config.<field>; '-' first for descending. Runs without "
        "a value come last."))] = "-id",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    archived: Annotated[ArchivedFilter, Query(description=(
        "false: hide archived runs and the runs of archived experiments (the default); true: only those; "
        "all: every run."))] = "false",
    config_fields: Annotated[list[str] | None, Query(
        max_length=100, description="Return only these fields of each run's config (repeat the parameter); "
                                    "all of them when absent.")] = None,
    tag: TagFilter = None,
) -> Response:
    """Runs, newest first. Filter on any run-config field with `config.<field>=value`
    (repeat for any of several values), e.g. `?config.projection=fastfood&config.d=750&config.d=1000`,
    and on tags with `tag=…` (repeat: runs holding all of them)."""
    fields = checked_config_fields(config_fields)
    wanted_tags = checked_tag_filter(tag)
    order = sort_order(sort)
    conditions = config_conditions(request.query_params)
    if status:
        conditions.append(Run.status.in_(status))
    if experiment_id is not None:
        conditions.append(Run.experiment_id == experiment_id)
    if role is not None:
        conditions.append(Run.role == role)
    if batch_id is not None:
        conditions.append(Run.batch_id == batch_id)
    if (hidden := archived_condition(archived)) is not None:
        conditions.append(hidden)
    conditions += tags.run_tag_conditions(wanted_tags)
    total = session.scalar(select(func.count()).select_from(Run).where(*conditions))
    # The page's tags in one more query, not one per run.
    runs = session.scalars(select(Run).where(*conditions).order_by(*order).limit(limit).offset(offset)
                           .options(selectinload(Run.tag_rows))).all()
    page = RunPage(items=[RunOut.of(run, config_fields=fields) for run in runs], total=total, limit=limit,
                   offset=offset)
    # Already validated: serialized once here rather than validated again by FastAPI (a dashboard
    # lists hundreds of runs, and this halves the time).
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/{run_id}", response_model=RunOut, summary="A run")
def read_run(run_id: RunId, session: SessionDep) -> RunOut:
    return RunOut.of(get_run(session, run_id))


@router.patch("/{run_id}", response_model=RunOut, dependencies=WRITE,
              summary="Archive or unarchive a run, set its tags or notes",
              responses={409: {"description": "Its tags were changed by another request meanwhile: try again."}})
def update_run(run_id: RunId, patch: ObjectPatch, session: SessionDep) -> RunOut:
    """`{"archived": true}` hides the run from the runs list (GET /api/runs?archived=true|all shows it);
    nothing of it is deleted, and it can be read, retried or unarchived as before.
    `{"tags": [...]}` replaces its tags, `{"notes": "..."}` its notes; fields left out stay as they are."""
    run = get_run(session, run_id)
    patch.apply_to(run)
    commit_tags(session, run)
    return RunOut.of(run)


@router.post("/{run_id}/tags", response_model=RunOut, dependencies=WRITE, summary="Tag a run",
             responses={422: {"description": "Not a tag, or the run holds the most tags already."}})
def tag_run(run_id: RunId, body: TagIn, session: SessionDep) -> RunOut:
    """Add one tag (a run that has it already, in any case, is left as it is; a repeat is harmless)."""
    run = get_run(session, run_id)
    add_tag(session, run, body.tag)
    return RunOut.of(run)


@router.delete("/{run_id}/tags/{tag:path}", response_model=RunOut, dependencies=WRITE, summary="Untag a run")
def untag_run(run_id: RunId, tag: str, session: SessionDep) -> RunOut:
    """Remove one tag, in any case (a run without it is left as it is; a repeat is harmless).
    URL-encode the tag: `DELETE /api/runs/7/tags/paper%3Afig-3`."""
    run = get_run(session, run_id)
    remove_tag(session, run, tag)
    return RunOut.of(run)


@router.delete("/{run_id}", status_code=204, response_class=Response, dependencies=WRITE, summary="Delete a run",
               responses={409: {"description": "The run is queued or running (cancel it first), or a queued or "
                                               "running run samples its P from it (p_init from_run:<id>)."}})
def delete_run(run_id: RunId, session: SessionDep) -> Response:
    """Delete a finished run (succeeded, failed, cancelled or diverged) with its metric points, envelopes
    and artifacts. A queued run is cancelled first (at once); a running one once it has stopped.
    Runs that sampled their P from it (p_init from_run:<id>) keep their config; only runs that have
    yet to read its statistics (queued or running ones) prevent the deletion."""
    run = get_run(session, run_id)
    refusal = deletion_refusal(run) or reference_refusal(active_references(session, [run_id]))
    if refusal:
        raise HTTPException(409, refusal)
    # Conditional: a retry between the check and here leaves the run (the database decides). The
    # points, envelopes and artifacts go by ON DELETE CASCADE (SQLite's foreign keys are on: backend.domain.db).
    deleted = session.execute(delete(Run).where(Run.id == run_id, Run.status.in_(FINISHED))).rowcount
    if not deleted:
        session.rollback()
        raise HTTPException(409, deletion_refusal(get_run(session, run_id))
                            or f"run {run_id} changed meanwhile: try again")
    session.commit()
    return Response(status_code=204)


@router.post("/{run_id}/cancel", response_model=RunOut, dependencies=WRITE, summary="Cancel a run",
             responses={409: {"description": "The run has already finished."}})
def cancel_run(run_id: RunId, session: SessionDep) -> RunOut:
    """A queued run is cancelled at once; a running one stops at its next cancel check."""
    run = get_run(session, run_id)
    try:
        lifecycle.request_cancel(session, run)
    except lifecycle.TransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    session.commit()
    return RunOut.of(run)


@router.post("/{run_id}/retry", response_model=RunOut, dependencies=WRITE, summary="Retry a run",
             responses={409: {"description": "The run is not failed, cancelled or diverged."}})
def retry_run(run_id: RunId, session: SessionDep, celery: CeleryDep) -> RunOut:
    """Queue a failed, cancelled or diverged run again; its points are kept and overwritten step by step."""
    run = get_run(session, run_id)
    try:
        lifecycle.retry(session, run)
    except lifecycle.TransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    session.commit()
    return RunOut.of(run, enqueue(celery, run))


@router.get("/{run_id}/metrics", response_model=MetricsOut, summary="A run's curves, downsampled")
def run_metrics(
    run_id: RunId,
    session: SessionDep,
    keys: Annotated[list[str] | None, Query(
        max_length=20, description="Metric keys (repeat, or comma-separated); all by default.")] = None,
    max_points: Annotated[int, Query(ge=10, le=100_000, description=(
        f"At most this many points per series (with method lttb at most {MAX_LTTB_POINTS}).")) ] = 1000,
    x_min: Annotated[float | None, Query(allow_inf_nan=False, ge=-MAX_STEP, le=MAX_STEP,
                                         description="Only steps ≥ x_min (zoom).")] = None,
    x_max: Annotated[float | None, Query(allow_inf_nan=False, ge=-MAX_STEP, le=MAX_STEP,
                                         description="Only steps ≤ x_max (zoom).")] = None,
    method: Annotated[Literal["minmax", "lttb"], Query(description=(
        "`minmax`: first/min/max/last per bucket (keeps spikes); `lttb`: largest triangle three buckets."))] = "minmax",
) -> MetricsOut:
    """Each series in step order, downsampled server-side to at most `max_points`. A zoomed
    range (x_min, x_max) is re-sampled from the full-resolution points inside it."""
    get_run(session, run_id)
    if method == "lttb" and max_points > MAX_LTTB_POINTS:
        raise reject([{"type": "less_than_equal", "loc": ["query", "max_points"], "input": max_points,
                       "msg": f"method lttb keeps at most {MAX_LTTB_POINTS} points per series (its cost grows with "
                              "them): lower max_points, or use method minmax"}])
    if x_min is not None and x_max is not None and x_min > x_max:
        raise reject([{"type": "value_error", "loc": ["query", "x_min"], "msg": "x_min must not exceed x_max",
                       "input": x_min}])
    wanted = _keys(keys)
    version = points.last_point_id(session, run_id)
    series = {}
    for key in wanted or points.series_keys(session, run_id):
        total = points.count_points(session, run_id, key, x_min, x_max)
        read = points.read_series if total <= points.RAW_LIMIT else points.read_envelope_points
        steps, values, epochs = read(session, run_id, key, x_min, x_max)
        kept = downsample(steps, values, max_points, method)
        series[key] = SeriesOut(steps=steps[kept].tolist(), values=values[kept].tolist(), epochs=epochs[kept].tolist(),
                                total=total, downsampled=len(kept) < total)
    return MetricsOut(run_id=run_id, method=method, max_points=max_points, x_min=x_min, x_max=x_max,
                      series=series, last_event_id=version)


@router.get("/{run_id}/events", summary="Live points and status (Server-Sent Events)",
            response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "An event stream (see backend/api/events.py)."}})
async def run_event_stream(
    request: Request,
    run_id: RunId,
    settings: SettingsDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", max_length=30)] = None,
    last_event_id: Annotated[int | None, Query(
        ge=0, le=MAX_ID, description="Resume after this point id (as the Last-Event-ID header does).")] = None,
) -> EventSourceResponse:
    """`event: status` on every status or progress change, `event: points` with new metric points
    (the event id is the largest point id in it), `event: end` once the run has finished and every
    point was sent. Resumes after Last-Event-ID (header, or `last_event_id` in the query)."""
    # A reconnecting browser sends the header with the latest id it received, while the URL still
    # carries the id it first connected with: both mean "has everything up to here", so the larger wins.
    after = max(last_event_id or 0, _event_id(last_event_id_header))
    # The stream's slot first (429/503 past the caps), then the run's existence, in a thread.
    return await event_stream(request, lambda db, shutdown: run_events(
        db, run_id, after, settings.sse_poll_seconds, shutdown), check=lambda session: get_run(session, run_id))


@router.get("/{run_id}/distributions", response_model=DistributionsOut, summary="Histograms of P and θ_d",
            responses={404: {"description": "No such run, or it has no statistics yet."}})
def run_distributions(run_id: RunId, session: SessionDep) -> dict[str, Any]:
    """Per feature block of P, and for θ_d: shared bin edges and the counts and summary statistics
    at initialisation and after training (`trained` is null until the run has finished training)."""
    run = get_run(session, run_id)
    artifact = session.scalar(select(RunArtifact).where(RunArtifact.run_id == run_id,
                                                        RunArtifact.name == STATISTICS_ARTIFACT))
    if artifact is None:
        raise HTTPException(404, f"run {run_id} has no distributions yet (it is {run.status}; they are "
                                 "recorded once its projection has been built)")
    return {"P": {}, "theta_d": None, **json_safe(artifact.data), "run_id": run_id, "created_at": artifact.created_at}


@router.get("/{run_id}/model", summary="The run as a model file", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "Config, seed and trained tensors: `idlab evaluate FILE` rebuilds the "
                                            "network from them and reproduces its test accuracy."},
                       404: {"description": "No such run, or it has no model file."}})
def run_model(run_id: RunId, session: SessionDep) -> Response:
    """A succeeded subspace run as a small file (worker/subspace/export.py): θ_0, P and φ are redrawn from
    its seed, so it holds only its config and what training changed (θ_d; P or B where trained)."""
    run = get_run(session, run_id)
    artifact = session.scalar(select(RunArtifact).where(RunArtifact.run_id == run_id,
                                                        RunArtifact.name == MODEL_ARTIFACT))
    if artifact is None:
        why = ("only succeeded subspace runs have one"
               if run.status != "succeeded" or run.config.get("method") != "subspace"
               else "its trained tensors were too large to store (a trained dense P is D×k floats)")
        raise HTTPException(404, f"run {run_id} has no model file: {why} (it is a {run.config.get('method')} run, "
                                 f"{run.status})")
    name = f"idlab-run-{run_id}-d{run.d}.idlab-model"
    return Response(base64.b64decode(artifact.data["base64"]), media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _keys(raw: list[str] | None) -> list[str]:
    wanted = [key.strip() for value in raw or [] for key in value.split(",") if key.strip()]
    bad = [key for key in wanted if not re.match(KEY_PATTERN, key)]
    if bad or len(wanted) > 20:
        raise reject([{"type": "value_error", "loc": ["query", "keys"], "input": (bad or wanted)[0][:50],
                       "msg": "metric keys are names like train_loss or test_acc (letters, digits, _ . : -), "
                              "at most 20"}])
    return list(dict.fromkeys(wanted))


def _event_id(header: str | None) -> int:
    """The Last-Event-ID header as a point id (0, from the start, when absent or not a number)."""
    try:
        value = int(header) if header else 0
    except ValueError:
        return 0
    return value if 0 <= value <= MAX_ID else 0
