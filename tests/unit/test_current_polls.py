"""A current poll's 304 before the handler: answered only when the handler would answer it, else passed on."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hub.domain.tokens import VerifiedTokens, issue_dashboard_token
from hub.http.current_polls import answer_current_polls

SECRET = "s" * 32
AGENT = "6f1c2f3e-58a4-4c2e-9a52-0d7c1e0b8a11"
INSTANCE = "0b8e4a52-1c0e-4f77-8a8e-3e1f4f9b2c10"
TAG = f'"{INSTANCE}.7"'


class Versions:
    """The poll cache as the middleware reads it: agent -> (owner, instance, version)."""

    def __init__(self, known: dict[str, tuple[str, str, int]]) -> None:
        self.known = known

    def current(self, agent_id: str) -> tuple[str, str, int] | None:
        return self.known.get(agent_id)


async def _poll(headers: list[tuple[str, str]], *, agent_id: str = AGENT) -> tuple[list[dict[str, Any]], bool]:
    """What the middleware sent, and whether it passed the request on to the handler."""
    hub = SimpleNamespace(tokens=VerifiedTokens(SECRET), versions=Versions({AGENT: ("owner-1", INSTANCE, 7)}))
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
        "path_params": {"agent_id": agent_id},
        "litestar_app": SimpleNamespace(state=SimpleNamespace(hub=hub)),
    }
    sent: list[dict[str, Any]] = []
    passed_on = False

    async def handler(*_: Any) -> None:
        nonlocal passed_on
        passed_on = True

    async def receive() -> dict[str, Any]:
        raise AssertionError("a GET's body is never read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await answer_current_polls(handler)(scope, receive, send)
    return sent, passed_on


def _bearer(owner_id: str = "owner-1", secret: str = SECRET) -> str:
    return f"Bearer {issue_dashboard_token(secret, owner_id)}"


@pytest.mark.parametrize("if_none_match", [TAG, f"W/{TAG}", f'"other", {TAG}', "*"])
async def test_a_current_poll_is_answered_as_the_handler_would(if_none_match: str) -> None:
    sent, passed_on = await _poll([("Authorization", _bearer()), ("If-None-Match", if_none_match)])
    assert not passed_on
    assert sent == [
        {
            "type": "http.response.start",
            "status": 304,
            "headers": [(b"etag", TAG.encode()), (b"cache-control", b"no-cache")],
        },
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]


@pytest.mark.parametrize(
    ("headers", "agent_id"),
    [
        ([("Authorization", _bearer())], AGENT),  # unconditional: the handler reads the status
        ([("Authorization", _bearer()), ("If-None-Match", '"other.7"')], AGENT),  # changed
        ([("Authorization", _bearer("owner-2")), ("If-None-Match", TAG)], AGENT),  # another owner's: 403
        ([("Authorization", _bearer(secret="o" * 32)), ("If-None-Match", TAG)], AGENT),  # does not verify: 401
        ([("Authorization", "Basic abc"), ("If-None-Match", TAG)], AGENT),  # no bearer token
        ([("Cookie", "status_hub_token=x"), ("If-None-Match", TAG)], AGENT),  # the cookie is the handler's
        ([("Authorization", _bearer()), ("If-None-Match", TAG)], AGENT.upper()),  # not canonical: no entry
        ([("Authorization", _bearer()), ("If-None-Match", TAG)], "c0ffee00-0000-4000-8000-000000000000"),  # not held
    ],
    ids=["unconditional", "changed", "other-owner", "bad-token", "basic", "cookie", "upper-case-id", "not-held"],
)
async def test_anything_else_goes_to_the_handler_untouched(headers: list[tuple[str, str]], agent_id: str) -> None:
    sent, passed_on = await _poll(headers, agent_id=agent_id)
    assert passed_on and sent == []


async def test_a_repeated_header_counts_with_its_first_value_as_in_the_handler() -> None:
    first_stale = await _poll([("Authorization", _bearer()), ("If-None-Match", '"other.7"'), ("If-None-Match", TAG)])
    assert first_stale == ([], True)
    first_current, _ = await _poll([("Authorization", _bearer()), ("If-None-Match", TAG), ("If-None-Match", '"x"')])
    assert first_current[0]["status"] == 304
