"""GitHub-style webhook signatures (``X-Hub-Signature-256: sha256=<hex>``). Pure."""

from __future__ import annotations

import hashlib
import hmac

_SCHEME = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The header value for ``body``: ``sha256=`` and the hex HMAC-SHA256 of it under ``secret``."""
    return _SCHEME + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body``; compared in constant time."""
    if not header or not header.startswith(_SCHEME):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())
