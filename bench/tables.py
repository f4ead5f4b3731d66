"""Per-workload markdown tables of a result."""

from __future__ import annotations

from typing import Any


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join("-" if c is None else str(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


def _valid(window: dict[str, Any]) -> str:
    util = f"{window['generator_util']:.0%}"
    return util if window["valid"] else f"{util} INVALID"


def _push_rows(label: str, step: dict[str, Any]) -> list[Any]:
    d, last, w = step["delivery"], step["last_subscriber"], step["window"]
    return [
        label,
        d["p50_ms"],
        d["p99_ms"],
        d["max_ms"],
        last["p99_ms"],
        step["http"]["p99_ms"],
        step["deliveries_per_s"],
        f"{step['lost_sockets']} / {step['errors']}",
        w["server_cpu_s"],
        step["server_cpu_us_per_delivery"],
        w["server_rss_mib"],
        _valid(w),
    ]


_PUSH = [
    "step",
    "p50 ms",
    "p99 ms",
    "max ms",
    "last-sub p99 ms",
    "HTTP p99 ms",
    "deliveries/s",
    "lost / errors",
    "hub CPU s",
    "hub us/delivery",
    "hub RSS MiB",
    "generator",
]


def workload_tables(result: dict[str, Any]) -> str:
    w = result["workloads"]
    out: list[str] = []
    if "idle" in w:
        rows = [
            [
                s["sockets"],
                s["rss_mib"],
                s["rss_kib_per_socket"],
                f"{s['idle_cpu_share']:.2%}",
                s["window"]["wall_s"],
                _valid(s["window"]),
            ]
            for s in w["idle"]["steps"]
        ]
        out += [
            "## Idle capacity",
            "",
            _table(["sockets", "hub RSS MiB", "KiB/socket", "idle CPU", "window s", "generator"], rows),
            "",
        ]
    if "realistic" in w:
        rows = [_push_rows(f"{s['rate']}/s", s) for s in w["realistic"]["steps"]]
        out += [
            f"## Realistic: {w['realistic']['sockets']} sockets over {w['realistic']['agents']} agents",
            "",
            _table(_PUSH, rows),
            "",
        ]
    if "cluster" in w:
        c = w["cluster"]
        rows = [
            [*_push_rows(f"{s['rate']}/s, {broker}", s), s["window"]["redis_cpu_s"]]
            for broker in ("redis", "cluster")
            for s in c[broker]["steps"]
        ]
        out += [
            f"## Realistic on one Redis and on a Redis Cluster ({c['shards']} shards): "
            f"{c['sockets']} sockets over {c['agents']} agents",
            "",
            _table([*_PUSH, "Redis CPU s"], rows),
            "",
        ]
    if "worst" in w:
        rows = [_push_rows(f"{s['width']} wide, {s['rate']:.0f}/s", s) for s in w["worst"]["steps"]]
        out += ["## Worst case: every socket on one agent", "", _table(_PUSH, rows), ""]
    if "ingestion" in w:
        rows = [
            [
                r["workers"],
                s["rate"],
                s["callbacks_per_s"],
                s["http"]["p50_ms"],
                s["http"]["p99_ms"],
                s["http"]["max_ms"],
                s["errors"],
                s["window"]["server_cpu_s"],
                s["window"]["postgres_cpu_s"],
                _valid(s["window"]),
            ]
            for r in w["ingestion"]["runs"]
            for s in r["steps"]
        ]
        best = ", ".join(f"{r['workers']} worker(s): {r['best_rate_at_p99_25ms']}/s" for r in w["ingestion"]["runs"])
        out += [
            "## Ingestion (no subscribers)",
            "",
            f"Highest rate at HTTP p99 <= 25 ms: {best}.",
            "",
            _table(
                [
                    "workers",
                    "offered/s",
                    "done/s",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "errors",
                    "hub CPU s",
                    "Postgres CPU s",
                    "generator",
                ],
                rows,
            ),
            "",
        ]
    if "fanout" in w:
        f = w["fanout"]
        rows = [
            [
                name,
                f[key]["callbacks_per_s"],
                f[key]["http"]["p50_ms"],
                f[key]["http"]["p99_ms"],
                f[key]["http"]["max_ms"],
                f[key]["errors"],
                _valid(f[key]["window"]),
            ]
            for name, key in (("alone", "alone"), ("during broadcast", "during_broadcast"))
        ]
        b = f["broadcast"]
        out += [
            f"## Fan-out vs ingestion: {f['background_rate']} callbacks/s on quiet agents, "
            f"{f['broadcasts_per_s']}/s broadcasts to {f['width']} sockets",
            "",
            _table(["background callbacks", "done/s", "p50 ms", "p99 ms", "max ms", "errors", "generator"], rows),
            "",
            f"Broadcast deliveries: {b['delivery']['p99_ms']} ms p99, last subscriber "
            f"{b['last_subscriber']['p99_ms']} ms p99, {b['lost_sockets']} lost.",
            "",
        ]
    if "polling" in w:
        out += [polling_table(w["polling"]), ""]
    if "peers" in w and w["peers"].get("servers"):
        from bench.workloads.peers import peer_table

        out += [peer_table(w["peers"]), ""]
    return "\n".join(out)


_POLLING = [
    "server",
    "window",
    "polls",
    "200",
    "304",
    "503",
    "other",
    "no answer",
    "poll p50 ms",
    "poll p99 ms",
    "staleness mean ms",
    "staleness p99 ms",
    "callback errors",
    "callback p99 ms",
    "server CPU",
    "Postgres CPU",
    "server ms/poll",
    "Postgres ms/poll",
    "generator",
]


def _poll_row(server: str, name: str, window: dict[str, Any]) -> list[Any]:
    statuses = window["statuses"]
    known = sum(statuses.get(code, 0) for code in ("200", "304", "503"))
    staleness = window.get("staleness") or {}
    callbacks = window.get("callbacks") or {}
    return [
        server,
        name,
        window["polls"],
        statuses.get("200", 0),
        statuses.get("304", 0),
        statuses.get("503", 0),
        window["answered"] - known,
        window["transport_errors"],
        window["latency"]["p50_ms"],
        window["latency"]["p99_ms"],
        staleness.get("mean_ms"),
        staleness.get("p99_ms"),
        callbacks.get("errors"),
        callbacks.get("http", {}).get("p99_ms"),
        f"{window['server_cpu_share']:.1%}",
        f"{window['postgres_cpu_share']:.1%}",
        window["server_cpu_ms_per_poll"],
        window["postgres_cpu_ms_per_poll"],
        _valid(window["window"]),
    ]


_WINDOWS = {
    "mixed": "mixed: polls (If-None-Match) + changes",
    "current": "current: all 304",
    "full": "full reads: all 200",
}


def polling_table(p: dict[str, Any]) -> str:
    rows = [
        _poll_row(side["name"], _WINDOWS[key], side[key])
        for side in (p["hub"], p["baseline"])
        for key in _WINDOWS
        if key in side
    ]
    push = p["push"]
    push_row: list[Any] = ["status-hub", "push: websockets + changes"]
    push_row += [None] * 8  # no polls
    push_row += [
        push["staleness"]["mean_ms"],
        push["staleness"]["p99_ms"],
        push["errors"],
        push["http"]["p99_ms"],
        f"{push['server_cpu_share']:.1%}",
        f"{push['postgres_cpu_share']:.1%}",
        None,
        None,
        _valid(push["window"]),
    ]
    rows.append(push_row)
    return "\n".join(
        [
            f"## Polling: {p['dashboards']} dashboards over {p['agents']} agents, {p['changes_per_s']} changes/s, "
            f"a poll every {p['poll_interval_s']} s, against the naive poller (one SELECT per poll)",
            "",
            _table(_POLLING, rows),
            "",
            f"Server CPU per poll: status-hub {p['hub_ms_per_304']} ms current (304), {p['hub_ms_per_200']} ms "
            f"changed (200); the naive poller {p['baseline_ms_per_poll']} ms, {p['baseline_vs_304_x']}x a current "
            f"poll and {p['baseline_vs_200_x']}x a changed one. Push costs {p['push_cheaper_x']}x less hub CPU "
            "per second than the hub's polling.",
        ]
    )
