"""One process set-up for every way the hub runs (``serve``, each ``--workers`` worker, ``demo``):
logging, garbage-collector tuning and the uvicorn options, configured the same way in each."""

from __future__ import annotations

import copy
import gc
import logging.config
import os
from typing import Any, Final

import uvicorn
from litestar import Litestar
from uvicorn.config import LOGGING_CONFIG

from hub.app import create_app
from hub.live.client_frames import MAX_CLIENT_FRAME
from hub.live.transport import WebSocketProtocol
from hub.settings import Settings

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Seconds the server gives open requests and sockets to finish on shutdown.
GRACEFUL_SHUTDOWN: Final = 5


def logging_config(level: str) -> dict[str, Any]:
    """uvicorn's own logging, plus the hub's loggers at ``level``. Handed to uvicorn as ``log_config``
    it is applied in every worker process too, where nothing else would configure the hub's loggers."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["hub"] = {"format": LOG_FORMAT}
    config["handlers"]["hub"] = {"class": "logging.StreamHandler", "formatter": "hub", "stream": "ext://sys.stderr"}
    config["root"] = {"handlers": ["hub"], "level": level.upper()}
    # Alembic narrates every plugin it loads at INFO; its upgrades are still logged by hub.runtime.schema.
    config["loggers"]["alembic"] = {"level": "WARNING"}
    return config


def configure_logging(level: str) -> None:
    """For a process that logs before (or without) uvicorn: the CLI, migrations, the banner."""
    logging.config.dictConfig(logging_config(level))


def tune_garbage_collector() -> None:
    """A full collection over thousands of sockets' objects stalls the loop for 100-300 ms, and that
    stall alone set the p99 of a wide fan-out. Everything alive after start-up is frozen out of
    collections, and full collections become rare; the hub makes few cycles."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)


def uvicorn_options() -> dict[str, Any]:
    """Websocket options every server of the hub runs with (also the tests' in-process servers)."""
    return {
        "ws": WebSocketProtocol,
        # Status JSON is tiny: permessage-deflate costs ~4x memory per socket for no gain.
        "ws_per_message_deflate": False,
        # A larger client frame is refused (close 1009) from its header, before it is buffered:
        # uvicorn's default of 16 MiB let 40 such frames take a hub to 900 MB.
        "ws_max_size": MAX_CLIENT_FRAME,
        # Protocol-level pings only find dead peers; the hub's own ping frames (HUB_PING_INTERVAL)
        # keep clients informed. Once a minute is enough for the former and halves idle traffic.
        "ws_ping_interval": 60.0,
        "ws_ping_timeout": 30.0,
    }


def server_options(settings: Settings) -> dict[str, Any]:
    """Everything but where to listen: the same for ``serve``, its workers and ``demo``."""
    return {
        **uvicorn_options(),
        "lifespan": "on",
        # uvicorn's line per request, at INFO: it cost a current poll three quarters again. The app
        # logs no requests either (tokens travel in headers); errors are still logged.
        "access_log": False,
        "log_level": settings.log_level.lower(),
        "log_config": logging_config(settings.log_level),
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN,
    }


def build_app(settings: Settings) -> Litestar:
    """The app as a serving process runs it: built, then the start-up objects frozen out of the GC."""
    app = create_app(settings)
    tune_garbage_collector()
    return app


def worker_app() -> Litestar:
    """uvicorn's factory in each ``--workers`` process: the same HUB_* environment, the same set-up."""
    return build_app(Settings.from_env(os.environ))


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    options = {**server_options(settings), "host": host, "port": port}
    if workers > 1:
        uvicorn.run("hub.process_setup:worker_app", factory=True, workers=workers, **options)
        return
    uvicorn.run(build_app(settings), **options)
