"""The peers' own venvs under bench/.peer-venvs/, installed from PyPI with pinned versions.

Django Channels' package is named `channels`, like ours: each peer gets a venv of its own and
never sees status-hub.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
VENVS = HERE.parent / ".peer-venvs"
PEERS = ("litestar", "django")


def python_of(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def ensure(peer: str) -> Path:
    """Create (or bring up to date) the venv of ``peer``; return its python."""
    if ready(peer):
        return python_of(peer)
    requirements = HERE / f"requirements-{peer}.txt"
    venv = VENVS / peer
    stamp = venv / ".installed"
    print(f"bench: installing the {peer} peer's venv into {venv} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python_of(peer)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    stamp.write_text(requirements.read_text())
    return python_of(peer)


def ensure_all() -> None:
    for peer in PEERS:
        ensure(peer)


def ready(peer: str) -> bool:
    """Whether the venv of ``peer`` is installed and current (``ensure`` would install nothing)."""
    requirements = HERE / f"requirements-{peer}.txt"
    stamp = VENVS / peer / ".installed"
    return stamp.exists() and stamp.read_text() == requirements.read_text()
