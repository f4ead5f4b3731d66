"""Agent ids as clients write them: UUIDs in any case or form, matched in their canonical form."""

from __future__ import annotations

import uuid


def parse_agent_id(raw: str) -> uuid.UUID | None:
    """The UUID ``raw`` spells, or None when it is no UUID (an unknown agent, not a bad request)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def canonical_agent_id(raw: str) -> str:
    """``raw`` in canonical form, so ids written in capitals or without dashes name one agent; an id
    that is no UUID stays as it came (and is later refused as unknown)."""
    key = parse_agent_id(raw)
    return raw if key is None else str(key)
