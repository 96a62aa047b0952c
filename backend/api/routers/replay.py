"""The Idempotency-Key header of the POSTs that create runs and experiments, as HTTP: the header,
its check, the replayed answer and the refusal of a key reused for another request
(the storage is backend/api/idempotency.py)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.api import idempotency
from backend.api.errors import reject
from backend.domain.settings import Settings
from backend.domain.validation import echo, error

HEADER = "Idempotency-Key"
#: Set on an answer that is a stored one, replayed (Stripe's name for it).
REPLAYED = "Idempotent-Replayed"

IdempotencyKeyHeader = Annotated[str | None, Header(
    alias=HEADER, description=(
        "Makes a retry safe: the first request with this key is answered and its answer kept for "
        "IDLAB_IDEMPOTENCY_KEY_HOURS (24 h); the same request again with the same key gets that answer "
        "(the same ids, header Idempotent-Replayed: true) and creates nothing. The same key with a "
        "different body is refused (422). 1 to 200 visible ASCII characters, e.g. a UUID."))]


def _header_error(message: str, key: str):
    return reject([error(("header", HEADER), message, "value_error", echo(key[:60]))])


class Idempotent:
    """One keyed request: what was answered before, and the answer to keep."""

    def __init__(self, session: Session, settings: Settings, key: str, endpoint: str, digest: str) -> None:
        self.session, self.settings = session, settings
        self.key, self.endpoint, self.digest = key, endpoint, digest
        self.row = None

    @classmethod
    def of(cls, session: Session, settings: Settings, key: str | None, endpoint: str,
           *request: Any) -> Idempotent | None:
        """None without a key; 422 naming the header when the key is malformed."""
        if key is None:
            return None
        if not re.match(idempotency.KEY_PATTERN, key):
            raise _header_error(f"an {HEADER} is 1 to {idempotency.MAX_KEY_LENGTH} visible ASCII characters "
                                "(letters, digits, punctuation; no spaces), e.g. a UUID", key)
        return cls(session, settings, key, endpoint, idempotency.request_hash(*request))

    def earlier(self) -> JSONResponse | None:
        """The stored answer to this request, replayed; 422 if the key was used for another request."""
        stored = idempotency.lookup(self.session, self.key, self.endpoint, self.digest,
                                    self.settings.idempotency_key_hours)
        return None if stored is None else self._replay(stored)

    def _replay(self, stored: idempotency.Stored) -> JSONResponse:
        if not stored.same_request:
            raise _header_error(
                f"this {HEADER} was already used for a different request to {self.endpoint} (within the last "
                f"{self.settings.idempotency_key_hours:g} h): send a new key with a new request, and the same key "
                "only to retry the very same request", self.key)
        return JSONResponse(stored.response, status_code=stored.status_code, headers={REPLAYED: "true"})

    def keep(self, status_code: int, response: Any) -> None:
        """Add the answer to the session, to commit with what the request created."""
        if self.row is None:
            self.row = idempotency.record(self.session, self.key, self.endpoint, self.digest, status_code, response)
        else:
            self.row.status_code, self.row.response = status_code, response

    def commit(self) -> JSONResponse | None:
        """Commit; if a concurrent request with the same key committed first, roll back (nothing of this
        one is stored) and answer what that one answered."""
        try:
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
            stored = idempotency.lookup(self.session, self.key, self.endpoint, self.digest,
                                        self.settings.idempotency_key_hours)
            if stored is None:
                raise
            return self._replay(stored)
        return None


def commit(session: Session, keyed: Idempotent | None) -> JSONResponse | None:
    """Commit the request's changes (with its answer when keyed); a replayed answer when it lost a race."""
    if keyed is None:
        session.commit()
        return None
    return keyed.commit()
