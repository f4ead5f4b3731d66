from __future__ import annotations

import pytest

from hub.settings import DEFAULT_DATABASE_URL, Settings, SettingsError

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
SECRETS = {
    "HUB_WEBHOOK_SECRET": "w" * 20,
    "HUB_JWT_SECRET": "j" * 32,
    "HUB_ADMIN_TOKEN": "a" * 20,
}


def test_nothing_configured_is_the_embedded_default_with_generated_secrets() -> None:
    settings = Settings.from_env({"PATH": "/bin"})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.is_embedded
    assert settings.generated_secrets == ("HUB_WEBHOOK_SECRET", "HUB_JWT_SECRET", "HUB_ADMIN_TOKEN")
    assert len({settings.webhook_secret, settings.jwt_secret, settings.admin_token}) == 3
    assert Settings.from_env({}).webhook_secret != settings.webhook_secret


def test_zero_retention_keeps_events_forever() -> None:
    assert Settings.from_env({"HUB_EVENT_RETENTION": "0"}).event_retention == 0
    assert Settings.from_env({}).event_retention == 30 * 24 * 3600


def test_secrets_are_not_in_repr() -> None:
    settings = Settings.from_env({"HUB_DATABASE_URL": PG, **SECRETS})
    assert "w" * 20 not in repr(settings)
    assert settings.generated_secrets == ()


def test_values_are_converted() -> None:
    settings = Settings.from_env(
        {
            "HUB_DATABASE_URL": PG,
            "HUB_REDIS_URL": "redis://127.0.0.1:6379/0",
            "HUB_ALLOWED_ORIGINS": "https://a.example, https://b.example",
            "HUB_DB_POOL_SIZE": "4",
            "HUB_SEND_TIMEOUT": "2.5",
            **SECRETS,
        }
    )
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.db_pool_size == 4
    assert settings.send_timeout == 2.5
    assert not settings.is_embedded


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"HUB_DATABSE_URL": PG}, "HUB_DATABSE_URL"),
        ({"HUB_DATABASE_URL": "postgresql://x/y", **SECRETS}, "HUB_DATABASE_URL"),
        ({"HUB_DATABASE_URL": "not a url"}, "HUB_DATABASE_URL"),
        ({"HUB_REDIS_URL": "http://127.0.0.1"}, "HUB_REDIS_URL"),
        ({"HUB_DB_POOL_SIZE": "many"}, "HUB_DB_POOL_SIZE"),
        ({"HUB_DB_POOL_SIZE": "0"}, "HUB_DB_POOL_SIZE"),
        ({"HUB_SEND_TIMEOUT": "-1"}, "HUB_SEND_TIMEOUT"),
        ({"HUB_SEND_TIMEOUT": "nan"}, "HUB_SEND_TIMEOUT"),
        ({"HUB_PING_INTERVAL": "nan"}, "HUB_PING_INTERVAL"),
        ({"HUB_SEND_TIMEOUT": "inf"}, "HUB_SEND_TIMEOUT"),
        ({"HUB_RECONCILE_INTERVAL": "0.5"}, "HUB_RECONCILE_INTERVAL"),
        ({"HUB_EVENT_RETENTION": "-1"}, "HUB_EVENT_RETENTION"),
        ({"HUB_ALLOWED_ORIGINS": "dash.example.com"}, "HUB_ALLOWED_ORIGINS"),
        ({"HUB_LOG_LEVEL": "LOUD"}, "HUB_LOG_LEVEL"),
        ({"HUB_PING_INTERVAL": "90"}, "HUB_PING_INTERVAL"),
        ({"HUB_DATABASE_URL": PG}, "HUB_WEBHOOK_SECRET"),
        ({"HUB_DATABASE_URL": PG, **SECRETS, "HUB_JWT_SECRET": "short"}, "HUB_JWT_SECRET"),
        ({"HUB_LOG_FORMAT": "yaml"}, "HUB_LOG_FORMAT"),
        ({"HUB_PUBLIC_URL": "status.example.com"}, "HUB_PUBLIC_URL"),
        ({"HUB_PUBLIC_URL": "wss://status.example.com"}, "HUB_PUBLIC_URL"),
        ({"HUB_PUBLIC_URL": "https://status.example.com/hub"}, "HUB_PUBLIC_URL"),
        ({"HUB_PUBLIC_URL": "https://status.example.com?x=1"}, "HUB_PUBLIC_URL"),
        ({"HUB_PUBLIC_URL": "https://user@status.example.com"}, "HUB_PUBLIC_URL"),
        ({"HUB_PUBLIC_URL": "https://"}, "HUB_PUBLIC_URL"),
    ],
    ids=[
        "typo",
        "psycopg-url",
        "not-a-url",
        "redis-scheme",
        "pool-not-int",
        "pool-zero",
        "negative-timeout",
        "nan-timeout",
        "nan-ping",
        "infinite-timeout",
        "reconcile-too-often",
        "negative-retention",
        "origin-without-scheme",
        "log-level",
        "ping-too-rare",
        "missing-secret-on-postgres",
        "short-secret",
        "log-format",
        "public-url-without-scheme",
        "public-url-websocket-scheme",
        "public-url-with-path",
        "public-url-with-query",
        "public-url-with-user",
        "public-url-without-host",
    ],
)
def test_invalid_configuration_names_the_variable(environ: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(environ)


def test_log_format_defaults_to_text_and_takes_json() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"HUB_LOG_FORMAT": "JSON"}).log_format == "json"


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://status.example.com", "https://status.example.com"),
        ("https://Status.Example.com/", "https://status.example.com"),
        ("https://status.example.com:443", "https://status.example.com"),
        ("http://status.example.com:8080", "http://status.example.com:8080"),
        ("https://[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_the_public_url_is_kept_as_browsers_send_origin(raw: str, origin: str) -> None:
    assert Settings.from_env({"HUB_PUBLIC_URL": raw}).public_url == origin


def test_no_public_url_by_default() -> None:
    assert Settings.from_env({}).public_url is None
    assert Settings.from_env({"HUB_PUBLIC_URL": ""}).public_url is None


OIDC = {"HUB_OIDC_AUDIENCE": "status-hub", "HUB_OIDC_REPOSITORIES": "1001, 1002"}


def test_the_schemes_follow_from_what_is_configured() -> None:
    signatures_only = Settings.from_env({"HUB_DATABASE_URL": PG, **SECRETS})
    assert (signatures_only.signatures_enabled, signatures_only.oidc_enabled) == (True, False)
    both = Settings.from_env({"HUB_DATABASE_URL": PG, **SECRETS, **OIDC})
    assert (both.signatures_enabled, both.oidc_enabled) == (True, True)
    assert both.oidc_issuer == "https://token.actions.githubusercontent.com"
    assert both.oidc_repositories == (1001, 1002)
    # With OIDC on, the webhook secret may be left out, on Postgres and on the embedded default alike.
    without_secret = {key: value for key, value in SECRETS.items() if key != "HUB_WEBHOOK_SECRET"}
    oidc_only = Settings.from_env({"HUB_DATABASE_URL": PG, **without_secret, **OIDC})
    assert (oidc_only.signatures_enabled, oidc_only.oidc_enabled) == (False, True)
    embedded = Settings.from_env(OIDC)
    assert not embedded.signatures_enabled and "HUB_WEBHOOK_SECRET" not in embedded.generated_secrets


def test_a_loopback_issuer_may_be_plain_http() -> None:
    for issuer in ("http://127.0.0.1:8123", "http://localhost:8123/issuer", "http://[::1]:8123"):
        assert Settings.from_env({**OIDC, "HUB_OIDC_ISSUER": issuer}).oidc_issuer == issuer


def test_a_standard_webhooks_secret_is_accepted() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert Settings.from_env({"HUB_WEBHOOK_SECRET": secret}).webhook_secret == secret


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"HUB_DATABASE_URL": PG, "HUB_JWT_SECRET": "j" * 32, "HUB_ADMIN_TOKEN": "a" * 20}, "HUB_OIDC_AUDIENCE"),
        ({"HUB_OIDC_AUDIENCE": "status-hub"}, "HUB_OIDC_REPOSITORIES"),
        ({"HUB_OIDC_REPOSITORIES": "1001"}, "HUB_OIDC_AUDIENCE"),
        ({**OIDC, "HUB_OIDC_REPOSITORIES": "acme/infra"}, "HUB_OIDC_REPOSITORIES"),
        ({**OIDC, "HUB_OIDC_REPOSITORIES": "0"}, "HUB_OIDC_REPOSITORIES"),
        ({**OIDC, "HUB_OIDC_ISSUER": "http://token.example.com"}, "HUB_OIDC_ISSUER"),
        ({**OIDC, "HUB_OIDC_ISSUER": "token.actions.githubusercontent.com"}, "HUB_OIDC_ISSUER"),
        ({**OIDC, "HUB_OIDC_ISSUER": "https://token.example.com?x=1"}, "HUB_OIDC_ISSUER"),
        ({**OIDC, "HUB_OIDC_ISSUER": "https://token.example.com:port"}, "HUB_OIDC_ISSUER"),
        ({"HUB_WEBHOOK_SECRET": "whsec_not base64 at all!"}, "HUB_WEBHOOK_SECRET"),
        ({"HUB_WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "HUB_WEBHOOK_SECRET"),
    ],
    ids=[
        "no-credential-on-postgres",
        "audience-without-repositories",
        "repositories-without-audience",
        "repository-name-not-id",
        "repository-zero",
        "plain-http-issuer",
        "issuer-without-scheme",
        "issuer-with-query",
        "issuer-bad-port",
        "whsec-not-base64",
        "whsec-short-key",
    ],
)
def test_invalid_callback_settings_name_the_variable(environ: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(environ)
