from __future__ import annotations

import base64
import re
import shlex
import subprocess
import time

import pytest

from hub.cli.banner import hmac_command
from hub.domain.signatures import (
    SignatureRefused,
    sign,
    sign_standard,
    standard_key,
    standard_webhook,
    verify,
    verify_standard,
)

# GitHub's published test vector for X-Hub-Signature-256.
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_PAYLOAD = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_sign_matches_githubs_test_vector() -> None:
    assert sign(GITHUB_SECRET, GITHUB_PAYLOAD) == GITHUB_SIGNATURE


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (GITHUB_SIGNATURE, True),
        (GITHUB_SIGNATURE + " ", True),
        (None, False),
        ("", False),
        ("sha256=", False),
        ("sha1=" + GITHUB_SIGNATURE.removeprefix("sha256="), False),
        (GITHUB_SIGNATURE[:-1] + "0", False),
        (GITHUB_SIGNATURE.upper(), False),
        ("sha256=é", False),
    ],
    ids=["valid", "trailing-space", "missing", "empty", "no-digest", "sha1", "one-digit-off", "uppercase", "non-ascii"],
)
def test_verify(header: str | None, expected: bool) -> None:
    assert verify(GITHUB_SECRET, GITHUB_PAYLOAD, header) is expected


def test_verify_rejects_another_body() -> None:
    assert not verify(GITHUB_SECRET, GITHUB_PAYLOAD + b" ", GITHUB_SIGNATURE)


# The Standard Webhooks specification's test vector.
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STANDARD_TIMESTAMP = 1614265330
STANDARD_PAYLOAD = b'{"test": 2432232314}'
STANDARD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_standard_matches_the_specifications_test_vector() -> None:
    headers = sign_standard(standard_webhook(STANDARD_SECRET), STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_PAYLOAD)
    assert headers == {
        "webhook-id": STANDARD_ID,
        "webhook-timestamp": str(STANDARD_TIMESTAMP),
        "webhook-signature": STANDARD_SIGNATURE,
    }


def test_a_whsec_secret_is_decoded_and_any_other_used_as_its_bytes() -> None:
    assert standard_key(STANDARD_SECRET) == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert standard_key(GITHUB_SECRET) == GITHUB_SECRET.encode()
    for unusable in ("", "whsec_", "whsec_not base64!"):
        with pytest.raises(ValueError):
            standard_key(unusable)


def test_verify_standard_takes_a_fresh_signature_and_names_what_is_wrong() -> None:
    webhook = standard_webhook(GITHUB_SECRET)
    now = int(time.time())
    headers = sign_standard(webhook, "msg_1", now, GITHUB_PAYLOAD)
    verify_standard(webhook, GITHUB_PAYLOAD, headers["webhook-id"], str(now), headers["webhook-signature"])
    # A list of signatures (a secret being rotated) passes when one matches.
    rotated = f"v1,{base64.b64encode(b'x' * 32).decode()} {headers['webhook-signature']}"
    verify_standard(webhook, GITHUB_PAYLOAD, "msg_1", str(now), rotated)
    cases = [
        (GITHUB_PAYLOAD + b" ", "msg_1", str(now), headers["webhook-signature"], "no v1 signature matches"),
        (GITHUB_PAYLOAD, "msg_1", str(now - 301), headers["webhook-signature"], "more than 5 minutes"),
        (GITHUB_PAYLOAD, "msg_1", None, headers["webhook-signature"], "webhook-timestamp"),
        (GITHUB_PAYLOAD, "msg_1", str(now), "v1", "expected v1,<base64"),
        (b"\xff", "msg_1", str(now), headers["webhook-signature"], "UTF-8"),
    ]
    for body, webhook_id, timestamp, signature, says in cases:
        with pytest.raises(SignatureRefused, match=re.escape(says)):
            verify_standard(webhook, body, webhook_id, timestamp, signature)


@pytest.mark.parametrize("secret", [GITHUB_SECRET, STANDARD_SECRET], ids=["plain", "whsec"])
def test_the_openssl_recipe_signs_as_the_hub_verifies(secret: str) -> None:
    # What the banner prints (and the README and the Actions example do): printf id.timestamp.body | openssl.
    signed_text = f"{STANDARD_ID}.{STANDARD_TIMESTAMP}.{STANDARD_PAYLOAD.decode()}".encode()
    digest = subprocess.run(shlex.split(hmac_command(secret)), input=signed_text, capture_output=True, check=True)
    expected = sign_standard(standard_webhook(secret), STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_PAYLOAD)
    assert "v1," + base64.b64encode(digest.stdout).decode() == expected["webhook-signature"]
