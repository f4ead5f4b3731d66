"""The hub's configuration: one frozen object read from ``HUB_*`` variables at start-up."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

PREFIX = "HUB_"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./status-hub.db"
_ALLOWED_DATABASE_SCHEMES = ("postgresql+asyncpg", "sqlite+aiosqlite")
_SECRET_FIELDS = ("webhook_secret", "jwt_secret", "admin_token")
_MIN_SECRET_LENGTH = 16
# RFC 7518 3.2: an HS256 key must be at least as long as the hash (32 bytes).
MIN_JWT_SECRET_LENGTH = 32
_MAX_PING_INTERVAL = 30.0
# One reconcile query per interval per replica: more often than once a second buys nothing.
_MIN_RECONCILE_INTERVAL = 1.0
# Settings where 0 is meaningful ("never", "none") rather than an invalid value.
_ZERO_ALLOWED = ("event_retention", "drain_delay", "fail_after")
LOG_FORMATS = ("text", "json")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A host name or IPv4 address, or an IPv6 literal (its brackets already taken off).
_HOST = re.compile(r"[a-z0-9_.-]+|[0-9a-f:.]+")
DEFAULT_OIDC_ISSUER = "https://token.actions.githubusercontent.com"
# A Standard Webhooks secret in its own form: whsec_ and the key in base64.
_STANDARD_SECRET_PREFIX = "whsec_"


class SettingsError(ValueError):
    """A ``HUB_*`` variable is unknown, missing or invalid; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    # Seed nodes (host:port) of a Redis Cluster, instead of redis_url: sharded pub/sub over its shards.
    redis_cluster_nodes: tuple[str, ...] = ()
    webhook_secret: str = field(default="", repr=False)
    jwt_secret: str = field(default="", repr=False)
    admin_token: str = field(default="", repr=False)
    allowed_origins: tuple[str, ...] = ()
    channel_prefix: str = "status-hub:"
    db_pool_size: int = 10
    send_timeout: float = 5.0
    ping_interval: float = 20.0
    reconcile_interval: float = 10.0
    # Seconds the event log keeps a callback (and so its delivery id); 0 keeps them forever.
    event_retention: int = 30 * 24 * 3600
    log_level: str = "INFO"
    # When set, GET /metrics asks for it as a bearer token.
    metrics_token: str = field(default="", repr=False)
    # On SIGTERM: seconds still served, not ready, before sockets are closed; then the window their
    # 1012 closes are spread over.
    drain_delay: float = 5.0
    drain_seconds: float = 10.0
    # text for a terminal, json for a log pipeline (one object per line).
    log_format: str = "text"
    # The origin browsers see the hub at behind a proxy (https://status.example.com); None: the
    # request's own Host. Stored as normalize_origin() gives it.
    public_url: str | None = None
    # GitHub Actions OIDC tokens as callback credentials: on when an audience is set. The issuer's
    # discovery document and keys are fetched from oidc_issuer; only these repository ids may call.
    oidc_audience: str | None = None
    oidc_issuer: str = DEFAULT_OIDC_ISSUER
    oidc_repositories: tuple[int, ...] = ()
    # Seconds of silence after which a provisioning (pending or provisioning) is marked stalled, a
    # running agent that heartbeats is marked stalled, and a provisioning is failed as presumed lost
    # (0: never).
    stall_after: int = 300
    heartbeat_timeout: int = 180
    fail_after: int = 3600
    # Secrets generated for this run on the embedded default; printed once at start-up.
    generated_secrets: tuple[str, ...] = ()

    @property
    def is_embedded(self) -> bool:
        """True when running on the SQLite file and the in-memory broker."""
        return self.database_url.startswith("sqlite") and not self.uses_redis

    @property
    def uses_redis(self) -> bool:
        """True with one Redis (HUB_REDIS_URL) or a Redis Cluster (HUB_REDIS_CLUSTER_NODES)."""
        return self.redis_url is not None or bool(self.redis_cluster_nodes)

    @property
    def signatures_enabled(self) -> bool:
        """Callbacks may be signed (Standard Webhooks or X-Hub-Signature-256): a webhook secret is set."""
        return bool(self.webhook_secret)

    @property
    def oidc_enabled(self) -> bool:
        """Callbacks may carry a GitHub Actions OIDC token: an audience is set."""
        return self.oidc_audience is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``HUB_*`` variables; anything unknown or invalid raises SettingsError."""
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "generated_secrets"}
        values: dict[str, Any] = {}
        for key, raw in environ.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX) :].lower()
            if name not in known:
                valid = ", ".join(sorted(PREFIX + n.upper() for n in known))
                raise SettingsError(f"Unknown variable {key}; the hub reads only: {valid}.")
            values[name] = _convert(key, raw, known[name].type, allow_zero=name in _ZERO_ALLOWED)
        return cls.build(**values)

    @classmethod
    def build(cls, **values: Any) -> Settings:
        """Validate and complete settings; on the embedded default, missing secrets are generated."""
        settings = cls(**values)
        _check_url("HUB_DATABASE_URL", settings.database_url, _ALLOWED_DATABASE_SCHEMES)
        if settings.redis_url is not None:
            _check_url("HUB_REDIS_URL", settings.redis_url, ("redis", "rediss", "unix"))
        _check_cluster_nodes(settings)
        for origin in settings.allowed_origins:
            if not origin.startswith(("http://", "https://")) or origin.endswith("/"):
                raise SettingsError(
                    f"HUB_ALLOWED_ORIGINS must list origins like https://dash.example.com "
                    f"(scheme and host, no path); got {origin!r}."
                )
        oidc = _check_oidc(settings)
        generated: list[str] = []
        secrets_now: dict[str, Any] = {}
        # With OIDC on, the webhook secret is optional: without one, only OIDC tokens are accepted.
        optional = ("webhook_secret",) if settings.oidc_audience is not None else ()
        missing = [
            PREFIX + name.upper() for name in _SECRET_FIELDS if not getattr(settings, name) and name not in optional
        ]
        if missing and not settings.database_url.startswith("sqlite"):
            # Every missing one at once, so a user fixes them in one go.
            hint = (
                " (HUB_WEBHOOK_SECRET may be left out when HUB_OIDC_AUDIENCE is set: callbacks then carry "
                "GitHub Actions OIDC tokens)"
                if "HUB_WEBHOOK_SECRET" in missing
                else ""
            )
            raise SettingsError(
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required when HUB_DATABASE_URL "
                "points at a real database, and there are no default secrets: set each to a long random "
                f"value, e.g. the output of `openssl rand -hex 32`{hint}."
            )
        for name in _SECRET_FIELDS:
            value: str = getattr(settings, name)
            env_name = PREFIX + name.upper()
            if not value:
                if name in optional:
                    continue
                secrets_now[name] = secrets.token_urlsafe(24)
                generated.append(env_name)
            elif len(value) < (minimum := MIN_JWT_SECRET_LENGTH if name == "jwt_secret" else _MIN_SECRET_LENGTH):
                raise SettingsError(f"{env_name} must be at least {minimum} characters long.")
        if settings.webhook_secret.startswith(_STANDARD_SECRET_PREFIX):
            _check_standard_secret(settings.webhook_secret)
        if settings.ping_interval > _MAX_PING_INTERVAL:
            # Dashboards treat a socket that has been silent for ~50 s as dead and reconnect.
            raise SettingsError(
                f"HUB_PING_INTERVAL must be at most {_MAX_PING_INTERVAL:g} seconds; got {settings.ping_interval:g}."
            )
        if settings.reconcile_interval < _MIN_RECONCILE_INTERVAL:
            raise SettingsError(
                f"HUB_RECONCILE_INTERVAL must be at least {_MIN_RECONCILE_INTERVAL:g} second; "
                f"got {settings.reconcile_interval:g}."
            )
        if 0 < settings.fail_after <= settings.stall_after:
            raise SettingsError(
                f"HUB_FAIL_AFTER must be 0 (never) or longer than HUB_STALL_AFTER ({settings.stall_after} s), so a "
                f"silent provisioning is shown stalled before it is failed; got {settings.fail_after}."
            )
        if settings.metrics_token and len(settings.metrics_token) < _MIN_SECRET_LENGTH:
            raise SettingsError(f"HUB_METRICS_TOKEN must be at least {_MIN_SECRET_LENGTH} characters long.")
        if settings.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(
                f"HUB_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR; got {settings.log_level!r}."
            )
        if settings.log_format.lower() not in LOG_FORMATS:
            raise SettingsError(f"HUB_LOG_FORMAT must be text or json; got {settings.log_format!r}.")
        normalized: dict[str, Any] = {"log_format": settings.log_format.lower(), **oidc}
        if settings.public_url is not None:
            public = normalize_origin(settings.public_url)
            if public is None:
                raise SettingsError(
                    "HUB_PUBLIC_URL must be the origin browsers open the hub at, like https://status.example.com "
                    f"(http or https, a host, an optional port, no path); got {settings.public_url!r}."
                )
            normalized["public_url"] = public
        return dataclasses.replace(settings, **secrets_now, **normalized, generated_secrets=tuple(generated))


def normalize_origin(url: str) -> str | None:
    """``scheme://host[:port]`` in the form browsers send as ``Origin`` (lower case, no default port),
    or None when ``url`` is not an http(s) origin: another scheme, no host, a user, a path (other than
    a lone ``/``), a query or a fragment."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in url or "#" in url:
        return None
    if not _HOST.fullmatch(host):
        return None
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    return f"{scheme}://{host}" if port is None or port == _DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


def _check_cluster_nodes(settings: Settings) -> None:
    if settings.redis_cluster_nodes and settings.redis_url is not None:
        raise SettingsError(
            "HUB_REDIS_URL and HUB_REDIS_CLUSTER_NODES are both set; set only one: HUB_REDIS_URL for one Redis, "
            "HUB_REDIS_CLUSTER_NODES for a Redis Cluster."
        )
    for node in settings.redis_cluster_nodes:
        host, _, port = node.rpartition(":")
        if not _HOST.fullmatch(host.strip("[]").lower()) or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(
                "HUB_REDIS_CLUSTER_NODES must list seed nodes of the Redis Cluster as host:port, comma-separated "
                f"(10.0.0.1:6379,10.0.0.2:6379); got {node!r}."
            )


def cluster_node_address(node: str) -> tuple[str, int]:
    """A validated HUB_REDIS_CLUSTER_NODES entry as (host, port); an IPv6 host loses its brackets."""
    host, _, port = node.rpartition(":")
    return host.strip("[]"), int(port)


def _check_oidc(settings: Settings) -> dict[str, Any]:
    """Validate the OIDC settings; their normalized values."""
    audience = settings.oidc_audience.strip() if settings.oidc_audience is not None else None
    repositories: list[int] = []
    for item in settings.oidc_repositories:
        text = str(item).strip()
        if not (text.isascii() and text.isdigit()) or int(text) == 0:
            raise SettingsError(
                "HUB_OIDC_REPOSITORIES must list numeric GitHub repository ids, comma-separated (a repository's "
                f"id is `gh api repos/OWNER/NAME --jq .id`); got {item!r}."
            )
        repositories.append(int(text))
    if audience == "":
        raise SettingsError("HUB_OIDC_AUDIENCE must not be blank; leave it unset to turn OIDC callbacks off.")
    if audience is None and repositories:
        raise SettingsError(
            "HUB_OIDC_REPOSITORIES is set but HUB_OIDC_AUDIENCE is not: set the audience to turn OIDC on."
        )
    if audience is not None and not repositories:
        # Anyone can mint a GitHub token for any audience from their own repository: the ids are the policy.
        raise SettingsError(
            "HUB_OIDC_REPOSITORIES is required with HUB_OIDC_AUDIENCE: list the numeric ids of the repositories "
            "whose workflows may send callbacks (any GitHub repository can mint a token for any audience)."
        )
    _check_issuer(settings.oidc_issuer)
    return {"oidc_audience": audience, "oidc_repositories": tuple(dict.fromkeys(repositories))}


def _check_issuer(issuer: str) -> None:
    problem = ""
    try:
        parts = urlsplit(issuer)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        problem = "it is not a URL"
    else:
        if parts.scheme not in ("https", "http") or not parts.hostname:
            problem = "it must be an https URL"
        elif parts.query or parts.fragment or parts.username is not None or parts.password is not None:
            problem = "it must have no user, query or fragment"
        elif parts.scheme == "http" and not is_loopback(parts.hostname):
            problem = "plain http is accepted only for a loopback host (tests)"
    if problem:
        raise SettingsError(f"HUB_OIDC_ISSUER must be the token issuer's https URL; {problem}: got {issuer!r}.")


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_standard_secret(secret: str) -> None:
    encoded = secret[len(_STANDARD_SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        key = b""
    if len(key) < _MIN_SECRET_LENGTH:
        raise SettingsError(
            f"HUB_WEBHOOK_SECRET starts with {_STANDARD_SECRET_PREFIX}, so the rest must be the base64 of a key of "
            f"at least {_MIN_SECRET_LENGTH} bytes (a Standard Webhooks secret)."
        )


def _convert(key: str, raw: str, annotation: object, *, allow_zero: bool = False) -> Any:
    kind = str(annotation)
    if "tuple" in kind:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind == "int":
        value = _number(key, raw, int)
        if value < 0 or (value == 0 and not allow_zero):
            expected = "0 (never) or a positive integer" if allow_zero else "a positive integer"
            raise SettingsError(f"{key} must be {expected}; got {raw!r}.")
        return value
    if kind == "float":
        number = _number(key, raw, float)
        # nan compares false with everything: it would silently disable the deadline it sets.
        if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
            expected = "0 or a finite, positive number" if allow_zero else "a finite, positive number"
            raise SettingsError(f"{key} must be {expected} of seconds; got {raw!r}.")
        return number
    if "None" in kind and not raw.strip():
        return None
    return raw.strip()


def _number(key: str, raw: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(raw)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise SettingsError(f"{key} must be {expected}; got {raw!r}.") from None


def _check_url(key: str, url: str, schemes: tuple[str, ...]) -> None:
    scheme, sep, rest = url.partition("://")
    if not sep or (not rest and scheme not in ("unix",)):
        raise SettingsError(f"{key} must be a URL like {schemes[0]}://...; got {url!r}.")
    if scheme not in schemes:
        hint = ""
        if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
            hint = " Write postgresql+asyncpg:// (the hub uses asyncpg)."
        raise SettingsError(f"{key} has scheme {scheme!r}; expected one of {', '.join(schemes)}.{hint}")
