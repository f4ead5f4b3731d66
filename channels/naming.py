"""The one place that names pub/sub channels.

Redis pub/sub ignores the database number: channels are global to the server, so every name
carries a deployment prefix (tests use a random one per run) to keep unrelated hubs apart.
"""

from __future__ import annotations


def channel_name(prefix: str, agent_id: str) -> str:
    """Return the channel that carries status snapshots of one agent, e.g. `hub:agent:42`."""
    if not agent_id:
        raise ValueError("An agent id is required to name its channel, but an empty string was given.")
    return f"{prefix}agent:{agent_id}"


def agent_of(prefix: str, channel: str) -> str:
    """The agent id a channel named by `channel_name(prefix, ...)` carries; ValueError otherwise."""
    head = f"{prefix}agent:"
    if not channel.startswith(head) or len(channel) == len(head):
        raise ValueError(f"Expected a channel named {head}<agent id>, got {channel!r}.")
    return channel[len(head) :]


def canary_channel(prefix: str, replica: str) -> str:
    """Return the channel a replica publishes its readiness canary on and listens to, alone."""
    if not replica:
        raise ValueError("A replica id is required to name its canary channel, but an empty string was given.")
    return f"{prefix}canary:{replica}"
