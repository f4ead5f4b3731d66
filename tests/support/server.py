"""A real uvicorn server for an app, on the tests' own event loop and a free loopback port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from litestar import Litestar

from hub.process_setup import uvicorn_options


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def serve_app(app: Litestar, *, timeout: float = 30.0, port: int | None = None) -> AsyncIterator[str]:
    """Serve ``app`` (lifespan included) until the block ends, on ``port`` or a free one; yields
    ``http://127.0.0.1:<port>``."""
    port = free_port() if port is None else port
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", **uvicorn_options())
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name=f"uvicorn-{port}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started.")
        if loop.time() > deadline:
            task.cancel()
            raise TimeoutError(f"uvicorn did not start within {timeout} s.")
        await asyncio.sleep(0.01)  # polling a flag uvicorn offers no event for; bounded above
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout)
