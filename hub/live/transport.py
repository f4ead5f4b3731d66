"""uvicorn's websocket protocol with what the hub adds: direct frame writes, and abandoned connections
aborted. It relies on internals of uvicorn's sans-I/O protocol, so pyproject.toml pins uvicorn and
websockets to the releases tested, and a test fails loudly if the extension cannot attach."""

from __future__ import annotations

from typing import Any, Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from hub.live.live_socket import WRITE_FRAME_EXTENSION

# Seconds a connection may outlive its finished handler before it is aborted.
ABANDON_AFTER: Final = 35.0


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol, plus two things.

    - ``write_frame``, offered to the app as the ASGI extension ``status-hub.write_frame``: write a
      pre-encoded frame straight to the transport when it can take it now. A status is encoded
      once per update for all sockets, and the ASGI send path (an await, a frame built per socket)
      is kept for when the transport pushes back.
    - A connection whose handler has finished is aborted after a grace period. uvicorn closes the
      transport gracefully, which waits until the peer has read everything buffered; a peer that
      never reads would keep the socket (and its buffer) open forever.
    """

    async def run_asgi(self) -> None:
        extensions = self.scope["extensions"]
        extensions[WRITE_FRAME_EXTENSION] = {"write_frame": self.write_frame}
        try:
            await super().run_asgi()
        finally:
            # The bound method in our own scope is a reference cycle; dropping it lets reference
            # counting free the connection instead of a full collection (which the hub makes rare).
            extensions.pop(WRITE_FRAME_EXTENSION, None)
        if not self.disconnected:  # a timer for a closed connection would only keep it in memory
            self.loop.call_later(ABANDON_AFTER, self._abandon)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            # Only the handshake needs them; kept, they weigh ~4 KiB per idle socket.
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]

    def write_frame(self, frame: bytes) -> bool:
        """Write a complete server frame if the connection is open and not pushing back; else False."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN
        ):
            return False
        self.transport.write(frame)
        return True

    def _abandon(self) -> None:
        if not self.disconnected:
            self.transport.abort()
