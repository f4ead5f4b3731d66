"""The ``status-hub`` command: serve, migrate, demo, simulate."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from hub.cli import simulate
from hub.settings import Settings, SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="status-hub", description="Realtime provisioning status hub.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Run the hub (migrates the database first).")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="Worker processes (needs HUB_REDIS_URL when > 1).")
    commands.add_parser("migrate", help="Bring the database to the newest schema.")
    demo = commands.add_parser("demo", help="Run a throwaway hub with agents provisioning live (ignores HUB_*).")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000, help="Port to listen on; 0 picks a free one.")
    simulate.add_arguments(commands.add_parser("simulate", help="Send a workflow's signed callbacks to a hub."))
    args = parser.parse_args(argv)
    # Neither reads the hub's settings: simulate is a client, demo makes its own throwaway ones.
    if args.command == "simulate":
        return simulate.run(args)
    if args.command == "demo":
        from hub.cli.demo import run as run_demo

        return run_demo(host=args.host, port=args.port)

    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"status-hub: configuration error: {exc}", file=sys.stderr)
        return 2
    # Imported here: simulate (a client) and --help should not pay for loading the server.
    from hub import process_setup

    process_setup.configure_logging(settings.log_level)
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
        return 0
    if args.workers < 1:
        parser.error("--workers must be at least 1.")
    if args.workers > 1 and settings.generated_secrets:
        print(
            f"status-hub: --workers > 1 needs {', '.join(settings.generated_secrets)} set: each worker would "
            "otherwise generate its own secrets, and requests would fail depending on the worker.",
            file=sys.stderr,
        )
        return 2
    if args.workers > 1 and settings.redis_url is None:
        print(
            "status-hub: --workers > 1 needs HUB_REDIS_URL: the in-memory broker lives in one process, "
            "so workers could not see each other's updates.",
            file=sys.stderr,
        )
        return 2
    asyncio.run(_migrate(settings))
    if args.workers == 1 and settings.generated_secrets:
        from hub.cli.banner import welcome

        print(welcome(settings, args.host, args.port), flush=True)
    process_setup.serve(settings, host=args.host, port=args.port, workers=args.workers)
    return 0


async def _migrate(settings: Settings) -> None:
    from hub.runtime.schema import upgrade_database
    from persistence import make_engine

    engine = make_engine(settings.database_url, pool_size=1)
    try:
        await upgrade_database(engine)
    finally:
        await engine.dispose()
