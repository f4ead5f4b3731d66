"""``status-hub token``: a dashboard token the hub accepts, in one command."""

from __future__ import annotations

import pytest

from hub.cli.commands import main
from tests.support.api import Api
from tests.support.config import JWT_SECRET


async def test_the_printed_token_reads_the_owners_agents(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = await api.create_agent("acme")
    monkeypatch.setenv("HUB_JWT_SECRET", JWT_SECRET)
    assert main(["token", "--owner", "acme", "--ttl", "600"]) == 0
    token = capsys.readouterr().out.strip()
    listed = await api.client.get("/api/agents", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()] == [agent["id"]]


def test_link_puts_the_token_in_the_fragment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HUB_JWT_SECRET", JWT_SECRET)
    assert main(["token", "--owner", "acme", "--link", "--url", "https://status.example.com/"]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith("https://status.example.com/#token=ey")


@pytest.mark.parametrize(
    ("secret", "args", "message"),
    [
        (None, ["--owner", "acme"], "HUB_JWT_SECRET is not set"),
        ("short", ["--owner", "acme"], "HUB_JWT_SECRET must be at least 32 characters"),
        (JWT_SECRET, ["--owner", " "], "--owner must not be blank"),
        (JWT_SECRET, ["--owner", "acme", "--ttl", "0"], "--ttl must be a positive number of seconds"),
    ],
    ids=["no-secret", "short-secret", "blank-owner", "zero-ttl"],
)
def test_a_token_that_cannot_be_made_says_why(
    secret: str | None,
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if secret is None:
        monkeypatch.delenv("HUB_JWT_SECRET", raising=False)
    else:
        monkeypatch.setenv("HUB_JWT_SECRET", secret)
    assert main(["token", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
