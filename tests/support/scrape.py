"""Reading a hub's `/metrics` in tests: the Prometheus text parsed into samples by name and labels."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Samples", "metrics_of", "parse", "value"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[set[str], Samples]:
    """The metric families' names, and every sample's value by (name, sorted labels)."""
    families = list(text_string_to_metric_families(text))
    samples: Samples = {}
    for family in families:
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return {family.name for family in families}, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the hub has not exposed it (a labelled child never touched)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def metrics_of(client: httpx.AsyncClient, **headers: str) -> tuple[set[str], Samples]:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)
