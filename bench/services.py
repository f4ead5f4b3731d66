"""The systems under test: a throwaway Postgres database, and server processes pinned to a core."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench import procs

PG_ADMIN_DSN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
SERVER_CORE = 0
GENERATOR_CORE = 1


@dataclass(frozen=True, slots=True)
class Secrets:
    webhook: str = "bench-webhook-secret-0123456789"
    jwt: str = "bench-jwt-secret-0123456789abcdef-0123456789"
    admin: str = "bench-admin-token-0123456789"


SECRETS = Secrets()


class Database:
    """``async with Database("hub") as db``: a fresh database ``bench_<kind>_<random>``, dropped on exit."""

    def __init__(self, kind: str) -> None:
        self.name = f"bench_{kind}_{uuid.uuid4().hex[:10]}"
        base = PG_ADMIN_DSN.rsplit("/", 1)[0]
        self.dsn = f"{base}/{self.name}"
        self.sqlalchemy_url = self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    async def __aenter__(self) -> Database:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await admin.close()
        return self

    async def __aexit__(self, *_: object) -> None:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await admin.close()


def _raise_open_files_limit() -> None:
    # Runs in the child before exec: the sandbox allows 20,000 open files; take all of them.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(slots=True)
class ServerProcess:
    """One server (the hub or a peer), started under ``taskset -c <core>``, stopped on exit."""

    name: str
    argv: Sequence[str]
    env: dict[str, str]
    port: int
    log_path: Path
    cwd: Path | None = None
    core: int = SERVER_CORE
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def pid(self) -> int:
        assert self.process is not None, "The server was not started."
        return self.process.pid

    def pids(self) -> list[int]:
        """The server and its children (uvicorn workers)."""
        return [self.pid, *procs.children(self.pid)]

    def rss(self) -> int:
        return sum(procs.rss_bytes(pid) for pid in self.pids())

    async def start(self, timeout: float = 60.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: ASYNC220 (returns at once; the server runs on)
            ["taskset", "-c", str(self.core), *self.argv],
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_raise_open_files_limit,
        )
        log.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}.")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if loop.time() > deadline:
                    self.stop()
                    raise TimeoutError(f"{self.name} did not listen on {self.port} within {timeout} s.") from None
                await asyncio.sleep(0.1)  # polling a port: the server offers no readiness signal
                continue
            writer.close()
            await writer.wait_closed()
            return

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in procs.children(self.pid):
                os.kill(pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait(timeout)


def hub_server(
    database: Database,
    port: int,
    log_path: Path,
    *,
    workers: int = 1,
    prefix: str = "",
    redis_cluster_nodes: str | None = None,
) -> ServerProcess:
    """``status-hub serve`` on Postgres and Redis (or a Redis Cluster's seed nodes), from the venv
    running the bench."""
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    redis = {"HUB_REDIS_CLUSTER_NODES": redis_cluster_nodes} if redis_cluster_nodes else {"HUB_REDIS_URL": REDIS_URL}
    env.update(
        HUB_DATABASE_URL=database.sqlalchemy_url,
        **redis,
        HUB_WEBHOOK_SECRET=SECRETS.webhook,
        HUB_JWT_SECRET=SECRETS.jwt,
        HUB_ADMIN_TOKEN=SECRETS.admin,
        HUB_CHANNEL_PREFIX=prefix or f"bench-{uuid.uuid4().hex[:8]}:",
        HUB_LOG_LEVEL="WARNING",
    )
    binary = str(Path(sys.executable).parent / "status-hub")
    argv = [binary, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    return ServerProcess(name=f"status-hub x{workers}", argv=argv, env=env, port=port, log_path=log_path)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
