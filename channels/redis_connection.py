"""One dedicated Redis connection in subscribed mode: open, send, read replies, notice silence.

Why not `redis.asyncio.client.PubSub`: its reads go through the client's retry policy, which
reconnects and resubscribes silently on a short blip. Messages published during that gap are lost
and nobody is told, so no resync happens; and it gives up after a few seconds (its retry budget
with redis-py 8's defaults), while an outage can last minutes. This
connection never reconnects by itself: every failure reaches the caller, whose loop decides.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, cast

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

# What counts as "the connection is gone".
CONNECTION_LOST = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class Timing:
    """How a backend keeps its pub/sub connections, in seconds: `idle_timeout` without any data sends a
    PING, and no answer within `ping_timeout` counts as a lost (half-open) connection; a connection
    attempt gives up after `connect_timeout`; reconnects wait `backoff_initial`, doubling, jittered,
    at most `backoff_max` (never below `backoff_initial`)."""

    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    idle_timeout: float = 15.0
    ping_timeout: float = 5.0
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("backoff_initial", "backoff_max", "idle_timeout", "ping_timeout", "connect_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be greater than zero, got {value!r}.")
        object.__setattr__(self, "backoff_max", max(self.backoff_max, self.backoff_initial))

    def backoff(self, failures: int) -> float:
        return jittered_backoff(failures, self.backoff_initial, self.backoff_max)


class Reply(NamedTuple):
    """A pub/sub reply: `kind` is b"message", b"subscribe", b"unsubscribe", or another verb."""

    kind: bytes
    channel: str
    data: bytes


class _RawConnection(Protocol):
    """The part of `redis.asyncio.connection.Connection` this module relies on."""

    retry: Retry

    @property
    def is_connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def send_command(self, *args: Any, **kwargs: Any) -> None: ...

    async def read_response(
        self,
        disable_decoding: bool = ...,
        timeout: float | None = ...,
        *,
        disconnect_on_error: bool = ...,
        push_request: bool | None = ...,
    ) -> Any: ...

    async def disconnect(self, nowait: bool = ...) -> None: ...


class PubSubConnection:
    """A connection made from the client's settings (host, auth, TLS, protocol) but not pooled.

    `read()` sends a PING after `idle_timeout` seconds without data and raises if nothing at all
    arrives within `ping_timeout` more: a half-open connection (peer gone, no FIN/RST) would
    otherwise look like a quiet channel forever.
    """

    def __init__(self, raw: _RawConnection, *, idle_timeout: float, ping_timeout: float) -> None:
        self._raw = raw
        self._idle_timeout = idle_timeout
        self._ping_timeout = ping_timeout
        self._ping_sent = False

    @classmethod
    async def open(cls, client: redis.asyncio.Redis, timing: Timing) -> PubSubConnection:
        raw = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        return await cls.connect(raw, timing)

    @classmethod
    async def connect(cls, connection: Any, timing: Timing) -> PubSubConnection:
        """Take over `connection`, a fresh, unconnected redis-py asyncio `Connection`, and connect it."""
        raw = cast(_RawConnection, connection)
        # The caller's loop is the retry policy; redis-py's own would only delay noticing failure.
        raw.retry = Retry(NoBackoff(), 0)
        try:
            await asyncio.wait_for(raw.connect(), timing.connect_timeout)
        except BaseException:
            await raw.disconnect(nowait=True)
            raise
        return cls(raw, idle_timeout=timing.idle_timeout, ping_timeout=timing.ping_timeout)

    async def send(self, *args: str) -> None:
        """Send a command; its answer comes through `read()`."""
        # redis-py's send reopens a closed connection on its own. A connection we have given up
        # on must stay closed, so check first; no await separates this check from redis-py's.
        if not self._raw.is_connected:
            raise redis.exceptions.ConnectionError("The Redis pub/sub connection is closed.")
        await self._raw.send_command(*args, check_health=False)

    async def read(self) -> Reply:
        """The next reply other than PONG; raises one of CONNECTION_LOST when the connection is, and a
        `redis.exceptions.ResponseError` (the connection stays usable) when the server answered a
        command with an error (a cluster node's MOVED, for one)."""
        while True:
            timeout = self._ping_timeout if self._ping_sent else self._idle_timeout
            # disable_decoding: payloads stay bytes whatever the client's decode_responses says.
            # disconnect_on_error=False: only close() closes, so that the owner decides when (it
            # first stops handing the connection out; see send()).
            response = await self._raw.read_response(
                disable_decoding=True, timeout=timeout, disconnect_on_error=False, push_request=True
            )
            if response is None:  # nothing arrived within the timeout
                if self._ping_sent:
                    raise redis.exceptions.TimeoutError(
                        f"Redis did not answer PING within {timeout} s; the connection is half-open."
                    )
                await self.send("PING")
                self._ping_sent = True
                continue
            self._ping_sent = False  # any data proves the connection alive
            reply = _parse(response)
            if reply.kind != b"pong":
                return reply

    async def close(self) -> None:
        # nowait: waiting for a close handshake on a dead (half-open) socket could hang.
        await self._raw.disconnect(nowait=True)


def _parse(response: Any) -> Reply:
    """RESP2 (arrays) and RESP3 (push messages, plain PONG) shapes alike."""
    if response == b"PONG":  # RESP3 answers PING with a plain reply even in subscribed mode
        return Reply(b"pong", "", b"")
    if isinstance(response, list) and response and isinstance(response[0], bytes):
        kind = response[0].lower()
        # Channel names are ours and sent as UTF-8 (redis-py's default encoding).
        channel = response[1].decode() if len(response) > 1 and isinstance(response[1], bytes) else ""
        data = response[2] if len(response) > 2 and isinstance(response[2], bytes) else b""
        return Reply(kind, channel, data)
    return Reply(b"?", "", repr(response).encode())


def jittered_backoff(failures: int, initial: float, maximum: float) -> float:
    """Seconds to wait before reconnect attempt `failures` + 1: doubling from `initial` up to `maximum`.

    "Equal jitter": replicas that lost Redis together do not all come back in lockstep.
    """
    ceiling = min(maximum, initial * 2 ** min(failures, 30))
    return random.uniform(ceiling / 2, ceiling)
