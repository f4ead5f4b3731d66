"""HUB_REDIS_CLUSTER_NODES: seed nodes of a Redis Cluster, instead of HUB_REDIS_URL."""

from __future__ import annotations

import pytest

from hub.settings import Settings, SettingsError, cluster_node_address

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
SECRETS = {
    "HUB_WEBHOOK_SECRET": "w" * 20,
    "HUB_JWT_SECRET": "j" * 32,
    "HUB_ADMIN_TOKEN": "a" * 20,
}


def test_seed_nodes_are_read_as_a_list() -> None:
    settings = Settings.from_env(
        {"HUB_DATABASE_URL": PG, "HUB_REDIS_CLUSTER_NODES": "10.0.0.1:7000, redis-2:7001,[::1]:7002", **SECRETS}
    )
    assert settings.redis_cluster_nodes == ("10.0.0.1:7000", "redis-2:7001", "[::1]:7002")
    assert [cluster_node_address(node) for node in settings.redis_cluster_nodes] == [
        ("10.0.0.1", 7000),
        ("redis-2", 7001),
        ("::1", 7002),
    ]
    assert settings.uses_redis
    assert settings.redis_url is None


def test_a_cluster_counts_as_redis_on_sqlite_too() -> None:
    settings = Settings.from_env({"HUB_REDIS_CLUSTER_NODES": "127.0.0.1:7000"})
    assert settings.uses_redis
    assert not settings.is_embedded


def test_both_redis_settings_is_an_error_that_says_so() -> None:
    environ = {"HUB_REDIS_URL": "redis://127.0.0.1:6379/0", "HUB_REDIS_CLUSTER_NODES": "127.0.0.1:7000"}
    with pytest.raises(SettingsError, match="HUB_REDIS_URL and HUB_REDIS_CLUSTER_NODES are both set; set only one"):
        Settings.from_env(environ)


@pytest.mark.parametrize(
    "value",
    ["127.0.0.1", "127.0.0.1:", ":7000", "127.0.0.1:port", "127.0.0.1:0", "127.0.0.1:65536", "redis://h:7000"],
    ids=["no-port", "empty-port", "no-host", "port-not-a-number", "port-zero", "port-too-high", "a-url"],
)
def test_a_malformed_seed_node_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match=r"^HUB_REDIS_CLUSTER_NODES must list seed nodes .* got '"):
        Settings.from_env({"HUB_REDIS_CLUSTER_NODES": value})
