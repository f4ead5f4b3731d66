"""Django settings of the peer; everything variable comes from PEER_* set by the bench."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

_db = urlsplit(os.environ["PEER_DSN"])
SECRET_KEY = os.environ["PEER_JWT_SECRET"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
ROOT_URLCONF = "django_peer.hub"
ASGI_APPLICATION = "django_peer.asgi.application"
MIDDLEWARE: list[str] = []
USE_TZ = True
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": _db.username or "postgres",
        "HOST": _db.hostname,
        "PORT": _db.port or 5432,
        # Persistent connections, as a production deployment would configure.
        "CONN_MAX_AGE": 600,
    }
}
CHANNEL_LAYERS = {
    "default": {
        # The default channel layer of channels_redis (capacity 100 per channel).
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 caps a pool at 100 connections and raises past it (MaxConnectionsError):
            # a burst of connecting consumers hits that, so the cap is lifted as a user would.
            "hosts": [{"address": os.environ["PEER_REDIS_URL"], "max_connections": 20_000}],
            "prefix": os.environ.get("PEER_PREFIX", "peer:"),
        },
    }
}
LOGGING_CONFIG = None
