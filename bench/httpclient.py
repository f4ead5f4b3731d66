"""A minimal HTTP/1.1 keep-alive client on asyncio protocols.

The load generator must be cheaper than the server it measures; httpx costs several times more
CPU per request than this. It speaks just what the hub and the peers answer: Content-Length
or chunked bodies (no trailers), one request in flight per connection.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass


class HttpError(Exception):
    """The server answered something this client cannot parse, or closed the connection."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[HttpResponse] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError(f"The connection closed mid-request: {exc!r}."))

    def request(self, data: bytes) -> asyncio.Future[HttpResponse]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._waiter is None:
            return
        head = bytes(self._buffer[:end]).split(b"\r\n")
        headers: dict[bytes, bytes] = {}
        for line in head[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding") == b"chunked":
            parsed = _dechunk(self._buffer, end + 4)
            if parsed is None:
                return
            body, consumed = parsed
        else:
            length = int(headers.get(b"content-length", b"0"))
            if len(self._buffer) < end + 4 + length:
                return
            body, consumed = bytes(self._buffer[end + 4 : end + 4 + length]), end + 4 + length
        del self._buffer[:consumed]
        waiter, self._waiter = self._waiter, None
        if not waiter.done():
            waiter.set_result(HttpResponse(int(head[0].split(b" ", 2)[1]), headers, body))


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A complete chunked body from ``start``: (body, end offset), or None while incomplete."""
    body = bytearray()
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n", line_end + 2)
            return None if trailer_end < 0 else (bytes(body), trailer_end + 2)
        if len(buffer) < line_end + 2 + size + 2:
            return None
        body += buffer[line_end + 2 : line_end + 2 + size]
        at = line_end + 2 + size + 2


class HttpPool:
    """Keep-alive connections to one host; grows on demand up to ``limit`` connections."""

    def __init__(self, host: str, port: int, *, limit: int = 512) -> None:
        self.host = host
        self.port = port
        self._idle: deque[_Connection] = deque()
        self._open = 0
        self._limit = asyncio.Semaphore(limit)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> HttpResponse:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        if headers:
            lines.extend(f"{name}: {value}" for name, value in headers.items())
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        async with self._limit:
            conn = await self._take()
            try:
                response = await conn.request(data)
            except BaseException:
                if conn.transport is not None:
                    conn.transport.close()
                raise
            if response.headers.get(b"connection") == b"close" and conn.transport is not None:
                conn.transport.close()
            else:
                self._idle.append(conn)
            return response

    async def _take(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        self._open += 1
        return conn

    def close(self) -> None:
        while self._idle:
            conn = self._idle.pop()
            if conn.transport is not None:
                conn.transport.close()
