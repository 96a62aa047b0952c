"""The lab's edge towards browsers: only its own host names, no writes from other sites, strict pages.

One pure ASGI middleware, outermost, so that every answer passes through it (pages, the API,
static files, and the refusals of the middlewares inside it):

- Host: the lab answers only to the names it is served as: localhost, 127.0.0.1 and [::1] on any
  port, and those listed in IDLAB_ALLOWED_HOSTS. Any other Host is a 400 naming the setting. This
  stops DNS rebinding: a page on evil.example whose name is made to resolve to 127.0.0.1 reaches
  the lab with `Host: evil.example`, and is refused before anything reads or changes the lab.
- Cross-site writes: a POST, PUT, PATCH or DELETE sent by a browser from another site is a 403,
  whether or not an API token is set (a token kept in the dashboard's localStorage would not stop a
  form posted from another site when none is set). A browser says where a request comes from:
  `Sec-Fetch-Site` (cross-site and same-site are refused; same-origin and none, the user's own
  navigation, pass) and `Origin` (refused unless it is the lab's own origin: the request's Host, a
  name of IDLAB_ALLOWED_HOSTS behind a proxy that rewrites Host, or one listed in
  IDLAB_CORS_ORIGINS, which lets a page there call the API). Clients that are not browsers (curl,
  httpx, idlab.client) send neither header and pass, to meet the token when one is set.
- Headers on every response: the Content-Security-Policy below, X-Content-Type-Options: nosniff,
  X-Frame-Options: DENY (frame-ancestors 'none' for older browsers) and Referrer-Policy: no-referrer (no
  page of the lab tells another site its URLs, run and experiment ids included).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.auth import MUTATING_METHODS
from backend.domain.settings import Settings

#: The settings variables an operator changes to let another name or another site in.
HOSTS_VARIABLE, ORIGINS_VARIABLE = "IDLAB_ALLOWED_HOSTS", "IDLAB_CORS_ORIGINS"

#: Always served: the loopback names. A DNS-rebinding page cannot make its own name one of these.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

DEFAULT_PORTS = {"http": 80, "https": 443}


def content_security_policy(script_hashes: Iterable[str] = ()) -> str:
    """Self only, plus what the lab's own pages were measured to need in Chromium: each source below
    was refused once, with the break it caused; the browser tests (tests/ui) fail on any violation."""
    directives = {
        "default-src": ["'self'"],   # scripts, fetches and event streams, fonts: the lab's own
        # Swagger UI's inline start-up script, by its hash (backend.api.docs); no other inline script.
        "script-src": ["'self'", *script_hashes],
        # Inline styles (never scripts): plotly.js writes its rules (modebar, hover, drag cursors)
        # into a <style> element it creates, and without them draws unstyled charts with only a
        # console warning; some traces (colorbars, heatmaps) also set style attributes. ReDoc renders
        # with styled-components, which inject <style> elements: without them it stops with an error.
        "style-src": ["'self'", "'unsafe-inline'"],
        # data: Swagger UI's stylesheet draws its icons (arrows, the select boxes) as data: SVGs, and
        # the dashboard's favicon is the empty data:,. blob: plotly's PNG export (the charts' PNG
        # buttons) draws the chart's SVG from a blob: URL onto a canvas; without it no file comes.
        "img-src": ["'self'", "data:", "blob:"],
        # ReDoc's search runs in a worker it starts from a blob: URL; without it the search finds nothing.
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


class BrowserGuard:
    """Reads the settings at every request, as the handlers do (tests change them on a running app)."""

    def __init__(self, app: ASGIApp, settings: Settings, script_hashes: Iterable[str] = ()) -> None:
        self.app = app
        self.settings = settings
        self.headers = [
            ("Content-Security-Policy", content_security_policy(script_hashes)),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    headers[name] = value
            await send(message)

        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        refusal = self.refusal(scope.get("method", "GET"), headers)
        if refusal is None:
            await self.app(scope, receive, send_with_headers)
        elif scope["type"] == "http":
            status, detail = refusal
            body = json.dumps({"detail": detail}).encode()
            await send_with_headers({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send_with_headers({"type": "http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})   # policy violation

    def refusal(self, method: str, headers: dict[str, str]) -> tuple[int, str] | None:
        """(status, message) when the request is refused, else None."""
        host_header = headers.get("host", "")
        host, port = split_host(host_header)
        if not host_header:
            return 400, "a request needs a Host header that names this lab (HTTP/1.1)"
        if not self.serves(host):
            named = ", ".join(self.settings.allowed_hosts) or "none"
            return 400, (f"this lab does not answer to the host name {host_header!r}: it answers to localhost, "
                         f"127.0.0.1 and [::1], and to the names in {HOSTS_VARIABLE} (now: {named}). If "
                         f"{host or 'it'} is a name of this lab, add it to {HOSTS_VARIABLE} on the server.")
        if method.upper() not in MUTATING_METHODS:
            return None
        origin, site = headers.get("origin"), headers.get("sec-fetch-site", "").lower()
        if origin is not None and origin in self.settings.cors_origins:
            return None
        if site in ("cross-site", "same-site") or (origin is not None and not self.own_origin(origin, host, port)):
            return 403, (f"cross-site request refused: a page on {origin or 'another site'} may not change this lab. "
                         f"{method.upper()} requests come only from the lab's own pages or from clients that are "
                         f"not browsers (curl, httpx, idlab.client). To let a page on another origin call the API, "
                         f"list that origin in {ORIGINS_VARIABLE} on the server.")
        return None

    def serves(self, host: str) -> bool:
        return bool(host) and (host in LOCAL_HOSTS or host in self.named_hosts())

    def named_hosts(self) -> set[str]:
        return {normalise(name) for name in self.settings.allowed_hosts}

    def own_origin(self, origin: str, host: str, port: int | None) -> bool:
        """The Origin is the lab's: the request's own host and port, or a name the operator listed."""
        try:
            parts = urlsplit(origin)
            origin_host, origin_port = normalise(parts.hostname or ""), parts.port
        except ValueError:   # a malformed port
            return False
        if parts.scheme not in DEFAULT_PORTS or not origin_host:
            return False     # "null" (a sandboxed frame, a file://), or not a web origin
        if origin_host in self.named_hosts():
            return True
        default = DEFAULT_PORTS[parts.scheme]
        return origin_host == host and (origin_port or default) == (port or default)


def split_host(value: str) -> tuple[str, int | None]:
    """A Host header's (normalised name, port): 'LocalHost:8000' → ('localhost', 8000), '[::1]' → ('::1', None)."""
    value = value.strip()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:
        name, port = value, ""
    if port and not port.isdigit():
        return "", None   # not a host a browser would send: refused
    return normalise(name), int(port) if port else None


def normalise(name: str) -> str:
    """Lower case, without brackets or a trailing dot; an IP address in its canonical form (::0001 → ::1)."""
    name = name.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name
