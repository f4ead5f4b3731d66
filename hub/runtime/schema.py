"""Bring a database to the newest schema; safe when several replicas start at once."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
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


async def upgrade_database(engine: AsyncEngine) -> None:
    """Upgrade to head in one transaction. On Postgres a transaction-level advisory lock makes
    concurrent replicas wait for each other; the second finds the schema current and does nothing."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        await connection.run_sync(_upgrade)
    log.info("Database schema is current.")


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
