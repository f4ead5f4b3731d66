"""Every way start-up can go wrong is answered in a line or two that says what to do, with exit
status 2 for bad configuration and 3 for a dependency that is not there; no traceback."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.support.config import ADMIN_TOKEN, JWT_SECRET, WEBHOOK_SECRET
from tests.support.process import ROOT, run_cli
from tests.support.server import free_port

SECRETS = {"HUB_WEBHOOK_SECRET": WEBHOOK_SECRET, "HUB_JWT_SECRET": JWT_SECRET, "HUB_ADMIN_TOKEN": ADMIN_TOKEN}
TIMEOUT = 60


async def run(*args: str, **env: str) -> tuple[int, str]:
    """``status-hub *args`` with no HUB_ variable but ``env``: its return code, and what it printed."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")} | env
    code, out, err = await run_cli(*args, env=environment)
    return code, out + err


def postgres(database: str = "test", *, user: str = "postgres", port: int = 5432, host: str = "127.0.0.1") -> str:
    return f"postgresql+asyncpg://{user}@{host}:{port}/{database}"


@pytest.mark.parametrize("command", ["serve", "migrate"])
@pytest.mark.parametrize(
    ("url", "says"),
    [
        (postgres(port=free_port()), "cannot reach Postgres at 127.0.0.1:{port}: connection refused"),
        (postgres("no_such_database_here"), "createdb -h 127.0.0.1 -p 5432 -U postgres no_such_database_here"),
        (postgres(user="no_such_role_here"), "refused user 'no_such_role_here'"),
        (postgres(host="no-such-host.invalid"), "cannot resolve the database host 'no-such-host.invalid'"),
    ],
    ids=["wrong-port", "missing-database", "refused-user", "unknown-host"],
)
async def test_an_unusable_database_is_one_line_and_exit_3(command: str, url: str, says: str) -> None:
    args = [command, "--port", str(free_port())] if command == "serve" else [command]
    code, out = await run(*args, HUB_DATABASE_URL=url, **SECRETS)
    assert code == 3, out
    port = url.split(":")[-1].split("/")[0]
    assert says.format(port=port) in out
    assert "Traceback" not in out
    assert len(out.strip().splitlines()) <= 2, out


async def test_every_missing_secret_is_named_at_once() -> None:
    code, out = await run("serve", HUB_DATABASE_URL=postgres(), HUB_JWT_SECRET=JWT_SECRET)
    assert code == 2
    assert "HUB_WEBHOOK_SECRET, HUB_ADMIN_TOKEN are required" in out
    assert len(out.strip().splitlines()) == 1


async def test_workers_without_redis_is_said_before_the_secrets() -> None:
    code, out = await run("serve", "--workers", "2")
    assert code == 2
    assert "--workers > 1 needs HUB_REDIS_URL" in out and "HUB_WEBHOOK_SECRET" not in out


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("HUB_DB_POOL_SIZE", "abc", "HUB_DB_POOL_SIZE must be an integer; got 'abc'."),
        ("HUB_SEND_TIMEOUT", "soon", "HUB_SEND_TIMEOUT must be a number; got 'soon'."),
        ("HUB_NO_SUCH_THING", "1", "Unknown variable HUB_NO_SUCH_THING"),
    ],
)
async def test_a_bad_value_is_named_with_exit_2(variable: str, value: str, says: str) -> None:
    code, out = await run("serve", **{variable: value})
    assert code == 2
    assert says in out
    assert len(out.strip().splitlines()) == 1


async def test_serve_with_secrets_set_prints_where_it_is_and_never_a_secret(tmp_path: Path) -> None:
    """Runs the server briefly: the banner is printed before uvicorn starts."""
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    environment |= {"HUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/hub.db", **SECRETS}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "serve", "--port", str(port),
        env=environment, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            while not any("status-hub token --owner" in line for line in lines):
                line = await process.stdout.readline()
                assert line, "".join(lines)
                lines.append(line.decode())
    finally:
        process.terminate()
        rest, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
    printed = "".join(lines) + rest.decode()
    assert f"http://127.0.0.1:{port}/schema" in printed
    for secret in SECRETS.values():
        assert secret not in printed
