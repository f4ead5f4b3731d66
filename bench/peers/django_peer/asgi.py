"""The ASGI entry point: HTTP to Django, websockets to the Channels consumer."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_peer.peer_settings")

from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path

django_app = get_asgi_application()

from .hub import AgentConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_app,
        "websocket": URLRouter([path("api/agents/<str:agent_id>/instance/ws", AgentConsumer.as_asgi())]),
    }
)
