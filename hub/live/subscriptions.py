"""One socket's broker subscriptions, entered and left by hand, cleaned up on every exit."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager

log = logging.getLogger(__name__)

Subscription = AbstractAsyncContextManager[None]


class Subscriptions:
    """The broker subscription of each agent a socket watches. Entered and exited by hand: an
    AsyncExitStack per subscription cost more memory than everything else a socket holds.

    An agent is registered before its subscription is entered (as None), because the broker may
    deliver while the subscribe is being confirmed; only an entered subscription is ever exited."""

    __slots__ = ("_entered",)

    def __init__(self) -> None:
        self._entered: dict[str, Subscription | None] = {}

    def __contains__(self, agent_id: str) -> bool:
        return agent_id in self._entered

    def __len__(self) -> int:
        return len(self._entered)

    @property
    def agent_ids(self) -> list[str]:
        return list(self._entered)

    async def enter(self, agent_id: str, subscription: Subscription) -> bool:
        """Enter ``subscription`` for ``agent_id``; False when the agent was left while entering (the
        subscription is then exited again). A failed or cancelled enter leaves nothing registered."""
        self._entered[agent_id] = None
        try:
            await subscription.__aenter__()
        except BaseException:
            self._entered.pop(agent_id, None)
            raise
        if agent_id in self._entered:
            self._entered[agent_id] = subscription
            return True
        await subscription.__aexit__(None, None, None)
        return False

    async def leave(self, agent_id: str) -> None:
        subscription = self._entered.pop(agent_id, None)
        if subscription is not None:
            await subscription.__aexit__(None, None, None)

    async def leave_all(self) -> None:
        """Leave every subscription. Shielded: a second cancellation (a shutdown timeout) during this
        cleanup must not leave broker subscriptions that still hold the socket."""
        entered = [s for s in self._entered.values() if s is not None]
        self._entered.clear()
        if entered:
            await asyncio.shield(_exit_all(entered))


async def _exit_all(subscriptions: list[Subscription]) -> None:
    for subscription in subscriptions:
        try:
            await subscription.__aexit__(None, None, None)
        except Exception:
            log.exception("Leaving a broker subscription failed.")
