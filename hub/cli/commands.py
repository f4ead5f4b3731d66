"""The ``status-hub`` command: serve, migrate, demo, simulate, token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from hub.cli import simulate
from hub.settings import MIN_JWT_SECRET_LENGTH, Settings, SettingsError

DEFAULT_TOKEN_TTL = 12 * 3600

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are a JSON line too when HUB_LOG_FORMAT=json."""

    def error(self, message: str) -> NoReturn:
        if not _json_requested():
            super().error(message)
        _report(f"{self.prog}: {message}", json_logs=True)
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="status-hub", description="Realtime provisioning status hub.")
    commands = parser.add_subparsers(dest="command", required=True)
    defaults = argparse.ArgumentDefaultsHelpFormatter
    serve = commands.add_parser("serve", help="Run the hub (migrates the database first).", formatter_class=defaults)
    serve.add_argument("--host", default="127.0.0.1", help="Address to listen on; 0.0.0.0 in a container.")
    serve.add_argument("--port", type=int, default=8000, help="Port to listen on.")
    serve.add_argument("--workers", type=int, default=1, help="Worker processes (needs HUB_REDIS_URL when > 1).")
    commands.add_parser("migrate", help="Bring the database to the newest schema.")
    demo = commands.add_parser(
        "demo", help="Run a throwaway hub with agents provisioning live (ignores HUB_*).", formatter_class=defaults
    )
    demo.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    demo.add_argument("--port", type=int, default=8000, help="Port to listen on; 0 picks a free one.")
    simulate.add_arguments(commands.add_parser("simulate", help="Send a workflow's signed callbacks to a hub."))
    token = commands.add_parser(
        "token",
        help="Print a dashboard token for an owner, signed with HUB_JWT_SECRET.",
        formatter_class=defaults,
    )
    token.add_argument("--owner", required=True, help="The owner id (the token's sub).")
    token.add_argument("--ttl", type=int, default=DEFAULT_TOKEN_TTL, help="Seconds until the token expires.")
    token.add_argument("--link", action="store_true", help="Print the dashboard's URL with the token in its fragment.")
    token.add_argument(
        "--url", default=None, help="The hub's URL for --link (default: HUB_PUBLIC_URL, else http://127.0.0.1:8000)."
    )
    args = parser.parse_args(argv)
    # None of these reads the hub's settings: simulate is a client, demo makes its own throwaway
    # ones, and a token needs only the JWT secret.
    if args.command == "simulate":
        return simulate.run(args)
    if args.command == "token":
        return _print_token(args)
    if args.command == "demo":
        from hub.cli.demo import run as run_demo

        return run_demo(host=args.host, port=args.port)

    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        # HUB_LOG_FORMAT is read from the environment as it is: the settings it belongs to are invalid.
        _report(f"status-hub: configuration error: {exc}", json_logs=_json_requested())
        return 2
    # Imported here: simulate (a client) and --help should not pay for loading the server.
    from hub import process_setup

    # From here on everything the process writes goes through logging: in JSON, one object per line.
    process_setup.configure_logging(settings.log_level, settings.log_format)
    json_logs = settings.log_format == "json"
    if args.command == "migrate":
        return _migrate_or_report(settings)
    if args.workers < 1:
        parser.error("--workers must be at least 1.")
    # Redis first: on the embedded default it is what --workers lacks most (the secrets follow).
    if args.workers > 1 and not settings.uses_redis:
        _report(
            "status-hub: --workers > 1 needs HUB_REDIS_URL (or HUB_REDIS_CLUSTER_NODES): the in-memory broker "
            "lives in one process, so workers could not see each other's updates.",
            json_logs=json_logs,
        )
        return 2
    if args.workers > 1 and settings.generated_secrets:
        _report(
            f"status-hub: --workers > 1 needs {', '.join(settings.generated_secrets)} set: each worker would "
            "otherwise generate its own secrets, and requests would fail depending on the worker.",
            json_logs=json_logs,
        )
        return 2
    if (failed := _migrate_or_report(settings)) != 0:
        return failed
    from hub.cli import banner

    if args.workers == 1 and settings.generated_secrets:
        # A how-to with the secrets made for this run: printed as it is, for a person to copy from.
        text = banner.welcome(settings, args.host, args.port)
        if json_logs:
            banner.log_lines(text)
        else:
            print(text, flush=True)
    else:
        banner.log_lines(banner.serving(settings, args.host, args.port))
    try:
        process_setup.serve(settings, host=args.host, port=args.port, workers=args.workers)
    except Exception:
        log.exception("The hub stopped on an unexpected error.")
        return 1
    return 0


def _json_requested() -> bool:
    return os.environ.get("HUB_LOG_FORMAT", "").strip().lower() == "json"


def _report(message: str, *, json_logs: bool) -> None:
    """A refusal to start: a line on stderr for a person, or a JSON log line for a log pipeline."""
    if not json_logs:
        print(message, file=sys.stderr)
        return
    from hub import process_setup

    if not logging.getLogger().handlers:  # before the settings were read, nothing is configured yet
        process_setup.configure_logging("INFO", "json")
    log.error(message)


def _migrate_or_report(settings: Settings) -> int:
    """Migrate; when the database cannot be used, say why in a line or two (the traceback only at
    DEBUG) and return the exit status: 3 for a dependency that is not there, 1 for anything else."""
    from hub.runtime.startup import explain_database_error

    try:
        asyncio.run(_migrate(settings))
    except Exception as exc:
        explained = explain_database_error(exc, settings.database_url)
        if explained is None:
            log.exception("Migrating the database failed (%s: %s); nothing was started.", type(exc).__name__, exc)
            return 1
        log.error("status-hub: %s", explained, exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)
        return 3
    return 0


def _print_token(args: argparse.Namespace) -> int:
    secret = os.environ.get("HUB_JWT_SECRET", "")
    problem = None
    if not secret:
        problem = "HUB_JWT_SECRET is not set: a token must be signed with the secret the hub verifies it with."
    elif len(secret) < MIN_JWT_SECRET_LENGTH:
        problem = f"HUB_JWT_SECRET must be at least {MIN_JWT_SECRET_LENGTH} characters long."
    elif not args.owner.strip():
        problem = "--owner must not be blank."
    elif args.ttl < 1:
        problem = f"--ttl must be a positive number of seconds; got {args.ttl}."
    if problem is not None:
        print(f"status-hub: {problem}", file=sys.stderr)
        return 2
    from hub.domain.tokens import issue_dashboard_token

    token = issue_dashboard_token(secret, args.owner, ttl_seconds=args.ttl)
    if args.link:
        base = (args.url or os.environ.get("HUB_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/")
        print(f"{base}/#token={token}")
    else:
        print(token)
    return 0


async def _migrate(settings: Settings) -> None:
    from hub.runtime.schema import upgrade_database
    from persistence import make_engine

    engine = make_engine(settings.database_url, pool_size=1)
    try:
        await upgrade_database(engine)
    finally:
        await engine.dispose()
