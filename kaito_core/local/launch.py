"""The ``kaito serve`` child process: its argv, starting it, waiting for ``/health`` and stopping it.

The child runs in its own process group, so a Ctrl-C in the terminal reaches only ``kaito run``, which
forwards it once (SIGINT, SIGTERM and SIGHUP all as SIGTERM, the server's graceful stop), waits for the
child and reaps it. On Linux the foreground child also gets SIGTERM if ``kaito run`` itself is killed
(PR_SET_PDEATHSIG), so no server outlives its terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from kaito_core.local.errors import LocalRunError

#: How long a stopping child gets after the forwarded signal before it is killed (kaito serve gives
#: in-flight requests 30 s by default).
STOP_GRACE_S = 40.0
_POLL_S = 0.02


@dataclass(frozen=True)
class ServeArgs:
    """What ``kaito serve`` is started with (one flag each)."""

    runtime: str
    model: Path
    host: str
    port: int
    served_model_name: str
    context_length: int = 0
    threads: int = 0
    n_gpu_layers: int = 0
    max_batch: int = 0  # sequences decoded together; 0: kaito serve's default
    chat_template_file: Path | None = None
    #: (name, directory, strength) of each adapter; a strength other than 1 is an engine option
    adapters: tuple[tuple[str, Path, float], ...] = ()

    def argv(self) -> list[str]:
        # `python -m kaito_core.cli.main` rather than the `kaito` script: same interpreter and
        # environment as this process, whether or not the script is on PATH.
        return [sys.executable, "-m", "kaito_core.cli.main", *self.cli_args()]

    def cli_args(self) -> list[str]:
        """The arguments of the `kaito` command: ``serve --runtime ...``."""
        argv = [
            "serve",
            "--runtime", self.runtime,
            "--model", str(self.model),
            "--host", self.host,
            "--port", str(self.port),
            "--served-model-name", self.served_model_name,
        ]
        if self.context_length:
            argv += ["--context-length", str(self.context_length)]
        if self.threads:
            argv += ["--threads", str(self.threads)]
        if self.n_gpu_layers:
            argv += ["--n-gpu-layers", str(self.n_gpu_layers)]
        if self.max_batch:
            argv += ["--max-batch", str(self.max_batch)]
        if self.chat_template_file is not None:
            argv += ["--chat-template-file", str(self.chat_template_file)]
        for name, directory, strength in self.adapters:
            argv += ["--adapter", f"{name}={directory}"]
            if strength != 1.0:
                argv += ["--engine-option", f"strength.{name}={strength:g}"]
        return argv


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies (Linux; a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _popen_kwargs(log: IO[bytes] | None, detach: bool) -> dict[str, Any]:
    """Foreground: the child shares our stdout/stderr. Detached: its output goes to ``log`` and it gets
    a session of its own, so closing the terminal does not stop it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kwargs: dict[str, Any] = {"env": env}
    if detach:
        kwargs.update(stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    else:
        kwargs.update(process_group=0, preexec_fn=_die_with_parent)
    return kwargs


def start(argv: Sequence[str], log: IO[bytes] | None, detach: bool) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the server child."""
    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, **_popen_kwargs(log, detach))
    except OSError as exc:
        raise LocalRunError(f"could not start `kaito serve` ({argv[0]}): {exc}") from exc


def prestart(log: IO[bytes] | None, detach: bool) -> subprocess.Popen[bytes] | None:
    """Start the server process before its arguments are known (see ``kaito_core.local.prestart``): it
    imports the CLI, the plugins and CPU runtimes' engine libraries while this process validates and
    plans. None when it cannot be started; the caller then starts the server the plain way."""
    try:
        return subprocess.Popen([sys.executable, "-m", "kaito_core.local.prestart"], stdin=subprocess.PIPE,
                                **_popen_kwargs(log, detach))
    except OSError:
        return None


def hand_over(process: subprocess.Popen[bytes], args: ServeArgs) -> bool:
    """Give a prestarted process its `kaito serve` arguments; False when it is no longer there."""
    assert process.stdin is not None
    try:
        process.stdin.write(json.dumps(args.cli_args()).encode() + b"\n")
        process.stdin.close()
    except (BrokenPipeError, OSError):
        return False
    return True


def abandon(process: subprocess.Popen[bytes] | None) -> None:
    """Stop a prestarted process that will not be needed (it has loaded nothing yet) and reap it."""
    if process is None:
        return
    with contextlib.suppress(OSError):
        if process.stdin is not None:
            process.stdin.close()
    if process.poll() is None:
        process.kill()
    process.wait()


def health_status(host: str, port: int, timeout: float = 2.0) -> int | None:
    """The status code of GET /health, or None when nothing answers yet."""
    # Imported here, while the server loads, not before the server process is started: http.client
    # pulls in ssl, which `kaito run` would otherwise import on its way to the hand-over.
    import http.client

    # A server listening on every interface is reached through loopback.
    connect_host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
    connection = http.client.HTTPConnection(connect_host, port, timeout=timeout)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def wait_ready(
    process: subprocess.Popen[bytes],
    host: str,
    port: int,
    timeout: float,
    on_exit: Callable[[int], str] = lambda code: "",
    interrupted: Callable[[], bool] = lambda: False,
) -> None:
    """Block until GET /health answers 200 (the server answers 200 only after a real generation).

    Returns early when ``interrupted()`` turns true. Raises LocalRunError when the child exits first or
    ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    while not interrupted():
        code = process.poll()
        if code is not None:
            raise LocalRunError(f"`kaito serve` exited with code {code} before it was ready{on_exit(code)}")
        if health_status(host, port) == 200:
            return
        if time.monotonic() > deadline:
            raise LocalRunError(
                f"`kaito serve` was not ready after {timeout:.0f}s (GET /health on port {port} is not "
                "200); raise --ready-timeout for a large model"
            )
        time.sleep(_POLL_S)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = STOP_GRACE_S) -> int:
    """Send ``sig``, wait up to ``grace`` seconds, then SIGKILL; always reaps. Returns the exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            return process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


class SignalForwarder:
    """While active, SIGINT/SIGTERM/SIGHUP are forwarded to the child (as SIGTERM) instead of killing us.

    The first signal is forwarded as a graceful stop; a second one kills the child.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.process.poll() is not None:
            return
        if self.received is not None:
            self.process.kill()
            return
        self.received = signum
        # Every stop request becomes SIGTERM: the server's graceful shutdown (in-flight requests get
        # their grace period), without the KeyboardInterrupt noise a forwarded SIGINT would print.
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)

    def __enter__(self) -> SignalForwarder:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def wait(self, grace: float = STOP_GRACE_S) -> int:
        """Wait for the child to exit; after a forwarded signal, kill it if it outstays ``grace``."""
        while True:
            try:
                return self.process.wait(timeout=0.2 if self.received is None else grace)
            except subprocess.TimeoutExpired:
                if self.received is not None:
                    self.process.kill()
                    return self.process.wait()
