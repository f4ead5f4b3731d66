"""The image's HEALTHCHECK: exit 0 when the hub in this container answers ``GET /livez`` with 200.

Standard library only and nothing of the hub imported: it runs every few seconds, beside the hub.
It asks where ``status-hub serve`` listens: ``LISTEN_HOST`` and ``LISTEN_PORT``, as the image's
command does."""

from __future__ import annotations

import http.client
import os
import sys

PATH = "/livez"
TIMEOUT = 2.0


def probe_host(listen_host: str) -> str:
    """The address to ask: a wildcard listener answers on loopback, a specific one only on itself."""
    if listen_host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if listen_host == "::":
        return "::1"
    return listen_host


def main() -> int:
    host = probe_host(os.environ.get("LISTEN_HOST", "0.0.0.0"))
    port = int(os.environ.get("LISTEN_PORT", "8000"))
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        connection.request("GET", PATH)
        status = connection.getresponse().status
    except OSError as exc:
        print(f"GET {PATH} on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"GET {PATH} on {host}:{port}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
