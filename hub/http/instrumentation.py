"""HTTP request metrics by route template (never by path: an agent id is an unbounded label)."""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from hub.runtime import Hub


def http_metrics(app: ASGIApp) -> ASGIApp:
    """Route middleware: count each HTTP answer by route template and status, and time it. Litestar
    puts an exception handler between a route's middleware and its handler, so error answers are
    seen here with their real status."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_and_note)
        finally:
            state: Any = scope["litestar_app"].state
            hub: Hub | None = getattr(state, "hub", None)
            if hub is not None:
                route = scope.get("path_template") or "unmatched"
                hub.metrics.observe_http(route, status, time.perf_counter() - started)

    return middleware
