"""Fail the image's build when its environment holds a package the lock does not pin at that version.

The build installs pyproject.toml's runtime dependencies with requirements.lock as constraints: a
dependency the lock has never heard of (a stale lock) would be installed at whatever version the
index offers. This check turns that into a build error.

Usage: ``python check_lock.py LOCK [NAME...]``. The names are packages allowed in without a pin, each
reported: a lock made on one Python can lack what an environment marker adds on another (redis needs
async-timeout below Python 3.11.3, and pip-compile wrote the lock on a later 3.11)."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

# Installed by the build itself rather than from the lock.
NOT_LOCKED = frozenset({"status-hub", "pip", "setuptools", "wheel"})
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def normalize(name: str) -> str:
    """The PEP 503 form of a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[str, str]:
    """``name==version`` lines of a pip-compile lock file, by normalized name."""
    found: dict[str, str] = {}
    for line in lock.splitlines():
        match = _PIN.match(line.strip())
        if match:
            found[normalize(match.group(1))] = match.group(2)
    return found


def unlocked(installed: dict[str, str], locked: dict[str, str]) -> dict[str, str]:
    """By package: what is wrong with each one installed but not pinned, or pinned at another version."""
    problems: dict[str, str] = {}
    for name, version in sorted(installed.items()):
        pinned = locked.get(name)
        if name in NOT_LOCKED or pinned == version:
            continue
        if pinned is None:
            problems[name] = f"{name} {version} is installed but not in the lock"
        else:
            problems[name] = f"{name} {version} is installed but the lock pins {pinned}"
    return problems


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: check_lock.py LOCK [NAME...]", file=sys.stderr)
        return 2
    locked = pins(Path(argv[1]).read_text())
    allowed = {normalize(name) for name in argv[2:]}
    installed = {normalize(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    problems = unlocked(installed, locked)
    failed = False
    for name, problem in problems.items():
        if name in allowed and name not in locked:
            print(f"check_lock: {problem}; allowed on this build.")
        else:
            print(f"check_lock: {problem}.", file=sys.stderr)
            failed = True
    if failed:
        print("check_lock: re-pin with `make lock`.", file=sys.stderr)
        return 1
    pinned = len(installed.keys() - NOT_LOCKED - problems.keys())
    print(f"check_lock: {pinned} installed distributions at the versions the lock pins.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
