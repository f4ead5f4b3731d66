"""Graceful drain on SIGTERM: not ready at once, keep serving while the load balancer notices, then
close the sockets with 1012 spread evenly over a window (so their clients do not all reconnect in
the same second), then let the server stop.

A second SIGTERM ends the drain at once, as does SIGINT (the server's own handler, left as is).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Final

from hub.domain.frames import CLOSE_SERVICE_RESTART
from hub.runtime import Hub

log = logging.getLogger(__name__)

RESTART_REASON: Final = "Service restart: reconnect."
# Seconds between two batches of closes.
TICK: Final = 0.1
# Seconds the last closes get to complete once all are started.
CLOSE_WAIT: Final = 5.0

SignalHandler = Callable[[int, FrameType | None], Any]


async def drain(hub: Hub) -> None:
    """Turn not ready, serve for ``HUB_DRAIN_DELAY`` seconds, then close every socket with 1012 in
    batches spread evenly over ``HUB_DRAIN_SECONDS``; sockets opened meanwhile are closed as they come."""
    settings = hub.settings
    hub.draining = True
    log.info(
        "Draining: not ready now; serving %d sockets for %g s, then closing them over %g s.",
        len(hub.sockets),
        settings.drain_delay,
        settings.drain_seconds,
    )
    await asyncio.sleep(settings.drain_delay)
    hub.closing = True
    sockets = list(hub.sockets)
    loop = asyncio.get_running_loop()
    started = loop.time()
    window = settings.drain_seconds
    closes: set[asyncio.Task[None]] = set()
    closed = 0
    while closed < len(sockets):
        # Socket i is due at i / n of the window: the first at once, the last just before its end.
        due = min(len(sockets), int((loop.time() - started) / window * len(sockets)) + 1)
        for socket in sockets[closed:due]:
            task = loop.create_task(socket.close_connection(CLOSE_SERVICE_RESTART, RESTART_REASON))
            closes.add(task)
            task.add_done_callback(closes.discard)
        closed = due
        if closed < len(sockets):
            await asyncio.sleep(TICK)
    if closes:
        await asyncio.wait(closes, timeout=CLOSE_WAIT)
    log.info("Drained: %d sockets closed in %.1f s; stopping.", len(sockets), loop.time() - started)


def install_drain(hub: Hub) -> Callable[[], None]:
    """Make the first SIGTERM drain this hub, then stop the server with the SIGTERM handler that was
    there before (the server's own). Returns the undo. Does nothing off the main thread, where
    signals cannot be handled."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    tasks: list[asyncio.Task[None]] = []

    def stop_server() -> None:
        if callable(previous):
            previous(signal.SIGTERM, None)
        else:
            # No server handler to hand over to: stop the process as SIGTERM would have.
            signal.signal(signal.SIGTERM, previous)
            signal.raise_signal(signal.SIGTERM)

    async def drain_then_stop() -> None:
        try:
            await drain(hub)
        except Exception:
            log.exception("The drain failed; stopping now.")
        stop_server()

    def on_loop() -> None:
        if tasks:
            log.info("A second SIGTERM: ending the drain now.")
            tasks[0].cancel()
            stop_server()
            return
        tasks.append(loop.create_task(drain_then_stop(), name="drain"))

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        # A signal handler may run in the middle of the loop's own code: hand over, thread-safely.
        loop.call_soon_threadsafe(on_loop)

    signal.signal(signal.SIGTERM, on_sigterm)

    def undo() -> None:
        for task in tasks:
            task.cancel()
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)

    return undo
