"""The API token: when settings.api_token is set, every call that changes something needs it.

Reads stay open (the lab's dashboards and streams), writes need
`Authorization: Bearer <token>`. Mutating routes declare `dependencies=WRITE`;
a test walks every operation in the OpenAPI spec to check that none was forgotten.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

bearer = HTTPBearer(auto_error=False,
                    description="The lab's API token (settings.api_token), for calls that change something.")


def require_token(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None) -> None:
    expected = request.app.state.settings.api_token
    if not expected:
        return
    given = credentials.credentials if credentials is not None else ""
    # compare_digest: the time taken does not reveal how much of the token matched.
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this call changes the lab and needs the API token: send 'Authorization: Bearer <token>'"
            if credentials is None else "wrong API token",
            headers={"WWW-Authenticate": "Bearer"},
        )


WRITE = [Depends(require_token)]
