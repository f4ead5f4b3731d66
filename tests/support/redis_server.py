"""A private, disposable `redis-server` for tests that break Redis on purpose.

Never kill the shared Redis at 127.0.0.1:6379: other tests and engineers use it. Use this instead::

    async with RedisServer() as server:
        client = redis.asyncio.Redis.from_url(server.url)
        ...
        await server.kill()      # like a crash: SIGKILL, every connection drops at once
        await server.restart()   # a fresh, empty server on the same port
        server.pause()           # SIGSTOP: connections stay open but nothing answers (half-open)
        server.resume()          # SIGCONT
        await client.aclose()

It runs without persistence, bound to 127.0.0.1, on a free port, in a temporary directory that is
removed on exit, and is always killed on exit (even if the test failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["RedisServer"]


class RedisServer:
    """One `redis-server` process; an async context manager (start on enter, kill on exit)."""

    host = "127.0.0.1"

    def __init__(self, *, executable: str = "redis-server", startup_timeout: float = 10.0) -> None:
        found = shutil.which(executable)
        if found is None:
            raise RuntimeError(f"Expected a {executable!r} binary on PATH to run a private Redis, found none.")
        self._executable = found
        self._startup_timeout = startup_timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start on a free port (the first time) or the same port (later); return once it answers PING."""
        if self.running:
            raise RuntimeError(f"The private redis-server on port {self.port} is already running.")
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="redis-test-")
        if not self.port:
            self.port = _free_port(self.host)
        directory = Path(self._tmp.name)
        log = directory / "redis.log"
        self._process = await spawn_redis_server(self._executable, self.host, self.port, directory)
        try:
            await asyncio.wait_for(self._wait_ready(), self._startup_timeout)
        except BaseException as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
            await self.kill()
            if isinstance(exc, TimeoutError):
                raise RuntimeError(
                    f"The private redis-server on port {self.port} did not answer PING within "
                    f"{self._startup_timeout} s. Its log ends with:\n{tail}"
                ) from exc
            raise

    async def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would, and wait until it is gone."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.kill()  # SIGKILL also ends a paused (SIGSTOPped) process
        await asyncio.wait_for(process.wait(), 10)

    async def restart(self) -> None:
        """Kill the server if it runs, then start an empty one on the same port."""
        await self.kill()
        await self.start()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): its sockets stay open but nothing is answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo `pause()` (SIGCONT)."""
        self._signal(signal.SIGCONT)

    async def close(self) -> None:
        """Kill the server and remove its directory. Idempotent."""
        await self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _signal(self, signum: signal.Signals) -> None:
        if self._process is None or self._process.returncode is not None:
            raise RuntimeError(f"The private redis-server on port {self.port} is not running.")
        self._process.send_signal(signum)

    async def _wait_ready(self) -> None:
        while True:
            if self._process is not None and self._process.returncode is not None:
                raise RuntimeError(
                    f"The private redis-server exited with code {self._process.returncode} while "
                    f"starting on port {self.port} (is the port taken?)."
                )
            if await answers_ping(self.host, self.port):
                return
            # A readiness probe, not synchronisation: the server gives no other signal.
            await asyncio.sleep(0.02)


async def answers_ping(host: str, port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        return await reader.readline() == b"+PONG\r\n"
    except OSError:
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


async def spawn_redis_server(
    executable: str, host: str, port: int, directory: Path, *options: str
) -> asyncio.subprocess.Process:
    """A redis-server in the foreground on ``host:port`` with ``options`` on top: nothing persisted,
    its files and its log (``redis.log``) in ``directory``."""
    argv = [
        "--port", str(port),
        "--bind", host,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--logfile", str(directory / "redis.log"),
        "--daemonize", "no",
        *options,
    ]  # fmt: skip
    return await asyncio.create_subprocess_exec(
        executable,
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
