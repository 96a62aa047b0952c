"""A model file evaluated by a worker: rebuilt from its seed and trained tensors, tested on the lab's data.

`POST /api/models/evaluate` stores the file and queues its id (backend.domain.evaluations);
this claims it, loads the test split the file's config names (from the worker's data
folder, fetching it on first use as a run would), and records what
`worker.subspace.export.evaluate_file` measures — or why the file was refused (an engine
that now draws θ_0 or P differently, tensors that do not fit the network).
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import sessionmaker

from backend.domain import evaluations
from backend.domain.db import make_engine
from backend.domain.models import ModelEvaluation
from backend.domain.settings import Settings
from idlab.config import RunConfig
from idlab.model_file import sizes
from worker.devices import configure_native_kernels, configure_torch_threads

log = logging.getLogger(__name__)


def evaluate_stored(evaluation_id: int, worker_name: str, settings: Settings) -> str:
    """Claim evaluation `evaluation_id` and evaluate its file; returns how it ended, for the log."""
    engine = make_engine(settings.database)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    try:
        with sessions() as session:
            if not evaluations.claim(session, evaluation_id, worker_name):
                log.info("model evaluation %s is not queued: message dropped", evaluation_id)
                return "dropped"
            evaluation = session.get(ModelEvaluation, evaluation_id)
            data, device, config = evaluation.file, evaluation.device, RunConfig.model_validate(evaluation.config)
        try:
            result, error = measure(data, device, config, settings), None
        except Exception as problem:  # every refusal or failure is the evaluation's answer, not the worker's crash
            result, error = None, f"{type(problem).__name__}: {problem}"
            log.info("model evaluation %s failed: %s", evaluation_id, error)
        with sessions() as session:
            evaluations.finish(session, evaluation_id, result=result, error=error)
        return "failed" if error else "succeeded"
    finally:
        engine.dispose()


def measure(data: bytes, device: str, config: RunConfig, settings: Settings) -> dict:
    """Test accuracy and loss of the file's network on its config's test split, with the sizes (what a
    worker records and `idlab evaluate` prints)."""
    from worker.subspace.data import load_dataset
    from worker.subspace.export import evaluate_file

    configure_torch_threads(settings.torch_threads)
    configure_native_kernels(settings.kernel_cache_dir, settings.c_compiler)
    splits = load_dataset(config, settings.data_dir, download=settings.allow_download,
                          mirrors=settings.dataset_mirrors)
    measured = evaluate_file(data, splits.test_x, splits.test_y, device)
    return {"test_acc": measured.test_acc, "test_loss": measured.test_loss,
            "recorded_test_acc": measured.exported_test_acc, "device": measured.device,
            "dataset": config.dataset, "test_examples": len(splits.test_x), **sizes(config.D, len(data))}
