"""A local OpenID issuer for tests: the discovery document and a JWKS over HTTP on loopback, RSA keys
made here, and GitHub Actions-shaped id tokens signed with them. It can rotate its keys and go down."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.server import free_port

AUDIENCE = "status-hub-test"
DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/.well-known/jwks"
# Where a stand-in runner asks for an id token, as a job with `id-token: write` does with
# ACTIONS_ID_TOKEN_REQUEST_URL (plus `&audience=`) and ACTIONS_ID_TOKEN_REQUEST_TOKEN.
TOKEN_REQUEST = "/actions/idtoken"
TOKEN_REQUEST_TOKEN = "runner-request-token-0123456789"
# The repositories the hubs under test allow (HUB_OIDC_REPOSITORIES), and one they do not.
REPOSITORY_ID = 1001
OTHER_REPOSITORY_ID = 1002
UNLISTED_REPOSITORY_ID = 9009


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OidcIssuer:
    """Serves ``/.well-known/openid-configuration`` and the JWKS of its published keys; counts requests."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._keys: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []
        self.requests: Counter[str] = Counter()
        # Fields of the discovery document to serve differently (another issuer, another jwks_uri).
        self.discovery_overrides: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.current_kid = self.rotate()

    # Keys

    def new_key(self) -> str:
        """A new RSA key, not published; its kid."""
        kid = f"key-{uuid.uuid4().hex[:8]}"
        self._keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return kid

    def rotate(self) -> str:
        """A new key that signs from now on and is the only one published (the old one withdrawn)."""
        kid = self.new_key()
        with self._lock:
            self.published = [kid]
        self.current_kid = kid
        return kid

    def public_key(self, kid: str | None = None) -> rsa.RSAPublicKey:
        return self._keys[kid or self.current_kid].public_key()

    def public_pem(self, kid: str) -> bytes:
        return (
            self._keys[kid]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            published = list(self.published)
        keys = []
        for kid in published:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._keys[kid].public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    # Tokens

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """GitHub Actions' claims for a workflow_dispatch run of acme/infra, valid for 5 minutes."""
        now = int(time.time())
        repository = overrides.pop("repository", "acme/infra")
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": f"repo:{repository}:ref:refs/heads/main",
            "repository": repository,
            "repository_id": str(REPOSITORY_ID),
            "repository_owner": repository.split("/")[0],
            "event_name": "workflow_dispatch",
            "ref": "refs/heads/main",
            "run_id": "4242",
            "run_attempt": "1",
            "workflow": "Provision agent",
            "job_workflow_ref": f"{repository}/.github/workflows/provision-oidc.yml@refs/heads/main",
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now - 5,
            "exp": now + 300,
        }
        claims.update(overrides)
        return {key: value for key, value in claims.items() if value is not None}

    def token(self, kid: str | None = None, **overrides: Any) -> str:
        """An RS256 token signed with ``kid`` (the current key by default)."""
        kid = kid or self.current_kid
        return jwt.encode(self.claims(**overrides), self._keys[kid], algorithm="RS256", headers={"kid": kid})

    def forged(self, alg: str, **overrides: Any) -> str:
        """A token with ``alg`` ``none`` (no signature) or ``HS256`` keyed with the public key's PEM: the
        classic algorithm-confusion forgeries (PyJWT refuses to make them, so they are made by hand)."""
        header = {"alg": alg, "typ": "JWT", "kid": self.current_kid}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(self.claims(**overrides)).encode())}"
        if alg == "none":
            return signing_input + "."
        digest = hmac.new(self.public_pem(self.current_kid), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(digest)}"

    # Serving

    def start(self) -> None:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                with issuer._lock:
                    issuer.requests[path] += 1
                if path == TOKEN_REQUEST:
                    if self.headers.get("Authorization") != f"bearer {TOKEN_REQUEST_TOKEN}":
                        self.send_error(401)
                        return
                    audience = parse_qs(urlsplit(self.path).query).get("audience", [""])[0]
                    body: dict[str, Any] = {"count": 1, "value": issuer.token(aud=audience or None)}
                elif self.path == DISCOVERY:
                    body = {
                        "issuer": issuer.url,
                        "jwks_uri": issuer.url + JWKS,
                        "id_token_signing_alg_values_supported": ["RS256"],
                        "response_types_supported": ["id_token"],
                        "subject_types_supported": ["public", "pairwise"],
                        **issuer.discovery_overrides,
                    }
                elif self.path == JWKS:
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the counts say what was asked

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-issuer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Down: the port refuses connections from now on."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join, 10)

    @property
    def jwks_fetches(self) -> int:
        with self._lock:
            return self.requests[JWKS]


@asynccontextmanager
async def oidc_issuer(*, started: bool = True) -> AsyncIterator[OidcIssuer]:
    issuer = OidcIssuer()
    if started:
        issuer.start()
    try:
        yield issuer
    finally:
        await issuer.stop()


def oidc_environment(issuer: OidcIssuer, **extra: str) -> dict[str, str]:
    """The HUB_* variables of a hub that takes this issuer's tokens for AUDIENCE from two repositories."""
    return {
        "HUB_OIDC_AUDIENCE": AUDIENCE,
        "HUB_OIDC_ISSUER": issuer.url,
        "HUB_OIDC_REPOSITORIES": f"{REPOSITORY_ID},{OTHER_REPOSITORY_ID}",
        **extra,
    }
