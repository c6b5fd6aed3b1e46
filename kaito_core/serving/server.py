"""Serve the app with uvicorn: ``run(engine, settings, host=..., port=...)``.

SIGTERM (and Ctrl-C) is uvicorn's graceful shutdown: the listening socket closes at once, in-flight
requests (streams included) get ``settings.grace_period`` seconds to finish, then the rest is cancelled
and the engine is closed.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time

import uvicorn

from kaito_core.plugins import Engine
from kaito_core.serving.app import create_app
from kaito_core.serving.settings import ServerSettings

log = logging.getLogger("kaito.serving")


class LoadFailed(RuntimeError):
    """The model did not load or could not generate; the server stopped."""


def build_server(
    engine: Engine,
    settings: ServerSettings,
    *,
    host: str = "0.0.0.0",  # noqa: S104 - a pod serves its Service
    port: int = 5000,
    log_level: str = "info",
) -> uvicorn.Server:
    """A uvicorn Server for the app; ``server.run()`` (blocking) or ``await server.serve()``."""
    failures: list[BaseException] = []
    server: uvicorn.Server

    def stop_on_failure(exc: BaseException) -> None:
        # A pod whose model cannot load should crash (and be seen crashing), not sit at 503 forever.
        failures.append(exc)
        server.should_exit = True

    if settings.on_load_failure is None:
        settings = dataclasses.replace(settings, on_load_failure=stop_on_failure)
    app = create_app(engine, settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=max(1, int(settings.grace_period)),
        # The access log shows method, path and status only; Authorization headers are never logged.
        access_log=log_level.lower() == "debug",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    server.load_failures = failures  # type: ignore[attr-defined]
    return server


def run(
    engine: Engine,
    settings: ServerSettings,
    *,
    host: str = "0.0.0.0",  # noqa: S104 - a pod serves its Service
    port: int = 5000,
    log_level: str = "info",
) -> None:
    """Serve until SIGTERM/SIGINT. Raises LoadFailed when the model could not be loaded."""
    server = build_server(engine, settings, host=host, port=port, log_level=log_level)
    server.run()
    failures: list[BaseException] = server.load_failures  # type: ignore[attr-defined]
    if failures:
        raise LoadFailed(str(failures[0])) from failures[0]


class RunningServer:
    """A server started by ``start_in_thread``: its URL, its app state, and ``stop()``."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int) -> None:
        self.server = server
        self.thread = thread
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start_in_thread(
    engine: Engine,
    settings: ServerSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    timeout: float = 60.0,
) -> RunningServer:
    """Serve in a background thread (tests, `kaito run`); returns once the socket listens.

    Port 0 picks a free port. The model may still be loading: poll /health for 200.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = build_server(engine, settings, host=host, port=bound_port, log_level=log_level)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="kaito-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    return RunningServer(server, thread, host, bound_port)
