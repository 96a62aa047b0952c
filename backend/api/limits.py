"""Bounded request bodies: a body over settings.max_request_bytes is refused with 413 before it is parsed.

The bound holds however the client sends the body. A declared Content-Length over the
limit is refused at once, without reading a byte of it; a body of unannounced length
(chunked transfer encoding) is counted as it arrives and refused as soon as it passes
the limit. So no request makes the API hold more than the limit in memory, and the
JSON parser never sees a body the lab would not accept.

A pure ASGI middleware: the body is read here (at most the limit) and handed on to the
application as one message; later messages (a client disconnecting from an event
stream) pass through untouched.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.domain.settings import Settings

#: The settings variable an operator changes to accept larger bodies.
LIMIT_VARIABLE = "IDLAB_MAX_REQUEST_BYTES"


class BodyTooLarge(Exception):
    pass


class RequestBodyLimit:
    """Reads settings.max_request_bytes at every request, as the handlers read their settings."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.settings.max_request_bytes
        declared = _content_length(scope)
        if declared is not None and declared > max_bytes:
            await _refuse(send, max_bytes)
            return
        try:
            first = await _read_body(receive, max_bytes)
        except BodyTooLarge:
            await _refuse(send, max_bytes)
            return
        if first["type"] == "http.disconnect":  # the client left mid-body: there is no one to answer
            return

        replayed = False

        async def receive_after_body() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, receive_after_body, send)


async def _read_body(receive: Receive, max_bytes: int) -> Message:
    """The whole body as one http.request message (or the disconnect that cut it short)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return message
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}


async def _refuse(send: Send, max_bytes: int) -> None:
    body = json.dumps({"detail": refusal(max_bytes)}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def refusal(max_bytes: int) -> str:
    return (f"the request body is larger than the limit of {_size(max_bytes)} ({max_bytes:,} bytes): send a smaller "
            f"one (an experiment sweeps a grid of values rather than listing its runs), or raise {LIMIT_VARIABLE} "
            "on the server")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:  # the server rejects a malformed one first; if not, the body is counted
                return None
    return None


def _size(n: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"
