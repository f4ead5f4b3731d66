from __future__ import annotations

import pytest

from channels import channel_name


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
