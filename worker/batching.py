"""Which queued runs a worker trains together with the run its message named: the batch.

A worker is sent one run id at a time. Having claimed that run, it also claims up to
K − 1 other queued runs that can share its batch (`worker.subspace.batched.batch_key`:
same training data, architecture, batch size, L2 scope and device; subspace method),
oldest first, each with the same conditional UPDATE as a claim from a message
(`backend.domain.lifecycle.claim`): a run is claimed once, whether by its own message or as a
batchmate. The batchmates' own messages arrive later and are dropped, like any
duplicate delivery; a batchmate whose worker vanishes is requeued and sent again by
the reaper, run by run.

The batch's memory — every run's θ, P, B and activations (`RunConfig.memory_bytes`) —
stays within the memory budget that bounds one run (`memory_budget_mb`), so a batch
of dense P runs is as safe as one of them.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.domain import lifecycle
from backend.domain.models import QUEUED, RUNNING, Run
from backend.domain.settings import Settings
from backend.domain.validation import check_run_config
from idlab.config import RunConfig
from worker.devices import default_batch_runs

log = logging.getLogger(__name__)

#: Queued runs looked at per free place in the batch (the SQL filter leaves few incompatible ones).
SCAN_PER_PLACE = 8


@dataclass
class Claimed:
    """A run this execution holds: its id, claim token and stored config."""

    run_id: int
    token: str
    raw_config: dict


def batch_runs(settings: Settings, config: RunConfig) -> int:
    """K for a batch led by `config`: the setting, or what measures fastest on its device; 1 for direct runs
    and for a network that cannot be evaluated as a batch (`unbatchable`)."""
    if config.method != "subspace" or unbatchable(config) is not None:
        return 1
    return settings.batch_runs or default_batch_runs(config.device)


#: (model, dataset, fc_widths) → why its runs train one at a time, or None: each network is tried once.
_UNBATCHABLE: dict[tuple, str | None] = {}


def unbatchable(config: RunConfig) -> str | None:
    """Why runs of this network train one at a time (`stacked.vmap_problem`), or None; logged when found."""
    from worker.subspace.stacked import vmap_problem

    key = (config.model, config.dataset, tuple(config.fc_widths) if config.model == "fc" else ())
    if key not in _UNBATCHABLE:
        _UNBATCHABLE[key] = problem = vmap_problem(config)
        if problem is not None:
            log.warning("runs of model %r on %r train one at a time, not in batches: %s", config.model,
                        config.dataset, problem)
    return _UNBATCHABLE[key]


def claim_batchmates(session: Session, lead: Claimed, config: RunConfig, worker: str, settings: Settings,
                     ) -> list[Claimed]:
    """Claim up to K − 1 queued runs that can train with `lead` (already claimed); returns them, oldest first."""
    from worker.subspace.batched import batch_key

    places = batch_runs(settings, config) - 1
    if places <= 0:
        return []
    budget = settings.memory_budget_mb * 2**20 - config.memory_bytes()
    key = batch_key(config)
    candidates = _candidates(session, lead, config, places)
    training = _training_here(session, lead, config, worker)
    places = min(places, fair_share(training + 1 + len(candidates), settings.worker_processes) - 1)
    mates: list[Claimed] = []
    for run_id, raw in candidates:
        if len(mates) >= places:
            break
        try:
            candidate = check_run_config(raw, settings)
        except ValidationError:
            continue  # it fails alone, with its reasons, when its own message arrives
        if batch_key(candidate) != key:
            continue
        if candidate.memory_bytes() > budget:
            continue
        token = lifecycle.claim(session, run_id, worker)
        if token is None:  # claimed meanwhile by another worker, or cancelled
            continue
        mates.append(Claimed(run_id, token, dict(raw)))
        budget -= candidate.memory_bytes()
    return mates


def fair_share(runs: int, processes: int) -> int:
    """Runs one batch takes of `runs` that could train together with `processes` processes: ⌈runs / processes⌉.

    `runs` counts those this worker already trains, the lead and the queued candidates: the first
    batch of a 21-run sweep on two processes takes 11, the second the other 10. Taking them all
    would leave the other processes idle while one trains the whole sweep; an equal share lets
    every process train its part side by side (on a CPU each has its own core).
    """
    return max(1, -(-runs // max(1, processes)))


def _training_here(session: Session, lead: Claimed, config: RunConfig, worker: str) -> int:
    """Runs of the lead's kind this worker is training now, in its other processes."""
    count = session.scalar(select(func.count()).select_from(Run).where(
        Run.status == RUNNING, Run.worker == worker, Run.id != lead.run_id,
        Run.config["dataset"].as_string() == config.dataset, Run.config["model"].as_string() == config.model,
        Run.config["batch_size"].as_integer() == config.batch_size))
    session.commit()
    return count or 0


def _candidates(session: Session, lead: Claimed, config: RunConfig, places: int) -> list:
    """Queued runs that may share the lead's batch (the SQL filter on the key's main fields), oldest first."""
    candidates = session.execute(select(Run.id, Run.config).where(
        Run.status == QUEUED, Run.cancel_requested.is_(False), Run.id != lead.run_id,
        Run.config["method"].as_string() == "subspace",
        Run.config["dataset"].as_string() == config.dataset,
        Run.config["model"].as_string() == config.model,
        Run.config["device"].as_string() == config.device,
        Run.config["batch_size"].as_integer() == config.batch_size,
    ).order_by(Run.id).limit(places * SCAN_PER_PLACE)).all()
    session.commit()  # end the read: on SQLite it would pin a snapshot under the claims that follow
    return candidates


def mark_batch(session: Session, members: list[Claimed]) -> str | None:
    """Record on each run the batch it trains in (None for a run trained alone); returns the batch's id."""
    batch_id = uuid.uuid4().hex if len(members) > 1 else None
    for member in members:
        session.execute(update(Run).where(Run.id == member.run_id, Run.claim_token == member.token)
                        .values(batch_id=batch_id))
    session.commit()
    return batch_id
