"""The tree shows the architecture: imports point one way, and no two modules share a name."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hub", "persistence", "channels", "migrations", "bench", "tests")

# Each part of hub/ with its rank: a module imports only from its own part or from lower ranks.
# http and live share a rank and must not import each other; both sit on runtime and domain.
HUB_RANKS = {
    "hub.settings": 0,
    "hub.domain": 1,
    "hub.runtime": 2,
    "hub.http": 3,
    "hub.live": 3,
    "hub.app": 4,
    "hub.process_setup": 5,
    "hub.cli": 6,
    "hub": 7,  # the package's front door re-exports create_app and Settings
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (TYPE_CHECKING and function-level imports too)."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # The names themselves: `from hub import process_setup` imports hub.process_setup.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _part(module: str) -> str | None:
    if module in HUB_RANKS:
        return module
    return next((part for part in HUB_RANKS if part != "hub" and module.startswith(part + ".")), None)


def _sources(*packages: str) -> list[Path]:
    """The project's own modules: not what lives under a hidden directory (the bench's peer venvs)."""
    return sorted(
        path
        for package in packages
        for path in (ROOT / package).rglob("*.py")
        if not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
    )


@pytest.mark.parametrize("path", _sources("hub"), ids=lambda p: str(p.relative_to(ROOT)))
def test_hub_imports_point_down(path: Path) -> None:
    own = _part(_module_name(path))
    assert own is not None, f"{path} belongs to no part of hub/; add it to HUB_RANKS."
    for imported in _imports(path):
        target = _part(imported)
        if target is None or target == own:
            continue
        assert HUB_RANKS[target] < HUB_RANKS[own], f"{_module_name(path)} ({own}) must not import {imported}"


@pytest.mark.parametrize("path", _sources("persistence", "channels"), ids=lambda p: str(p.relative_to(ROOT)))
def test_persistence_and_channels_stand_alone(path: Path) -> None:
    own = _module_name(path).split(".")[0]
    other = {"persistence": "channels", "channels": "persistence"}[own]
    for imported in _imports(path):
        root = imported.split(".")[0]
        assert root not in ("hub", "litestar", other), f"{_module_name(path)} must not import {imported}"


def test_every_hub_package_says_what_it_is_for() -> None:
    for init in sorted((ROOT / "hub").rglob("__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring, f"{init.relative_to(ROOT)} needs a docstring saying what the package is for."


def test_no_two_modules_share_a_file_name() -> None:
    # Package markers, pytest's conftest files and a package's __main__ are the same name by design.
    by_design = {"__init__.py", "conftest.py", "__main__.py"}
    names = Counter(path.name for path in _sources(*PACKAGES) if path.name not in by_design)
    shared = {name: count for name, count in names.items() if count > 1}
    assert not shared, f"Module names used more than once: {shared}"
