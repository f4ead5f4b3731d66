"""The page and its modules are served by the hub itself, with headers that keep the token safe."""

from __future__ import annotations

import httpx


async def test_the_page_is_html_with_a_strict_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "dashboard.js" in response.text


async def test_the_client_module_is_served_as_javascript(client: httpx.AsyncClient) -> None:
    response = await client.get("/static/statushub.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert "export class StatusHubClient" in response.text
