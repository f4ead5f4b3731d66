"""What /proc says about processes: CPU seconds, RSS, process trees, and the machine itself."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU of one process (0 when it is gone), plus that of its exited children."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # Fields after the command: state is [0], utime [11], stime [12], cutime [13], cstime [14].
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def system_seconds(pid: int) -> float:
    """System (kernel) CPU of one process, in clock ticks (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return int(fields[12]) / _TICKS


def on_cpu_seconds(pid: int) -> float:
    """Time the scheduler ran the process's threads (user and system together), to the nanosecond:
    clock ticks (10 ms) are too coarse to subtract an idle process's few milliseconds a second.
    Threads that exited are not counted (0 when the process is gone)."""
    total = 0
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (FileNotFoundError, ProcessLookupError):
        return 0


def children(pid: int) -> list[int]:
    """The whole tree under ``pid`` (uvicorn workers are children of the supervisor)."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            kids = []
        found.extend(kids)
        frontier.extend(kids)
    return found


def pids_with_argument(word: str) -> list[int]:
    """Processes whose command line mentions ``word``: Postgres backends show their database."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if word.encode() in f.read():
                    pids.append(int(entry))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return pids


def pids_named(name: str) -> list[int]:
    """Processes whose command name starts with ``name`` (postgres, redis-server)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().startswith(name):
                    pids.append(int(entry))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return pids


def service_cpu_seconds(name: str) -> float:
    """CPU of every process of a service, its exited children included.

    Postgres forks a backend per connection: when one exits, its time moves into the
    postmaster's cutime/cstime, so this total only ever grows and its deltas are exact.
    """
    return sum(cpu_seconds(pid, reaped_children=True) for pid in pids_named(name))


@dataclass(slots=True)
class CpuMeter:
    """CPU seconds used by a set of processes between ``start()`` and ``stop()``."""

    pids: list[int]
    _begin: dict[int, float] | None = None

    def start(self) -> CpuMeter:
        self._begin = {pid: cpu_seconds(pid) for pid in self.pids}
        return self

    def stop(self) -> float:
        begin = self._begin or {}
        # Only processes still alive count; the servers and generators measured here outlive the window.
        now = {pid: cpu_seconds(pid) for pid in self.pids}
        return round(sum(now[pid] - begin.get(pid, 0.0) for pid in self.pids if now[pid]), 3)


@dataclass(slots=True)
class ServiceMeter:
    """CPU seconds of a named service (postgres, redis-server) between ``start()`` and ``stop()``."""

    name: str
    _begin: float = 0.0

    def start(self) -> ServiceMeter:
        self._begin = service_cpu_seconds(self.name)
        return self

    def stop(self) -> float:
        return round(service_cpu_seconds(self.name) - self._begin, 3)


def machine() -> dict[str, object]:
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
