"""``python -m bench run --mode quick|full``: see bench/README.md."""

from __future__ import annotations

import argparse
import asyncio
import sys

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
    args = parser.parse_args(argv)

    if args.command == "reconcile":
        from bench.reconcile_cost import measure, report

        print(report(asyncio.run(measure(sockets=args.sockets, agents=args.agents))))
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
