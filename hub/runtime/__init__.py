"""The running process's shared state: database pool, broker, open sockets, publishing and fan-out pacing."""

from hub.runtime.resources import Hub, HubDep, open_hub

__all__ = ["Hub", "HubDep", "open_hub"]
