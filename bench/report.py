"""The result files: the JSON of a run, and a markdown table of its figures against the targets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.runner import RESULTS

PUBLISHED = Path(__file__).parent / "RESULTS.md"

Row = tuple[str, str, str, str]  # target, figure, met, where


def _get(result: dict[str, Any], *path: Any) -> Any:
    node: Any = result["workloads"]
    for key in path:
        if isinstance(key, int) and isinstance(node, list):
            node = node[key] if key < len(node) else None
        elif callable(key) and isinstance(node, list):
            node = next((item for item in node if key(item)), None)
        elif isinstance(node, dict):
            node = node.get(key)
        else:
            return None
        if node is None:
            return None
    return node


def _row(target: str, value: Any, ok: Callable[[Any], bool], fmt: str, where: str) -> Row:
    if value is None:
        return (target, "not run", "-", where)
    return (target, fmt.format(value), "met" if ok(value) else "**missed**", where)


def _width(width: int) -> Callable[[dict[str, Any]], bool]:
    return lambda step: bool(step.get("width") == width)


def _rate(rate: int) -> Callable[[dict[str, Any]], bool]:
    return lambda step: bool(step.get("rate") == rate)


def target_rows(result: dict[str, Any]) -> list[Row]:
    rows = [
        _row(
            "callback-to-dashboard p99 <= 25 ms, 1k subscribers",
            _get(result, "worst", "steps", _width(1000), "delivery", "p99_ms"),
            lambda v: v <= 25,
            "{} ms",
            "worst, 1k on one agent",
        ),
        _row(
            "last subscriber of a 10k-wide update <= 150 ms (p99)",
            _get(result, "worst", "steps", _width(10000), "last_subscriber", "p99_ms"),
            lambda v: v <= 150,
            "{} ms",
            "worst, 10k on one agent",
        ),
    ]
    realistic = _get(result, "realistic", "steps", _rate(200))
    if realistic is not None:
        value = (realistic["delivery"]["p99_ms"], realistic["lost_sockets"])
        rows.append(
            _row(
                "realistic 200 callbacks/s: p99 <= 25 ms, no loss",
                value,
                lambda v: v[0] <= 25 and v[1] == 0,
                "p99 {0[0]} ms, {0[1]} lost",
                "realistic",
            )
        )
    else:
        rows.append(("realistic 200 callbacks/s: p99 <= 25 ms, no loss", "not run", "-", "realistic"))
    runs = _get(result, "ingestion", "runs") or []
    best = max(runs, key=lambda r: r["best_rate_at_p99_25ms"], default=None)
    rows.append(
        _row(
            ">= 1,000 callbacks/s at HTTP p99 <= 25 ms",
            best and (best["best_rate_at_p99_25ms"], best["workers"]),
            lambda v: v[0] >= 1000,
            "{0[0]}/s ({0[1]} worker(s))",
            "ingestion",
        )
    )
    rows.append(
        _row(
            "callback p99 <= 10 ms during a 1k-wide broadcast",
            _get(result, "fanout", "during_broadcast", "http", "p99_ms"),
            lambda v: v <= 10,
            "{} ms",
            "fanout",
        )
    )
    idle = _get(result, "idle", "steps") or []
    largest = idle[-1] if idle else None
    rows.append(
        _row(
            "<= 20 KiB RSS per idle socket",
            largest and (largest["rss_kib_per_socket"], largest["sockets"]),
            lambda v: v[0] <= 20,
            "{0[0]} KiB at {0[1]} sockets",
            "idle",
        )
    )
    rows.append(
        _row(
            "10k sockets on one process at < 5% idle CPU",
            _get(result, "idle", "steps", lambda s: s["sockets"] == 10000, "idle_cpu_share"),
            lambda v: v < 0.05,
            "{:.1%}",
            "idle",
        )
    )
    rows.extend(polling_rows(result))
    ahead = _get(result, "peers", "ahead")
    rows.append(_row("ahead of both peers on p99 and CPU per delivery", ahead, bool, "{}", "peers"))
    return rows


def _naive(value: Any, unit: str = "") -> str:
    """The naive poller's figure from the same run, to show beside the hub's."""
    return "not run" if value is None else f"{value}{unit}"


def polling_rows(result: dict[str, Any]) -> list[Row]:
    """The polling targets: the hub's figures, each with the naive poller's beside it (same run)."""
    dashboards = _get(result, "polling", "dashboards")
    where = f"polling, {dashboards} dashboards" if dashboards else "polling"
    hub: dict[str, Any] = _get(result, "polling", "hub", "mixed") or {}
    naive: dict[str, Any] = _get(result, "polling", "baseline", "mixed") or {}
    naive_answers = f"{naive['answered']}/{naive['polls']} answered, {naive['errors']} errors" if naive else None
    naive_callbacks = naive.get("callbacks") or {}
    per_304 = _get(result, "polling", "hub_ms_per_304")
    per_read = _get(result, "polling", "baseline_ms_per_poll")
    ratio = _get(result, "polling", "baseline_vs_304_x")
    answers: tuple[Any, ...] | None = None
    staleness: tuple[Any, ...] | None = None
    p99: tuple[Any, ...] | None = None
    callbacks: tuple[Any, ...] | None = None
    if hub:
        answers = (hub["answered"], hub["polls"], hub["errors"], _naive(naive_answers))
        staleness = (
            hub["staleness"]["mean_ms"],
            hub["staleness"]["unseen"],
            _naive(naive.get("staleness", {}).get("mean_ms"), " ms"),
        )
        p99 = (hub["latency"]["p99_ms"], _naive(naive.get("latency", {}).get("p99_ms"), " ms"))
        callbacks = (
            hub["callbacks"]["errors"],
            hub["callbacks"]["http"]["p99_ms"],
            _naive(naive_callbacks.get("http", {}).get("p99_ms"), " ms"),
        )
    return [
        _row(
            "1,000 pollers every 2 s (If-None-Match): every poll answered, 0 errors",
            answers,
            lambda v: v[0] == v[1] and v[2] == 0,
            "{0[0]}/{0[1]} answered, {0[2]} errors (naive poller: {0[3]})",
            where,
        ),
        _row(
            "poll staleness mean <= 1.1 s",
            staleness,
            lambda v: v[0] <= 1100 and v[1] == 0,
            "{0[0]} ms, {0[1]} changes unseen (naive poller {0[2]})",
            where,
        ),
        _row("poll p99 <= 10 ms", p99, lambda v: v[0] <= 10, "{0[0]} ms (naive poller {0[1]})", where),
        _row(
            "callbacks during polling: 0 errors, p99 <= 25 ms",
            callbacks,
            lambda v: v[0] == 0 and v[1] <= 25,
            "{0[0]} errors, p99 {0[1]} ms (naive poller p99 {0[2]})",
            where,
        ),
        _row("hub CPU per current poll (304) <= 0.15 ms", per_304, lambda v: v <= 0.15, "{} ms", where),
        _row(
            "current poll >= 4x cheaper in server CPU than the naive poller's read",
            ratio and (ratio, per_304, per_read),
            lambda v: v[0] >= 4,
            "{0[0]}x ({0[1]} ms vs {0[2]} ms)",
            where,
        ),
        _row(
            "hub CPU per changed poll (200) <= 0.5 ms",
            _get(result, "polling", "hub_ms_per_200"),
            lambda v: v <= 0.5,
            "{} ms",
            where,
        ),
        _row(
            "push >= 20x cheaper in hub CPU than 2 s polling",
            _get(result, "polling", "push_cheaper_x"),
            lambda v: v >= 20,
            "{}x",
            where,
        ),
    ]


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    from bench.tables import workload_tables

    machine = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    parts = [
        f"# status-hub bench ({result['mode']} mode, {result['date']})",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}. Hub pinned to core 0, load generator to core 1.",
        f"Versions: {versions}.",
        f"Command: `{result['command']}` ({result['elapsed_s']} s).",
        "",
        "## Targets",
        "",
        _table(["target", "measured", "", "workload"], [list(r) for r in target_rows(result)]),
        "",
        workload_tables(result),
    ]
    return "\n".join(parts) + "\n"


def write_results(result: dict[str, Any], *, publish: bool = False) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = result["date"].replace(":", "").replace("+0000", "Z")
    json_path = RESULTS / f"bench-{result['mode']}-{stamp}.json"
    md_path = json_path.with_suffix(".md")
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    md_path.write_text(text)
    if publish:
        PUBLISHED.write_text(text)
    return json_path, md_path
