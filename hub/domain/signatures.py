"""Callback signatures under HUB_WEBHOOK_SECRET. Pure.

Two schemes:

- Standard Webhooks (the ``standardwebhooks`` package): ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``. The timestamp must be within
  5 minutes of the hub's clock and the id is the delivery id, so a captured callback replayed later
  is refused, and one replayed sooner is the same delivery. A ``whsec_<base64>`` secret is
  base64-decoded to the key; any other value is used as its UTF-8 bytes.
- GitHub's ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``, keyed with the secret's
  UTF-8 bytes whatever its form: the body alone is signed, so it cannot tell a replay from a retry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Final

from standardwebhooks import Webhook, WebhookVerificationError

_SCHEME = "sha256="
STANDARD_PREFIX: Final = "whsec_"
# The three headers of Standard Webhooks, lower case as requests carry them.
WEBHOOK_ID: Final = "webhook-id"
WEBHOOK_TIMESTAMP: Final = "webhook-timestamp"
WEBHOOK_SIGNATURE: Final = "webhook-signature"
# The window the package enforces around the hub's clock.
TIMESTAMP_TOLERANCE_SECONDS: Final = 300


def sign(secret: str, body: bytes) -> str:
    """The header value for ``body``: ``sha256=`` and the hex HMAC-SHA256 of it under ``secret``."""
    return _SCHEME + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body``; compared in constant time."""
    if not header or not header.startswith(_SCHEME):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


class SignatureRefused(Exception):
    """A Standard Webhooks callback that does not verify; the message says which part failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def standard_key(secret: str) -> bytes:
    """The HMAC key of Standard Webhooks: a ``whsec_<base64>`` secret decoded, any other its UTF-8
    bytes. ValueError for a ``whsec_`` value that is not base64."""
    if secret.startswith(STANDARD_PREFIX):
        encoded = secret[len(STANDARD_PREFIX) :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            key = b""
        if not key:
            raise ValueError(f"a {STANDARD_PREFIX} secret must be followed by the key in base64")
        return key
    if not secret:
        raise ValueError("the secret is empty")
    return secret.encode()


def standard_webhook(secret: str) -> Webhook:
    """The verifier (and signer) of Standard Webhooks under ``secret``; built once per process."""
    return Webhook(standard_key(secret))


def sign_standard(webhook: Webhook, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers that sign ``body`` as delivery ``webhook_id`` sent at ``timestamp`` (Unix seconds)."""
    signature = webhook.sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), body.decode())
    return {WEBHOOK_ID: webhook_id, WEBHOOK_TIMESTAMP: str(timestamp), WEBHOOK_SIGNATURE: signature}


def verify_standard(
    webhook: Webhook, body: bytes, webhook_id: str | None, timestamp: str | None, signature: str | None
) -> None:
    """Check a Standard Webhooks signature over id, timestamp and the raw body (the body is not parsed);
    SignatureRefused says what failed."""
    if not (webhook_id and timestamp and signature):
        missing = [name for name, value in _headers(webhook_id, timestamp, signature).items() if not value]
        raise SignatureRefused(f"Standard Webhooks needs the headers {', '.join(missing)} too.")
    try:
        body.decode()
    except UnicodeDecodeError:
        # The scheme signs text; the body is refused as malformed (400) by the caller's parse anyway.
        raise SignatureRefused("The body is not valid UTF-8, which Standard Webhooks signs as text.") from None
    try:
        webhook.verify(body, _headers(webhook_id, timestamp, signature), json_parse=False)
    except WebhookVerificationError as exc:
        raise SignatureRefused(_explain(str(exc))) from None
    except ValueError:
        # A malformed signature list (no "v1,", not base64): the package raises ValueError for it.
        raise SignatureRefused(_MALFORMED) from None


_MALFORMED: Final = "Invalid webhook-signature: expected v1,<base64 HMAC-SHA256 of webhook-id.webhook-timestamp.body>."


def _headers(webhook_id: str | None, timestamp: str | None, signature: str | None) -> dict[str, str]:
    return {WEBHOOK_ID: webhook_id or "", WEBHOOK_TIMESTAMP: timestamp or "", WEBHOOK_SIGNATURE: signature or ""}


def _explain(reason: str) -> str:
    """The package's reason, said for a workflow's author."""
    if "too old" in reason or "too new" in reason:
        return (
            f"webhook-timestamp is more than {TIMESTAMP_TOLERANCE_SECONDS // 60} minutes from the hub's clock "
            "(a replayed or delayed callback, or a wrong clock): sign each send with the current time."
        )
    if "Invalid Signature Headers" in reason:
        return "webhook-timestamp must be Unix seconds."
    if "No matching signature" in reason:
        return "Invalid webhook-signature: no v1 signature matches id, timestamp and body under HUB_WEBHOOK_SECRET."
    return _MALFORMED
