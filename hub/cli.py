"""The ``status-hub`` command: serve, migrate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from hub.settings import Settings, SettingsError

log = logging.getLogger("hub")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="status-hub", description="Realtime provisioning status hub.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Run the hub (migrates the database first).")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="Worker processes (needs HUB_REDIS_URL when > 1).")
    commands.add_parser("migrate", help="Bring the database to the newest schema.")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"status-hub: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic narrates every plugin it loads at INFO; its upgrades are still logged by hub.migrate.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
        return 0
    if args.workers < 1:
        parser.error("--workers must be at least 1.")
    if args.workers > 1 and settings.redis_url is None:
        print(
            "status-hub: --workers > 1 needs HUB_REDIS_URL: the in-memory broker lives in one process, "
            "so workers could not see each other's updates.",
            file=sys.stderr,
        )
        return 2
    from hub.server import serve as run_server

    asyncio.run(_migrate(settings))
    run_server(settings, host=args.host, port=args.port, workers=args.workers)
    return 0


async def _migrate(settings: Settings) -> None:
    from hub.migrate import upgrade_database
    from persistence import make_engine

    engine = make_engine(settings.database_url, pool_size=1)
    try:
        await upgrade_database(engine)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
