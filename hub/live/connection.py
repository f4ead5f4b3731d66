"""A dashboard socket at the ASGI level: the handshake (accept, Origin, credentials), text sends, and a
close within a bound."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final
from urllib.parse import urlsplit

from litestar import WebSocket
from litestar.types import WebSocketSendEvent

from hub.domain.frames import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from hub.domain.tokens import (
    COOKIE_NAME,
    SUBPROTOCOL,
    TOKEN_SUBPROTOCOL_PREFIX,
    Unauthenticated,
    VerifiedTokens,
    Viewer,
    bearer_token,
)
from hub.settings import Settings, normalize_origin

log = logging.getLogger(__name__)

CLOSE_TIMEOUT: Final = 2.0
_HANDSHAKE_HEADERS: Final = (b"origin", b"host", b"authorization", b"cookie")


async def open_socket(socket: WebSocket[Any, Any, Any], settings: Settings, tokens: VerifiedTokens) -> Viewer | None:
    """Accept (so the client can read our close code), then check Origin and credentials; None when
    the socket was refused (and closed with a code that says why)."""
    offered: list[str] = list(socket.scope.get("subprotocols") or [])
    await socket.accept(subprotocols=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    # Read from the raw ASGI headers: Litestar's parsed headers and cookies would stay cached on
    # the connection for its whole life, ~2 KiB per idle socket for values needed once.
    headers = _raw_headers(socket, _HANDSHAKE_HEADERS)
    origin = headers.get(b"origin")
    # Browsers send Origin on every websocket; CORS middleware does not cover websockets.
    if origin is not None and not _origin_allowed(origin, headers.get(b"host"), settings):
        reason = "This Origin is not allowed; add it to HUB_ALLOWED_ORIGINS (behind a proxy, set HUB_PUBLIC_URL)."
        await close_socket(socket, CLOSE_FORBIDDEN, reason)
        return None
    token = bearer_token(headers.get(b"authorization"))
    if token is None:
        token = next(
            (p[len(TOKEN_SUBPROTOCOL_PREFIX) :] for p in offered if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)), None
        )
    if token is None:
        # Only reached with an allowed Origin (or none, from a non-browser client).
        token = _cookie(headers.get(b"cookie"), COOKIE_NAME)
    if not token:
        await close_socket(socket, CLOSE_UNAUTHENTICATED, "A dashboard token is required.")
        return None
    try:
        return tokens.verify(token)
    except Unauthenticated as exc:
        await close_socket(socket, CLOSE_UNAUTHENTICATED, str(exc))
        return None


async def send_text(socket: WebSocket[Any, Any, Any], text: str) -> None:
    # The raw ASGI event: the same str object goes to every socket, with no per-socket encoding.
    event: WebSocketSendEvent = {"type": "websocket.send", "bytes": None, "text": text}
    await socket.send(event)


async def close_socket(
    socket: WebSocket[Any, Any, Any], code: int, reason: str, *, timeout: float = CLOSE_TIMEOUT
) -> None:
    """Close with ``code``, bounded: a client that stopped reading must not hold the handler forever.
    The close frame queues behind the frames already buffered, so a client that resumes reading
    within the timeout still reads the code."""
    try:
        await asyncio.wait_for(socket.close(code=code, reason=reason[:120]), timeout=timeout)
    except Exception as exc:
        # The client is gone or stalled; the transport is torn down with the handler anyway.
        log.debug("Closing a socket with %d did not complete: %r", code, exc)


def _raw_headers(socket: WebSocket[Any, Any, Any], names: tuple[bytes, ...]) -> dict[bytes, str]:
    found: dict[bytes, str] = {}
    for name, value in socket.scope["headers"]:
        if name in names and name not in found:
            found[name] = value.decode("latin-1")
    return found


def _cookie(header: str | None, name: str) -> str | None:
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _origin_allowed(origin: str, host: str | None, settings: Settings) -> bool:
    if origin in settings.allowed_origins:
        return True
    # The hub's own dashboard page. Behind a proxy that rewrites Host (or terminates TLS), the
    # request no longer says where the page came from: HUB_PUBLIC_URL does, scheme and host.
    if settings.public_url is not None:
        return normalize_origin(origin) == settings.public_url
    return host is not None and urlsplit(origin).netloc == host
