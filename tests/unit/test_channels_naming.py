from __future__ import annotations

import pytest

from channels import agent_of, channel_name


@pytest.mark.parametrize(
    ("prefix", "agent_id", "expected"),
    [
        ("status-hub:", "42", "status-hub:agent:42"),
        ("", "42", "agent:42"),
        (
            "test-1a2b3c4d:",
            "0b0e7d2c-6a7e-4b8e-9a51-3c9d1c2f4e10",
            "test-1a2b3c4d:agent:0b0e7d2c-6a7e-4b8e-9a51-3c9d1c2f4e10",
        ),
        ("prod:eu:", "agent:7", "prod:eu:agent:agent:7"),
        ("hub:", "ägent-ü", "hub:agent:ägent-ü"),
    ],
    ids=["plain", "no-prefix", "uuid", "colons-in-both", "unicode"],
)
def test_channel_name(prefix: str, agent_id: str, expected: str) -> None:
    assert channel_name(prefix, agent_id) == expected


def test_distinct_prefixes_never_share_a_channel() -> None:
    assert channel_name("a:", "1") != channel_name("b:", "1")


def test_empty_agent_id_is_rejected() -> None:
    with pytest.raises(ValueError, match="agent id is required"):
        channel_name("hub:", "")


@pytest.mark.parametrize(
    ("prefix", "channel", "agent_id"),
    [("hub:", "hub:agent:42", "42"), ("", "agent:a:b", "a:b"), ("x:y:", "x:y:agent:7", "7")],
    ids=["simple", "no-prefix-colon-id", "colon-prefix"],
)
def test_agent_of_inverts_channel_name(prefix: str, channel: str, agent_id: str) -> None:
    assert agent_of(prefix, channel) == agent_id
    assert channel_name(prefix, agent_of(prefix, channel)) == channel


@pytest.mark.parametrize("channel", ["other:agent:1", "hub:agent:", "hub:agents:1"], ids=["prefix", "empty", "kind"])
def test_agent_of_refuses_foreign_channels(channel: str) -> None:
    with pytest.raises(ValueError, match="Expected a channel"):
        agent_of("hub:", channel)
