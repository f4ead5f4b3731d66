"""Constants the test run shares: secrets of the hub under test and where the services are."""

from __future__ import annotations

import os

# Where the test run may create (and drop) its own database; trust auth on loopback.
PG_ADMIN_DSN = os.environ.get("STATUS_HUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("STATUS_HUB_TEST_REDIS", "redis://127.0.0.1:6379/0")

WEBHOOK_SECRET = "test-webhook-secret-0123456789"
JWT_SECRET = "test-jwt-secret-0123456789abcdef-0123456789"
ADMIN_TOKEN = "test-admin-token-0123456789"
ALLOWED_ORIGIN = "http://dashboard.test"
