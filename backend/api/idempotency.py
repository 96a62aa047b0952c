"""Idempotency keys: a POST that creates something, repeated with the same Idempotency-Key, gets
the first answer again and creates nothing (as Stripe's API does).

A client that timed out cannot know whether its request was applied; retrying it with the same
key is safe. The answer is stored in the same transaction as what the request created, under a
unique (key, endpoint): of two concurrent duplicates, one commits and the other's commit fails,
rolling back everything it would have created, and it answers the winner's stored response.
Only successful answers are stored: a request refused (422, 401, …) changed nothing, and its
repeat is checked again. Keys expire after `settings.idempotency_key_hours`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from backend.domain.models import IdempotencyKey, utcnow

#: The longest key accepted; a UUID (36 characters) is the usual choice.
MAX_KEY_LENGTH = 200
#: Visible ASCII only: a key is compared byte for byte and echoed in messages.
KEY_PATTERN = rf"^[!-~]{{1,{MAX_KEY_LENGTH}}}$"


def request_hash(*parts: Any) -> str:
    """A digest of the request as parsed (body, and query parameters that change what it does):
    the same request in another spelling (key order, 1e-3 for 0.001) has the same digest."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Stored:
    """An earlier answer to a request with this key."""

    key: str
    endpoint: str
    same_request: bool
    status_code: int
    response: Any


def lookup(session: Session, key: str, endpoint: str, digest: str, hours: float) -> Stored | None:
    """The answer stored for (key, endpoint) within the last `hours`, or None. Expired answers are
    deleted first (all of them: the table holds a day of keys at most)."""
    cutoff = utcnow() - timedelta(hours=hours)
    if session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff)).rowcount:
        session.commit()
    else:
        session.rollback()   # nothing deleted: end the transaction, keep no lock
    row = session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == key, IdempotencyKey.endpoint == endpoint))
    if row is None:
        return None
    return Stored(key, endpoint, row.request_hash == digest, row.status_code, row.response)


def record(session: Session, key: str, endpoint: str, digest: str, status_code: int, response: Any) -> IdempotencyKey:
    """Add the answer to the session: it commits with what the request created."""
    row = IdempotencyKey(key=key, endpoint=endpoint, request_hash=digest, status_code=status_code, response=response)
    session.add(row)
    return row
