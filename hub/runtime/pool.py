"""The database pool as the hub meets it: warmed before serving, and what "unreachable now" looks like."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Final

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

# What "the database is unreachable now" looks like (asyncpg connect failures surface as OSError):
# such a request answers 503 with Retry-After, such a socket is told to come back, never a 500.
CONNECTION_ERRORS: Final = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, CONNECTION_ERRORS):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


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
