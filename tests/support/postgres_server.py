"""A private, disposable PostgreSQL for tests that break Postgres on purpose.

Never stop the shared Postgres at 127.0.0.1:5432: other tests and engineers use it. This one runs
from the machine's own binaries (initdb, pg_ctl) on a free port, in a temporary directory, with
trust auth on 127.0.0.1 only, and is stopped and removed on exit. Postgres refuses to run as root,
so as root it runs as the ``postgres`` user.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.server import free_port

__all__ = ["PostgresServer"]


def _bin_dir() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not versions:
        raise RuntimeError("Expected PostgreSQL's binaries under /usr/lib/postgresql/<version>/bin; found none.")
    return versions[-1].parent


class PostgresServer:
    """One private server; an async context manager (initdb and start on enter, stop on exit)."""

    def __init__(self, *, timeout: float = 60.0) -> None:
        self._bin = _bin_dir()
        self._timeout = timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.port = 0

    @property
    def data(self) -> Path:
        assert self._tmp is not None, "the server is not set up"
        return Path(self._tmp.name) / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    async def __aenter__(self) -> Self:
        self._tmp = tempfile.TemporaryDirectory(prefix="postgres-test-")
        root = Path(self._tmp.name)
        if os.geteuid() == 0:
            shutil.chown(root, user="postgres", group="postgres")
        self.port = free_port()
        await self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()

    async def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data.parent} -c fsync=off"
        log = self.data.parent / "postgres.log"
        await self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(log), "-w", "start")

    async def begin_smart_shutdown(self) -> None:
        """``pg_ctl stop -m smart`` without waiting: the server refuses new connections ("the database
        system is shutting down", SQLSTATE 57P03) until the last open session ends."""
        await self._run("pg_ctl", "-D", str(self.data), "-m", "smart", "--no-wait", "stop")

    async def _run(self, tool: str, *args: str, check: bool = True) -> None:
        argv = [str(self._bin / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", pwd.getpwnam("postgres").pw_name, "--", *argv]
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(process.communicate(), self._timeout)
        if check and process.returncode != 0:
            raise RuntimeError(f"{tool} exited with {process.returncode}:\n{output.decode(errors='replace')}")
