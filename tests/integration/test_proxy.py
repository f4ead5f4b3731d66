"""Behind a TLS-terminating proxy that rewrites Host: the websocket Origin check compares against
HUB_PUBLIC_URL (scheme and host), and without it against the request's own Host, as before."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect

from hub.settings import Settings
from tests.support.api import token_for
from tests.support.config import ALLOWED_ORIGIN
from tests.support.live import live_hub
from tests.support.ws import close_code, next_status, open_socket

PUBLIC_URL = "https://status.example.com"
# What the proxy puts in Host when it forwards to the hub (not what the browser asked for).
UPSTREAM = "http://hub-upstream.internal:8080"


def _through_proxy(hub_base: str, path: str, origin: str, *, cookie: bool = False) -> connect:
    """A handshake as the proxy forwards it: the browser's Origin, Host rewritten to UPSTREAM, sent
    to the hub's real address."""
    token = token_for("owner-1")
    headers = {"Cookie": f"status_hub_token={token}"} if cookie else {"Authorization": f"Bearer {token}"}
    return open_socket(
        UPSTREAM, path, owner=None, headers=headers, origin=origin, host="127.0.0.1", port=urlsplit(hub_base).port
    )


async def test_with_a_public_url_the_proxied_page_is_accepted_and_others_refused(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    async with live_hub(settings, public_url=PUBLIC_URL) as (base, _, api):
        agent_id, _ = await api.new_job("owner-1")
        path = f"/api/agents/{agent_id}/instance/ws"
        for cookie in (False, True):
            async with _through_proxy(base, path, PUBLIC_URL, cookie=cookie) as ws:
                assert (await next_status(ws))["agentId"] == agent_id
        async with _through_proxy(base, path, ALLOWED_ORIGIN, cookie=True) as ws:
            assert (await next_status(ws))["agentId"] == agent_id
        refused = (
            "http://status.example.com",  # the right host over the wrong scheme
            "https://status.example.com:8443",  # another port
            "https://evil.example.com",
            UPSTREAM,  # the Host the proxy sent is not where browsers see the hub
        )
        for origin in refused:
            async with _through_proxy(base, path, origin, cookie=True) as ws:
                assert await close_code(ws) == 4403, origin


async def test_without_a_public_url_the_own_host_is_the_origin(settings: Settings, clean_db: AsyncEngine) -> None:
    assert settings.public_url is None
    async with live_hub(settings) as (base, _, api):
        agent_id, _ = await api.new_job("owner-1")
        path = f"/api/agents/{agent_id}/instance/ws"
        async with _through_proxy(base, path, UPSTREAM, cookie=True) as ws:
            assert (await next_status(ws))["agentId"] == agent_id
        # A proxy that rewrites Host locks its public page out unless HUB_PUBLIC_URL is set.
        async with _through_proxy(base, path, PUBLIC_URL, cookie=True) as ws:
            assert await close_code(ws) == 4403
