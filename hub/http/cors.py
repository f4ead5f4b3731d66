"""CORS for a dashboard on another origin: the REST reads and the static client module, for the
origins in ``HUB_ALLOWED_ORIGINS`` only (never ``*``). Admin and webhook endpoints get none: they
are service-to-service calls, never a browser's."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Message, Receive, Scope, Send

# Route templates (as the router names them) a page on an allowed origin may read.
CORS_ROUTES: Final = frozenset({"/api/agents", "/api/agents/{agent_id}/instance", "/api/agents/{agent_id}/events"})
CORS_PREFIXES: Final = ("/static/",)
ALLOWED_METHODS: Final = "GET, HEAD"
ALLOWED_HEADERS: Final = "Authorization, If-None-Match"
# ETag for conditional polls; Date so that statushub.js can tell how far the browser's clock is off.
EXPOSED_HEADERS: Final = "ETag, Date"
# Seconds a browser may keep a preflight's answer.
PREFLIGHT_MAX_AGE: Final = "600"


def cors_for(origins: Iterable[str]) -> Callable[[ASGIApp], ASGIApp]:
    """Route middleware for ``origins`` (scheme and host, as in HUB_ALLOWED_ORIGINS)."""
    allowed = frozenset(origin.encode() for origin in origins)

    def middleware_factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP or not allowed:
                await app(scope, receive, send)
                return
            origin = _origin(scope)
            method = scope["method"]
            if origin not in allowed or method not in ("GET", "HEAD", "OPTIONS") or not _readable(scope):
                await app(scope, receive, send)
                return
            assert origin is not None  # in allowed
            if method == "OPTIONS":
                await _preflight(scope, origin, send)
                return
            cors_headers = [
                (b"access-control-allow-origin", origin),
                (b"access-control-expose-headers", EXPOSED_HEADERS.encode()),
                (b"vary", b"Origin"),
            ]

            async def send_with_cors(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), *cors_headers]
                await send(message)

            await app(scope, receive, send_with_cors)

        return middleware

    return middleware_factory


def _origin(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"origin":
            return bytes(value)
    return None


def _readable(scope: Scope) -> bool:
    template = scope.get("path_template") or ""
    return template in CORS_ROUTES or scope["path"].startswith(CORS_PREFIXES)


async def _preflight(scope: Scope, origin: bytes, send: Send) -> None:
    requested = next((bytes(v) for k, v in scope["headers"] if k == b"access-control-request-method"), b"")
    headers = [(b"vary", b"Origin"), (b"content-length", b"0")]
    if requested.upper() in (b"GET", b"HEAD"):
        headers += [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
            (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
            (b"access-control-max-age", PREFLIGHT_MAX_AGE.encode()),
        ]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": 204, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"", "more_body": False}
    await send(end)
