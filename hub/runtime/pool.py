"""The database pool as the hub meets it: warmed before serving, and what "unreachable now" looks like."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Final

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.domain.frames import BUSY_MESSAGE, UNAVAILABLE_MESSAGE

log = logging.getLogger(__name__)

# Errors that mean "the database cannot be reached now" (asyncpg connect failures surface as OSError,
# a connection lost mid-query as InterfaceError, an exhausted pool as TimeoutError).
_CONNECTION_ERRORS: Final = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)
# How Postgres itself says "not now": the connection exception class (08), too many connections
# (53300), and operator intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot
# connect now, as while it starts up or shuts down). asyncpg's errors for these reach SQLAlchemy as a
# plain DBAPIError, which only their SQLSTATE tells apart from a bug.
_NOT_NOW_CLASSES: Final = ("08", "57P")
_NOT_NOW_STATES: Final = frozenset({"53300"})


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database is unavailable for now: a request answers 503 with
    Retry-After and a socket gets the 4503 error frame (and stays open), never a 500 or 1011."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and (sqlstate.startswith(_NOT_NOW_CLASSES) or sqlstate in _NOT_NOW_STATES)


def unavailable_message(exc: BaseException) -> str:
    """The 4503 frame's message for an ``is_unavailable`` error: an exhausted pool is this replica
    being busy, which the client must not be told is a database outage."""
    return BUSY_MESSAGE if isinstance(exc, sa_exc.TimeoutError) else UNAVAILABLE_MESSAGE


async def warm_pool(engine: AsyncEngine, size: int) -> None:
    """Open the pool's connections before serving: a connect costs tens of milliseconds, and paying
    them under the first burst of callbacks set the p99 of a freshly started replica. A database
    that is down now is not fatal: requests answer 503 until it is back."""
    if engine.dialect.name != "postgresql":
        return
    stack = AsyncExitStack()
    try:
        connections = await asyncio.gather(
            *(stack.enter_async_context(engine.connect()) for _ in range(size)), return_exceptions=True
        )
        failed = [c for c in connections if isinstance(c, BaseException)]
        if failed:
            log.warning("Could not open %d of %d database connections at start-up: %s", len(failed), size, failed[0])
    finally:
        await stack.aclose()
