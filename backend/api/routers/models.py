"""/api/models: a model file (a run's config, seed and trained tensors) rebuilt and evaluated by a worker.

The API reads the file's envelope without torch (`idlab.model_file`): a file that is not a
model file, of another format, changed after export, or describing a config this lab refuses
is answered 422 at once. A valid one is stored and queued for a worker of the device asked
for, which rebuilds θ_0, P and φ from the seed and tests the network on the lab's own copy of
its dataset (backend.domain.evaluations, worker/evaluation.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request

from backend.api.auth import WRITE
from backend.api.deps import CeleryDep, SessionDep
from backend.api.errors import reject
from backend.api.schemas.common import MAX_ID
from backend.api.schemas.models import EvaluationOut
from backend.domain import evaluations
from backend.domain.models import ModelEvaluation
from idlab.model_file import ModelFileError

router = APIRouter(prefix="/models", tags=["models"])

EvaluationId = Annotated[int, Path(ge=1, le=MAX_ID, description="The evaluation's id.")]
DEVICE_PATTERN = r"^(cpu|auto|cuda(:\d{1,2})?)$"
FILE_BODY = {"requestBody": {"required": True, "description": "A model file, as `GET /api/runs/{id}/model` gives it.",
                             "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                 "format": "binary"}}}}}


@router.post("/evaluate", status_code=202, response_model=EvaluationOut, dependencies=WRITE,
             summary="Evaluate a model file on a worker", openapi_extra=FILE_BODY,
             responses={422: {"description": "Not a model file, another format, changed after export, or a config "
                                             "this lab refuses; `detail[0].msg` says which."},
                        413: {"description": "Over the request-size limit (IDLAB_MAX_REQUEST_BYTES)."}})
async def evaluate_model(request: Request, session: SessionDep, celery: CeleryDep,
                         device: Annotated[str | None, Query(pattern=DEVICE_PATTERN, description=(
                             "Where to evaluate: `cpu`, `cuda`, `cuda:N` or `auto` (default: the device the "
                             "run was configured for)."))] = None) -> dict:
    """Queue the file's evaluation; poll `GET /api/models/evaluations/{id}` for its result. On the device the
    run trained on, the test accuracy equals the one it recorded; on another, it agrees within its rounding."""
    data = await request.body()
    try:
        evaluation = evaluations.new_evaluation(data, device)
    except ModelFileError as problem:
        raise reject([{"type": "model_file", "loc": ["body"], "msg": str(problem),
                       "input": f"{len(data):,} bytes"}]) from problem
    session.add(evaluation)
    session.commit()
    evaluations.enqueue(evaluation, celery)
    return describe(evaluation)


@router.get("/evaluations/{evaluation_id}", response_model=EvaluationOut, summary="A model file's evaluation")
def read_evaluation(evaluation_id: EvaluationId, session: SessionDep) -> dict:
    evaluation = session.get(ModelEvaluation, evaluation_id)
    if evaluation is None:
        raise HTTPException(404, f"model evaluation {evaluation_id} not found")
    return describe(evaluation)


def describe(evaluation: ModelEvaluation) -> dict:
    fields = ("id", "status", "device", "sha256", "config", "recorded_test_acc", "result", "error", "worker",
              "created_at", "started_at", "finished_at")
    return {**{name: getattr(evaluation, name) for name in fields},
            "url": f"/api/models/evaluations/{evaluation.id}"}
