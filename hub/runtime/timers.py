"""What the hub's timers share: a loop that outlives every failure but cancellation, and the
Postgres advisory lock that lets one replica at a time do a timer's work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.runtime.pool import is_unavailable

log = logging.getLogger(__name__)

_TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")


async def repeat(interval: float, once: Callable[[], Awaitable[object]], doing: str) -> None:
    """Await ``once()`` every ``interval`` seconds; never dies but by cancellation. ``doing`` names the
    work in the log ("a reconcile"): a database outage is a warning, anything else a traceback."""
    while True:
        await asyncio.sleep(interval)
        try:
            await once()
        except Exception as exc:
            if is_unavailable(exc):
                log.warning("Skipped %s: the database is unavailable (%s); next in %g s.", doing, exc, interval)
            else:
                log.exception("%s failed; next in %g s.", doing[:1].upper() + doing[1:], interval)


@asynccontextmanager
async def one_replica(connection: AsyncConnection, key: int) -> AsyncIterator[bool]:
    """Whether this replica holds the lock ``key`` for the block: a session lock on Postgres (it spans
    the block's own transactions), released after it. Always True on SQLite, which has no such lock:
    the embedded default is one process, and where several share a SQLite file each does the work,
    its writes serialised by SQLite's own file lock. The block's last transaction is rolled back
    first, should it have failed midway."""
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        locked = bool(await connection.scalar(_TRY_LOCK, {"key": key}))
        await connection.commit()
        if not locked:
            yield False
            return
    try:
        yield True
    finally:
        await connection.rollback()
        if postgres:
            await connection.execute(_UNLOCK, {"key": key})
            await connection.commit()
