"""A current poll's 304, answered before Litestar builds a request for it.

Dashboards on the REST fallback poll every few seconds and nearly every poll is current: it is the
hub's most frequent request. Litestar's request, parameter parsing and response objects cost about
as much as everything else in such a poll. This middleware of get_instance answers from the token
and poll caches alone, as get_instance would (304, the same ETag and Cache-Control), when the poll
has a bearer token that verifies, its agent is held by the poll cache for that owner, and
If-None-Match matches. Any other request (no bearer token or one that does not verify, the cookie,
another owner, an agent not held, a changed status) goes on to get_instance, which decides it as
before. The app sets no request hooks, which this answer would skip; a test in
tests/integration/test_poll_cache.py compares its headers with the handler's.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Receive, Scope, Send

from hub.domain.tokens import Unauthenticated, bearer_token
from hub.http.agents import etag, etag_matches
from hub.runtime import Hub

_CACHE_CONTROL = (b"cache-control", b"no-cache")


def answer_current_polls(app: ASGIApp) -> ASGIApp:
    """Litestar middleware (a factory) for get_instance: see the module."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        tag = _current_tag(scope)
        if tag is None:
            await app(scope, receive, send)
            return
        # Litestar's own 304 for Response(b"", status_code=304, headers={"ETag": ..., "Cache-Control": ...}).
        await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", tag), _CACHE_CONTROL]})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return middleware


def _current_tag(scope: Scope) -> bytes | None:
    """The ETag get_instance would answer 304 with, or None to let it answer."""
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name, value)  # a header sent twice: its first value, as request.headers.get
    authorization, if_none_match = headers.get(b"authorization"), headers.get(b"if-none-match")
    if authorization is None or if_none_match is None:
        return None
    token = bearer_token(authorization.decode("latin-1"))
    if token is None:
        return None
    hub: Hub = scope["litestar_app"].state.hub
    try:
        viewer = hub.tokens.verify(token)
    except Unauthenticated:
        return None
    # The cache is keyed by canonical agent ids: an id spelled otherwise is a miss, left to get_instance.
    known = hub.versions.current(scope["path_params"]["agent_id"])
    if known is None or known[0] != viewer.owner_id:
        return None
    tag = etag(known[1], known[2])
    return tag.encode("latin-1") if etag_matches(if_none_match.decode("latin-1"), tag) else None
