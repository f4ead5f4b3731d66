"""Error responses that are not a handler's own: an unreachable database or a busy replica is a 503
with Retry-After, never a 500, and the message says which."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.exceptions.responses import create_exception_response
from sqlalchemy import exc as sa_exc

from hub.runtime import Hub
from hub.runtime.pool import is_unavailable

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# A busy replica frees a connection within a second or so: come back soon (or to another replica).
BUSY_RETRY_AFTER_SECONDS = 1


def replica_busy(request: Request[Any, Any, Any]) -> Response[object]:
    """No connection of the pool came free in time: the database is fine, this replica is saturated."""
    hub: Hub = request.app.state.hub
    hub.metrics.busy_answers_total.inc()
    log.info(
        "Answered 503 busy to %s %s: no database connection came free in time.",
        request.method,
        request.url.path,
        extra=_log_fields(request),
    )
    return create_exception_response(
        request,
        HTTPException(
            status_code=503,
            detail=f"This replica is busy; retry in {BUSY_RETRY_AFTER_SECONDS} s.",
            headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        ),
    )


def database_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[object]:
    log.warning(
        "Database unavailable while serving %s %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        extra=_log_fields(request),
    )
    return create_exception_response(
        request,
        HTTPException(
            status_code=503,
            detail="The database is unavailable; retry later.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ),
    )


def unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[object]:
    """Anything a handler did not mean to raise. Request logging is off (tokens travel in headers),
    so this is where a bug becomes visible to an operator: logged with its traceback, then 500."""
    if isinstance(exc, HTTPException):
        return create_exception_response(request, exc)  # the handler's own answer, as usual
    if isinstance(exc, sa_exc.TimeoutError):  # the pool's checkout timed out, not a connect
        return replica_busy(request)
    if is_unavailable(exc):
        return database_unavailable(request, exc)
    log.exception("Unhandled error while serving %s %s.", request.method, request.url.path, extra=_log_fields(request))
    return create_exception_response(request, HTTPException(status_code=500, detail="Internal server error."))


def _log_fields(request: Request[Any, Any, Any]) -> dict[str, str]:
    """What the handler knew about its request for the log (the webhook's job and delivery ids)."""
    fields: dict[str, str] = request.state.get("log_fields") or {}
    return fields


# One handler: it tells HTTP errors, an unreachable database (503) and bugs (500) apart itself.
EXCEPTION_HANDLERS = {Exception: unexpected_error}
