"""The ``status-hub`` console script and its user tools: serve, migrate, demo, simulate."""

from hub.cli.commands import main

__all__ = ["main"]
