"""CORS: the REST reads and the static client module for HUB_ALLOWED_ORIGINS only; admin and
webhook endpoints never."""

from __future__ import annotations

import pytest

from tests.support.api import Api, token_for
from tests.support.config import ALLOWED_ORIGIN

OTHER_ORIGIN = "http://elsewhere.test"


def preflight(origin: str, method: str = "GET") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, if-none-match",
    }


@pytest.mark.parametrize(
    "path",
    ["/api/agents", "/api/agents/{agent_id}/instance", "/api/agents/{agent_id}/events", "/static/statushub.js"],
)
async def test_reads_answer_preflights_and_carry_the_origin(api: Api, path: str) -> None:
    agent_id, _ = await api.new_job()
    url = path.format(agent_id=agent_id)
    allowed = await api.client.options(url, headers=preflight(ALLOWED_ORIGIN))
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert {"authorization", "if-none-match"} <= {
        h.strip().lower() for h in allowed.headers["access-control-allow-headers"].split(",")
    }
    read = await api.client.get(
        url, headers={"Origin": ALLOWED_ORIGIN, "Authorization": f"Bearer {token_for('owner-1')}"}
    )
    assert read.status_code == 200
    assert read.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert read.headers["access-control-expose-headers"] == "ETag, Date"
    assert "Origin" in read.headers["vary"]

    for refused in (
        await api.client.options(url, headers=preflight(OTHER_ORIGIN)),
        await api.client.get(url, headers={"Origin": OTHER_ORIGIN, "Authorization": f"Bearer {token_for('owner-1')}"}),
    ):
        assert "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/agents"), ("POST", "/api/agents/{agent_id}/provision"), ("POST", "/api/webhooks/github")],
)
async def test_admin_and_webhook_endpoints_get_no_cors(api: Api, method: str, path: str) -> None:
    agent_id, _ = await api.new_job()
    url = path.format(agent_id=agent_id)
    answered = await api.client.options(url, headers=preflight(ALLOWED_ORIGIN, method))
    assert "access-control-allow-origin" not in answered.headers
    posted = await api.client.request(method, url, headers={"Origin": ALLOWED_ORIGIN}, content=b"{}")
    assert "access-control-allow-origin" not in posted.headers


async def test_a_preflight_for_a_write_on_a_read_route_is_refused(api: Api) -> None:
    answered = await api.client.options("/api/agents", headers=preflight(ALLOWED_ORIGIN, "POST"))
    assert "access-control-allow-origin" not in answered.headers
