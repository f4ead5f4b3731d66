"""status-hub: signed provisioning callbacks in, live step lists out (REST, websockets)."""

from hub.app import create_app
from hub.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError", "create_app"]
