"""Persistence: models, engine/session factories and query functions (which never commit)."""

from persistence.engine import make_engine, make_session_factory
from persistence.models import Agent, AgentInstance, Base, CallbackEvent, ProvisioningJob

__all__ = [
    "Agent",
    "AgentInstance",
    "Base",
    "CallbackEvent",
    "ProvisioningJob",
    "make_engine",
    "make_session_factory",
]
