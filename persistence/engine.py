"""Engine and session factories; the caller (the request) owns every transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    pool_timeout: float = 5.0,
    echo: bool = False,
    isolation_level: str | None = None,
) -> AsyncEngine:
    """An async engine for ``postgresql+asyncpg://`` or ``sqlite+aiosqlite://`` URLs. ``max_overflow``
    defaults to ``pool_size``; ``pool_timeout`` is how long a checkout waits for a free connection;
    ``isolation_level`` (Postgres only) is every connection's, as set when it is opened."""
    if url.startswith("sqlite"):
        # One connection, so writes queue in the pool instead of failing: two SQLite transactions
        # that read, then both try to write, get "database is locked" at once (no busy wait).
        engine = create_async_engine(
            url, echo=echo, connect_args={"timeout": 30}, pool_size=1, max_overflow=0, pool_timeout=60
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        # No pre-ping: it costs a round trip per checkout. A connection that died is invalidated
        # when it fails, and that request answers 503 (errors.py); the next checkout reconnects.
        pool_recycle=1800,
        # Fail fast (and answer 503) instead of queueing requests for half a minute.
        pool_timeout=pool_timeout,
        connect_args={"timeout": 5, "command_timeout": 30},
        isolation_level=isolation_level,
    )


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: rows stay readable after commit, when the status is encoded.
    return async_sessionmaker(engine, expire_on_commit=False)


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor: Any = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
