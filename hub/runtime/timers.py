"""What the hub's timers share: a loop that outlives every failure but cancellation, and the lock
that lets one replica at a time do a timer's work (a Postgres advisory lock; beside a SQLite
database, a file lock)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

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
    """Whether this replica holds the lock ``key`` for the block, released after it. The block's last
    transaction is rolled back first, should it have failed midway."""
    async with _replica_lock(connection, key) as locked:
        if not locked:
            yield False
            return
        try:
            yield True
        finally:
            await connection.rollback()


@asynccontextmanager
async def _replica_lock(connection: AsyncConnection, key: int) -> AsyncIterator[bool]:
    """On Postgres a session advisory lock (it spans the block's own transactions). SQLite has no such
    lock, so processes sharing a database file (``serve --workers N`` on SQLite with Redis, or several
    replicas on one host) take an exclusive file lock beside it instead; an in-memory database
    belongs to one process."""
    if connection.dialect.name != "postgresql":
        with _file_lock(connection.engine.url.database, key) as locked:
            yield locked
        return
    locked = bool(await connection.scalar(_TRY_LOCK, {"key": key}))
    await connection.commit()
    try:
        yield locked
    finally:
        if locked:
            await connection.execute(_UNLOCK, {"key": key})
            await connection.commit()


@contextmanager
def _file_lock(database: str | None, key: int) -> Iterator[bool]:
    """A non-blocking ``flock`` on ``<database>.<key>.lock``: True while held. The kernel releases it
    when the holder dies, so a crashed worker never leaves it taken. The file stays (removing a lock
    file lets a waiter lock the old inode while a newcomer locks a new one)."""
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        yield True
        return
    path = Path(database).with_name(f"{Path(database).name}.{key:x}.lock")
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # closing the descriptor below releases the lock
    finally:
        os.close(descriptor)
