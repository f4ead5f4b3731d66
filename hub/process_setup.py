"""One process set-up for every way the hub runs (``serve``, each ``--workers`` worker, ``demo``):
logging, garbage-collector tuning and the uvicorn options, configured the same way in each."""

from __future__ import annotations

import gc
import logging.config
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Final

import uvicorn
from litestar import Litestar

from hub.app import create_app
from hub.live.client_frames import MAX_CLIENT_FRAME
from hub.live.transport import WebSocketProtocol
from hub.runtime.logs import VERBATIM_LOGGER
from hub.runtime.metrics import MULTIPROCESS_DIR_VARIABLE
from hub.settings import Settings

# Seconds the server gives open requests and sockets to finish on shutdown.
GRACEFUL_SHUTDOWN: Final = 5
_FORMATTERS: Final = {"text": "hub.runtime.logs.TextFormatter", "json": "hub.runtime.logs.JsonFormatter"}


def logging_config(level: str, log_format: str = "text") -> dict[str, Any]:
    """The whole process's logging: the hub's loggers at ``level``, and uvicorn's (``uvicorn``,
    ``uvicorn.error``, ``uvicorn.access``) through the same handler and formatter, so one stream has
    one format (``text`` or ``json``, HUB_LOG_FORMAT). Handed to uvicorn as ``log_config`` it is
    applied in every worker process too, where nothing else would configure the hub's loggers."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"hub": {"()": _FORMATTERS[log_format]}},
        "handlers": {"hub": {"class": "logging.StreamHandler", "formatter": "hub", "stream": "ext://sys.stderr"}},
        "loggers": {
            # uvicorn's loggers lose the handlers a previous configuration gave them and propagate
            # to the root's; uvicorn sets their levels from log_level itself.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
            # Alembic narrates every plugin it loads at INFO; its upgrades are still logged by hub.runtime.schema.
            "alembic": {"level": "WARNING"},
            # The embedded default's banner is shown whatever the level: it is how to reach the hub.
            VERBATIM_LOGGER: {"level": "INFO"},
        },
        "root": {"handlers": ["hub"], "level": level.upper()},
    }


def configure_logging(level: str, log_format: str = "text") -> None:
    """For a process that logs before (or without) uvicorn: the CLI, migrations, the banner."""
    logging.config.dictConfig(logging_config(level, log_format))
    route_stray_output()


def route_stray_output() -> None:
    """Python's warnings, and exceptions nothing can catch (in a thread, or ignored in a destructor),
    go through logging too, so a JSON stream has no line of another shape."""
    logging.captureWarnings(True)
    sys.unraisablehook = _log_unraisable
    threading.excepthook = _log_thread_exception


def _log_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    try:
        where = repr(unraisable.object)
    except Exception:
        where = f"<{type(unraisable.object).__name__}>"
    message = unraisable.err_msg or "Exception ignored in"
    logging.getLogger("py.unraisable").error("%s: %s", message, where, exc_info=unraisable.exc_value)


def _log_thread_exception(failed: threading.ExceptHookArgs) -> None:
    if failed.exc_type is SystemExit:
        return
    name = failed.thread.name if failed.thread is not None else "a thread"
    logging.getLogger("py.threads").error("Uncaught exception in %s.", name, exc_info=failed.exc_value)


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
        # uvicorn's line per request only at DEBUG: at INFO it cost a current poll three quarters
        # again, and /metrics counts requests by route and status. Errors are logged either way.
        "access_log": settings.log_level.upper() == "DEBUG",
        "log_level": settings.log_level.lower(),
        "log_config": logging_config(settings.log_level, settings.log_format),
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN,
    }


def build_app(settings: Settings) -> Litestar:
    """The app as a serving process runs it: built, then the start-up objects frozen out of the GC."""
    app = create_app(settings)
    tune_garbage_collector()
    return app


def worker_app() -> Litestar:
    """uvicorn's factory in each ``--workers`` process: the same HUB_* environment, the same set-up
    (uvicorn has applied ``log_config`` in this process already)."""
    route_stray_output()
    return build_app(Settings.from_env(os.environ))


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    options = {**server_options(settings), "host": host, "port": port}
    # uvicorn raises the SIGTERM it handled again once it has stopped, to end the process the way the
    # signal would have; by then the hub has drained and stopped cleanly, so the process exits 0. A
    # SIGTERM before uvicorn has taken over the signal (still starting) ends it at once, also with 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if workers > 1:
        with shared_metrics_dir():
            uvicorn.run("hub.process_setup:worker_app", factory=True, workers=workers, **options)
        return
    uvicorn.run(build_app(settings), **options)


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


@contextmanager
def shared_metrics_dir() -> Iterator[Path]:
    """A fresh directory where the workers write their metrics, for /metrics to sum; removed when
    ``serve`` ends. Set in the environment the workers inherit, before any of them starts."""
    with tempfile.TemporaryDirectory(prefix="status-hub-metrics-") as directory:
        previous = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
        os.environ[MULTIPROCESS_DIR_VARIABLE] = directory
        try:
            yield Path(directory)
        finally:
            if previous is None:
                os.environ.pop(MULTIPROCESS_DIR_VARIABLE, None)
            else:
                os.environ[MULTIPROCESS_DIR_VARIABLE] = previous
