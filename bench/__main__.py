"""``python -m bench run --mode quick|full`` (and ``reconcile``, ``pollcost``): see bench/README.md."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bench.report import write_results
from bench.runner import Scale
from bench.suite import run_suite
from bench.workloads import WORKLOADS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="status-hub benchmarks.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="Run workloads against real servers and write bench/results/.")
    run.add_argument("--mode", choices=("quick", "full"), default="quick")
    run.add_argument("--only", default="", help=f"Comma-separated subset of: {', '.join(WORKLOADS)}.")
    run.add_argument("--peers", action="store_true", help="Include the peers in quick mode (full always does).")
    run.add_argument("--publish", action="store_true", help="Also write the table to bench/RESULTS.md.")
    commands.add_parser("venvs", help="Create the peers' venvs under bench/.peer-venvs/.")
    reconcile = commands.add_parser("reconcile", help="Time one reconcile at many sockets, in process.")
    reconcile.add_argument("--sockets", type=int, default=10_000)
    reconcile.add_argument("--agents", type=int, default=1_000)
    pollcost = commands.add_parser("pollcost", help="Hub CPU per REST poll, current (304) and changed (200).")
    pollcost.add_argument("--polls", type=int, default=20_000, help="Polls measured per phase.")
    pollcost.add_argument(
        "--dashboards", type=int, help="Dashboards, each on its own connection (default 100, 10 under callgrind)."
    )
    pollcost.add_argument("--rate", type=float, default=400.0, help="Polls per second in all; 0: closed loop.")
    pollcost.add_argument("--no-bare", action="store_true", help="Skip the bare uvicorn floor.")
    pollcost.add_argument("--callgrind", action="store_true", help="Count instructions under callgrind instead.")
    pollcost.add_argument("--profile", type=Path, help="Also py-spy the hub: raw stacks to <stem>-304/-200.<ext>.")
    args = parser.parse_args(argv)

    if args.command == "reconcile":
        from bench.reconcile_cost import measure, report

        print(report(asyncio.run(measure(sockets=args.sockets, agents=args.agents))))
        return 0
    if args.command == "pollcost":
        from bench.poll_cost import measure as measure_polls
        from bench.poll_cost import report as report_polls

        results = asyncio.run(
            measure_polls(
                polls=args.polls,
                dashboards=args.dashboards or (10 if args.callgrind else 100),
                rate=args.rate,
                bare=not args.no_bare,
                callgrind=args.callgrind,
                profile=args.profile,
            )
        )
        print(report_polls(results))
        return 0
    if args.command == "venvs":
        from bench.peers.venvs import ensure_all

        ensure_all()
        return 0
    scale = Scale.quick() if args.mode == "quick" else Scale.full()
    names = [n for n in args.only.split(",") if n] or [
        n for n in WORKLOADS if n != "peers" or args.mode == "full" or args.peers
    ]
    result = asyncio.run(run_suite(args.mode, scale, names))
    json_path, md_path = write_results(result, publish=args.publish)
    print(md_path.read_text())
    print(f"bench: wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
