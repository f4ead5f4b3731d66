"""Running a chosen set of workloads in one run, with the metadata a result needs."""

from __future__ import annotations

import datetime
import shlex
import sys
import time
from importlib import metadata
from typing import Any

from bench import procs
from bench.fleet import pin_here
from bench.runner import Scale, open_run
from bench.workloads import WORKLOADS

_PACKAGES = ("litestar", "uvicorn", "websockets", "msgspec", "redis", "sqlalchemy", "asyncpg", "picows")


def versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


async def run_suite(mode: str, scale: Scale, names: list[str], *, pin: bool = True) -> dict[str, Any]:
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise ValueError(f"Unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}.")
    if pin:
        pin_here()
    started = time.monotonic()
    result: dict[str, Any] = {
        "mode": mode,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        # The venv's python by its usual relative name: no machine path in a published result.
        "command": shlex.join([".venv/bin/python", "-m", "bench", *sys.argv[1:]]),
        "machine": procs.machine(),
        "versions": versions(),
        "scale": {k: getattr(scale, k) for k in scale.__dataclass_fields__},
        "workloads": {},
    }
    async with open_run(scale) as run:
        for name in names:
            t0 = time.monotonic()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            outcome = await WORKLOADS[name](run)
            outcome["elapsed_s"] = round(time.monotonic() - t0, 1)
            result["workloads"][name] = outcome
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result
