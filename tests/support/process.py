"""`status-hub` as real separate processes: `serve` (a replica), for multi-process tests, and the
other commands (simulate, demo) as a user runs them."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from hub.settings import Settings
from tests.support.config import WEBHOOK_SECRET
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT = 60.0


def kit_environment(secret: str | None = WEBHOOK_SECRET) -> dict[str, str]:
    """The environment of a workflow running the kit: no HUB_* but the webhook secret, when given."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    if secret is not None:
        env["HUB_WEBHOOK_SECRET"] = secret
    return env


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``status-hub *args`` to its end (bounded): its return code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", *args,
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@dataclass
class Demo:
    """A running `status-hub demo`: everything it printed so far, and its dashboard's URL and token."""

    process: asyncio.subprocess.Process
    printed: list[str]
    base: str = ""
    token: str = ""
    # What it printed after it was asked to stop (Ctrl-C).
    rest: str = ""

    async def until_printed(self, pattern: str) -> re.Match[str]:
        """Read its output until ``pattern`` is found in it (bounded by CLI_TIMEOUT); the match."""
        assert self.process.stdout is not None
        async with asyncio.timeout(CLI_TIMEOUT):
            while not (found := re.search(pattern, "".join(self.printed))):
                line = await self.process.stdout.readline()
                assert line, f"The demo ended before printing {pattern!r}:\n{''.join(self.printed)}"
                self.printed.append(line.decode())
        return found


@asynccontextmanager
async def demo_process(cwd: Path) -> AsyncIterator[Demo]:
    """`status-hub demo` on a free port in ``cwd``, once it printed its dashboard link; stopped with
    SIGINT (what Ctrl-C does) when the block ends, its last words in ``rest``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "demo", "--port", "0",
        env=kit_environment(None), cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    demo = Demo(process, [])
    try:
        found = await demo.until_printed(r"(http://127\.0\.0\.1:\d+)/#token=(\S+)")
        demo.base, demo.token = found[1], found[2]
        yield demo
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 20)
        demo.rest = rest.decode()


def hub_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a replica with ``settings`` is started with (and nothing else of HUB_*)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    env.update(
        {
            "HUB_DATABASE_URL": settings.database_url,
            "HUB_WEBHOOK_SECRET": settings.webhook_secret,
            "HUB_JWT_SECRET": settings.jwt_secret,
            "HUB_ADMIN_TOKEN": settings.admin_token,
            "HUB_CHANNEL_PREFIX": settings.channel_prefix,
            "HUB_LOG_LEVEL": "WARNING",
        }
    )
    if settings.redis_url is not None:
        env["HUB_REDIS_URL"] = settings.redis_url
    if settings.redis_cluster_nodes:
        env["HUB_REDIS_CLUSTER_NODES"] = ",".join(settings.redis_cluster_nodes)
    env.update(extra)
    return env


@dataclass(frozen=True)
class Replica:
    base: str
    process: asyncio.subprocess.Process
    output: Path  # everything the process printed (a file, so a chatty process never blocks on a pipe)

    def printed(self) -> str:
        return self.output.read_text(errors="replace")

    async def stop(self) -> int:
        """SIGTERM, and wait (bounded) for the process to exit; its return code. What it printed stays
        readable until the hub_process block ends."""
        await _stop(self.process)
        assert self.process.returncode is not None
        return self.process.returncode


@asynccontextmanager
async def hub_process(
    env: dict[str, str], *args: str, startup_timeout: float = 60.0, cwd: Path | None = None
) -> AsyncIterator[Replica]:
    """Start ``status-hub serve`` on a free port; yields the replica once /healthz answers."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="status-hub-replica-") as scratch:
        output = Path(scratch) / "output.log"
        with output.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-u", "-m", "hub.cli", "serve", "--port", str(port), *args,
                env=env, cwd=cwd or ROOT, stdout=sink, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        replica = Replica(f"http://127.0.0.1:{port}", process, output)
        try:
            await _until_healthy(replica, startup_timeout)
            yield replica
        finally:
            await _stop(process)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _until_healthy(replica: Replica, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    base, process = replica.base, replica.process
    async with httpx.AsyncClient(base_url=base, timeout=2) as client:
        while loop.time() < deadline:
            if process.returncode is not None:
                raise RuntimeError(
                    f"The hub exited with {process.returncode} before it was ready:\n{replica.printed()}"
                )
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)  # nothing to await on another process; bounded by the deadline
    raise TimeoutError(f"The hub at {base} was not healthy within {timeout} s.")
