"""Bring a database to the newest schema; safe when several replicas start at once."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations

log = logging.getLogger(__name__)

# Any constant shared by all replicas; "status-hub" as a 63-bit integer.
_MIGRATION_LOCK_KEY = 0x7374617475736875


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


async def upgrade_database(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """Upgrade to head in one transaction; the revisions before and after. On Postgres a
    transaction-level advisory lock makes concurrent replicas wait for each other: the first
    migrates, the others say they wait, then find the schema current and do nothing."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            locked = (await connection.execute(_TRY_LOCK, {"key": _MIGRATION_LOCK_KEY})).scalar_one()
            if not locked:
                log.info("Another replica is migrating the database; waiting for it.")
                await connection.execute(_LOCK, {"key": _MIGRATION_LOCK_KEY})
        before = await connection.run_sync(_current_revision)
        await connection.run_sync(_upgrade)
        after = await connection.run_sync(_current_revision)
    if before == after:
        log.info("Database schema is current (revision %s).", after)
    else:
        log.info("Migrated the database schema from revision %s to %s.", before or "none (empty database)", after)
    return before, after


_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")
_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
