"""Running the app under uvicorn, and the embedded default's welcome banner."""

from __future__ import annotations

import gc
import json
import os
import shlex
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from hub.app import create_app
from hub.auth import issue_dashboard_token
from hub.live import WRITE_FRAME_EXTENSION
from hub.settings import Settings
from hub.signatures import sign

# Seconds a connection may outlive its finished handler before it is aborted.
ABANDON_AFTER = 35.0


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
        self.scope["extensions"][WRITE_FRAME_EXTENSION] = {"write_frame": self.write_frame}
        await super().run_asgi()
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


def uvicorn_options() -> dict[str, object]:
    """Options every server of the hub runs with (also the tests' in-process servers)."""
    return {
        "ws": WebSocketProtocol,
        # Status JSON is tiny: permessage-deflate costs ~4x memory per socket for no gain.
        "ws_per_message_deflate": False,
        # Protocol-level pings only find dead peers; the hub's own ping frames (HUB_PING_INTERVAL)
        # keep clients informed. Once a minute is enough for the former and halves idle traffic.
        "ws_ping_interval": 60.0,
        "ws_ping_timeout": 30.0,
    }


def tune_garbage_collector() -> None:
    """A full collection over thousands of sockets' objects stalls the loop for 100-300 ms, and
    that stall alone set the p99 of a wide fan-out (PITFALLS.md). Everything alive after start-up is
    frozen out of collections, and full collections become rare; the hub makes few cycles."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    options: dict[str, object] = {
        **uvicorn_options(),
        "host": host,
        "port": port,
        "lifespan": "on",
        "log_level": settings.log_level.lower(),
        "timeout_graceful_shutdown": 5,
    }
    if workers > 1:
        # Each worker builds its own app from the same HUB_* environment.
        uvicorn.run("hub.server:app_from_env", factory=True, workers=workers, **options)  # type: ignore[arg-type]
        return
    if settings.generated_secrets:
        print(welcome(settings, host, port), flush=True)
    app = create_app(settings)
    tune_garbage_collector()
    uvicorn.run(app, **options)  # type: ignore[arg-type]


def app_from_env() -> object:
    app = create_app(Settings.from_env(os.environ))
    tune_garbage_collector()
    return app


def welcome(settings: Settings, host: str, port: int) -> str:
    """How to reach a hub running on the embedded default, with the secrets made for this run."""
    base = f"http://{host}:{port}"
    token = issue_dashboard_token(settings.jwt_secret, "demo-owner")
    body = json.dumps({"job_id": "<jobId>", "status": "provisioning", "step": "vm_created"}, separators=(",", ":"))
    return "\n".join(
        [
            "",
            f"status-hub is running on the embedded default at {base}",
            f"  database: {settings.database_url} (SQLite file); broker: in-memory (one process)",
            f"  generated for this run (set them to keep them): {', '.join(settings.generated_secrets)}",
            f"  HUB_WEBHOOK_SECRET={settings.webhook_secret}",
            f"  HUB_JWT_SECRET={settings.jwt_secret}",
            f"  HUB_ADMIN_TOKEN={settings.admin_token}",
            "",
            "Dashboard for owner demo-owner:",
            f"  {base}/#token={token}",
            "",
            "Create an agent and start provisioning it (admin API):",
            f"  curl -s -X POST {base}/api/agents -H 'Authorization: Bearer {settings.admin_token}' "
            '-H \'Content-Type: application/json\' -d \'{"ownerId":"demo-owner","name":"my-agent"}\'',
            f"  curl -s -X POST {base}/api/agents/<agentId>/provision "
            f"-H 'Authorization: Bearer {settings.admin_token}'",
            "",
            "Send a signed workflow callback (replace <jobId> with the jobId the provision call returned):",
            f"  body={shlex.quote(body)}",
            f'  sig=$(printf %s "$body" | openssl dgst -sha256 -hmac {shlex.quote(settings.webhook_secret)} '
            "| sed 's/^.* //')",
            f'  curl -s -X POST {base}/api/webhooks/github -H "X-Hub-Signature-256: sha256=$sig" '
            "-H 'Content-Type: application/json' -d \"$body\"",
            "",
            f"(example signature of that exact body: {sign(settings.webhook_secret, body.encode())})",
            "",
        ]
    )
