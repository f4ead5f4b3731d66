"""Pub/sub for status snapshots: a backend contract, Redis and in-memory backends, the fan-out."""

from channels.backend import Backend, Event, Message, Restored
from channels.broker import Broker
from channels.memory import MemoryBackend
from channels.naming import agent_of, canary_channel, channel_name
from channels.redis_backend import RedisBackend
from channels.redis_cluster_backend import RedisClusterBackend

__all__ = [
    "Backend",
    "Broker",
    "Event",
    "MemoryBackend",
    "Message",
    "RedisBackend",
    "RedisClusterBackend",
    "Restored",
    "agent_of",
    "canary_channel",
    "channel_name",
]
