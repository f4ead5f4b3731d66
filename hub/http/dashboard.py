"""The dashboard page at ``/``, the API page at ``/schema`` and their static files: plain HTML, CSS and
ES modules, no build step."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from litestar import Router, get
from litestar.datastructures import CacheControlHeader
from litestar.response import File
from litestar.static_files import create_static_files_router

STATIC_DIR: Final = Path(__file__).parent / "static"

# The page holds a bearer token in memory and sessionStorage, so nothing else may run on it:
# scripts, styles and connections come from this origin only ('self' covers ws:/wss: to the same
# host in CSP3 browsers), and no referrer leaves it.
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # Revalidate on every load so a hub upgrade never runs an old script against a new protocol.
    "Cache-Control": "no-cache",
}


@get("/", include_in_schema=False, sync_to_thread=False)
def index() -> File:
    return _page("index.html")


@get("/schema", include_in_schema=False, sync_to_thread=False)
def schema_page() -> File:
    """The OpenAPI document as a page, rendered by a script of this origin (no third-party code)."""
    return _page("schema.html")


def _page(name: str) -> File:
    return File(
        STATIC_DIR / name,
        content_disposition_type="inline",
        # Litestar appends "; charset=utf-8" to text types itself.
        media_type="text/html",
        headers=_PAGE_HEADERS,
    )


def static_files() -> Router:
    """A router for ``/static``; built per app because a router belongs to one app."""
    return create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        cache_control=CacheControlHeader(no_cache=True),
        include_in_schema=False,
    )
