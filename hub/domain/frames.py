"""The websocket protocol's server side: close codes, the status, ping and error messages, and the
RFC 6455 frame that carries a status to every socket. Pure: encoded once, shared by every socket."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import msgspec

from hub.domain.wire import VersionOnly

# Close codes a client can read (sockets are accepted first, so browsers see them too).
CLOSE_POLICY: Final = 1008  # too many client frames: the client misbehaves
CLOSE_SERVICE_RESTART: Final = 1012  # the server is stopping: reconnect elsewhere
CLOSE_INTERNAL_ERROR: Final = 1011  # a bug on this socket: reconnect with backoff
CLOSE_UNAUTHENTICATED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403  # another owner's agent, or an Origin that is not allowed
CLOSE_NOT_FOUND: Final = 4404
CLOSE_TOO_SLOW: Final = 4408  # a send did not complete within the deadline: reconnect for a snapshot

# Codes of error frames on a socket that stays open (about one request of the client).
ERROR_BAD_FRAME: Final = 4400
ERROR_FRAME_TOO_LARGE: Final = 4413
ERROR_TOO_MANY_AGENTS: Final = 4429
ERROR_UNAVAILABLE: Final = 4503  # the database is unavailable: subscribe again in a few seconds

UNAVAILABLE_MESSAGE: Final = "The database is unavailable; subscribe again in a few seconds."
# Same code, when the database is fine but no connection of this replica's pool came free in time.
BUSY_MESSAGE: Final = "This replica is busy; subscribe again in a few seconds."

_STATUS_HEAD: Final = b'{"type":"status","data":'
_encoder = msgspec.json.Encoder()
_version_decoder = msgspec.json.Decoder(VersionOnly)


class Delivery:
    """How far one change has got on its way to this process's sockets, for the delivery-lag
    figure: one hold per socket whose outbox took it (and one by the fan-out until it has offered
    it to every socket); when the last hold is released, the lag from its commit is observed once,
    if at least one socket was written."""

    __slots__ = ("_observe", "committed_at", "holds", "written")

    def __init__(self, committed_at: float, observe: Callable[[float], None]) -> None:
        self.committed_at = committed_at
        self.holds = 1
        self.written = False
        self._observe = observe

    def hold(self) -> None:
        self.holds += 1

    def release(self, written: bool) -> None:
        self.written = self.written or written
        self.holds -= 1
        if self.holds == 0 and self.written:
            self._observe(time.time() - self.committed_at)


@dataclass(frozen=True, slots=True)
class StatusFrame:
    """One published status, decoded once per process and shared by every local socket."""

    agent_id: str
    version: int
    instance_id: str
    text: str  # the websocket message: {"type":"status","data":<status>}
    wire: bytes  # the same message as a complete websocket frame, written as is to every socket
    # Set on a change as it arrives from the broker; None on a snapshot (not a change: its age
    # is not a delivery lag).
    delivery: Delivery | None = None


def status_frame(_channel: str, data: bytes) -> StatusFrame:
    """Decode a published status (its agent and version only) and build its message once, both as
    str for the ASGI send and as a ready websocket frame for direct writes."""
    return _frame(data, None)


def tracked_frame(data: bytes, observe: Callable[[float], None]) -> StatusFrame:
    """``status_frame`` for a change arriving from the broker: its delivery is tracked from its commit
    (the status's ``updatedAt``, stamped in the transaction that made it) to its last local write."""
    return _frame(data, observe)


def _frame(data: bytes, observe: Callable[[float], None] | None) -> StatusFrame:
    head = _version_decoder.decode(data)
    message = _STATUS_HEAD + data + b"}"
    delivery = None if observe is None or head.updatedAt is None else Delivery(head.updatedAt.timestamp(), observe)
    return StatusFrame(head.agentId, head.version, head.instanceId, message.decode(), text_frame(message), delivery)


def ping_message(versions: dict[str, int]) -> str:
    """The idle ping: the version the client has of each agent it watches."""
    return _encoder.encode({"type": "ping", "versions": versions}).decode()


def error_message(agent_ids: list[str], code: int, message: str) -> str:
    """An error about the agents ``agent_ids`` (none: about the client frame itself). ``agentId`` is
    the one agent when there is exactly one, for clients that read only that."""
    agent_id = agent_ids[0] if len(agent_ids) == 1 else None
    frame = {"type": "error", "agentId": agent_id, "agentIds": agent_ids, "code": code, "message": message}
    return _encoder.encode(frame).decode()


def text_frame(payload: bytes) -> bytes:
    """A complete, final, unmasked websocket text frame (RFC 6455 5.2). Server frames are never
    masked, so one encoding serves every socket."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x81, length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, length)
    else:
        head = struct.pack("!BBQ", 0x81, 127, length)
    return head + payload
