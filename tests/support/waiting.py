"""Bounded waits for conditions that have no event to await (server-side cleanup after a close)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true; TimeoutError naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"Waited {timeout} s for {what}; it never became true.")
        await asyncio.sleep(0.01)
