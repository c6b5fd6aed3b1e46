"""Serve the app with uvicorn: ``run(engine, settings, host=..., port=...)``.

SIGTERM (and Ctrl-C) is uvicorn's graceful shutdown: the listening socket closes at once, in-flight
requests (streams included) get ``settings.grace_period`` seconds to finish; a stream still going just
before the end gets a last error event and ``[DONE]``, then the rest is cancelled, the engine closed,
and the process exits 0. Connections whose request headers do not arrive within
``settings.header_timeout`` seconds are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from kaito_core.plugins import Engine
from kaito_core.serving.app import create_app
from kaito_core.serving.settings import ServerSettings
from kaito_core.serving.state import ServerState

log = logging.getLogger("kaito.serving")


class LoadFailed(RuntimeError):
    """The model did not load or could not generate; the server stopped."""


class _HeaderTimeout(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers do not arrive in time.

    uvicorn's keep-alive timer runs only between requests, and any byte stops it: a client that opens
    a connection and sends nothing, or half a request line, would hold it (and a file descriptor) for
    ever. Here a timer runs whenever the connection waits for a request to begin."""

    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # bytes of a next request on a kept-alive connection
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # the request's headers are in: the handler's own limits take over

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()


class _Server(uvicorn.Server):
    """uvicorn's server, with a shutdown that cuts streams cleanly at the end of the grace period and a
    clean exit (status 0) after SIGTERM: uvicorn re-raises the signal once drained, so the process
    would die of it (-15) even when every request finished."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[float], None]) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown(float(self.config.timeout_graceful_shutdown or 0))
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


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
        http=type("HeaderTimeout", (_HeaderTimeout,), {"header_timeout": settings.header_timeout}),
    )
    state: ServerState = app.state.kaito
    server = _Server(config, state.begin_drain)
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
