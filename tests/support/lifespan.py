"""Running an app's lifespan inside one task, so fixtures may set it up and tear it down from others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar


@asynccontextmanager
async def app_running(app: Litestar, *, timeout: float = 30.0) -> AsyncIterator[Litestar]:
    # Litestar's lifespan holds anyio cancel scopes, which must be exited by the task that entered
    # them; pytest-asyncio runs a fixture's setup and teardown in different tasks.
    started = asyncio.Event()
    stop = asyncio.Event()

    async def run() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run(), name="app-lifespan")
    waiter = asyncio.create_task(started.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        if task in done:
            task.result()  # re-raise the start-up failure
        task.cancel()
        raise TimeoutError(f"The app did not start within {timeout} s.")
    try:
        yield app
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout)
