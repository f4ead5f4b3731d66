from __future__ import annotations

import pytest

from hub.domain.signatures import sign, verify

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
