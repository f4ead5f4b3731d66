"""A bare-bones websocket client over a plain socket, for clients that misbehave on purpose:
one that stops reading (a slow dashboard) or one that vanishes mid-handshake."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any


class RawSocket:
    """Does the opening handshake, then reads only when told to. Blocking I/O runs in a thread."""

    def __init__(self, port: int, path: str, token: str, *, receive_buffer: int = 4096) -> None:
        self._port = port
        self._path = path
        self._token = token
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive buffer so that a client that stops reading pushes back on the server soon.
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self._sock.settimeout(10.0)
        self._buffer = b""

    async def open(self, *, wait_for_upgrade: bool = True) -> None:
        await asyncio.to_thread(self._handshake, wait_for_upgrade)

    def _handshake(self, wait_for_upgrade: bool) -> None:
        self._sock.connect(("127.0.0.1", self._port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self._path} HTTP/1.1\r\nHost: 127.0.0.1:{self._port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {self._token}\r\n\r\n"
        )
        self._sock.sendall(request.encode())
        if not wait_for_upgrade:
            return
        while b"\r\n\r\n" not in self._buffer:
            chunk = self._sock.recv(4096)
            if not chunk:
                raise ConnectionError("The server closed the connection during the handshake.")
            self._buffer += chunk
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"Expected 101 Switching Protocols, got {head.splitlines()[0]!r}.")

    def abort(self) -> None:
        """Vanish with a TCP reset, as a killed browser tab would."""
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._sock.close()

    def close(self) -> None:
        self._sock.close()

    async def drain(self) -> tuple[list[dict[str, Any]], int | None]:
        """Read everything until the server closes: (text frames as JSON, close code or None)."""
        return await asyncio.to_thread(self._drain)

    def _drain(self) -> tuple[list[dict[str, Any]], int | None]:
        frames: list[dict[str, Any]] = []
        while True:
            opcode, payload = self._read_frame()
            if opcode is None:
                return frames, None
            if opcode == 0x1:
                frames.append(json.loads(payload))
            elif opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return frames, code

    def _read_exact(self, size: int) -> bytes | None:
        while len(self._buffer) < size:
            try:
                chunk = self._sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                return None
            if not chunk:
                return None
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _read_frame(self) -> tuple[int | None, bytes]:
        head = self._read_exact(2)
        if head is None:
            return None, b""
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            extended = self._read_exact(2)
            length = struct.unpack("!H", extended)[0] if extended else 0
        elif length == 127:
            extended = self._read_exact(8)
            length = struct.unpack("!Q", extended)[0] if extended else 0
        payload = self._read_exact(length)
        return (None, b"") if payload is None else (opcode, payload)


async def open_until_ping(port: int, path: str, token: str) -> asyncio.StreamWriter:
    """A cheap client for churn tests: handshake, then read until the server's first ping frame (by
    then the hub holds the socket's whole state). Returns the writer; closing it drops the socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"Expected 101 Switching Protocols, got {head.splitlines()[0]!r}.")
    while True:
        first, second = await reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await reader.readexactly(8))[0]
        payload = await reader.readexactly(length)
        if first & 0x0F == 0x8:
            raise ConnectionError(f"The server closed the socket: {payload!r}.")
        if b'"ping"' in payload:
            return writer
