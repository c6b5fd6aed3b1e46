"""The ``kaito serve`` child process: its argv, starting it, waiting for ``/health`` and stopping it.

The child runs in its own process group, so a Ctrl-C in the terminal reaches only ``kaito run``, which
forwards it once (SIGINT, SIGTERM and SIGHUP all as SIGTERM, the server's graceful stop), waits for the
child and reaps it. On
Linux the foreground child also gets SIGTERM if ``kaito run`` itself is killed (PR_SET_PDEATHSIG), so
no server outlives its terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

from kaito_core.local.errors import LocalRunError

#: How long a stopping child gets after the forwarded signal before it is killed (kaito serve gives
#: in-flight requests 30 s by default).
STOP_GRACE_S = 40.0
_POLL_S = 0.02
#: KAITO_PRESTART=spawn starts the early server as a new interpreter even where it could be forked.
PRESTART_ENV = "KAITO_PRESTART"


class ServerProcess(Protocol):
    """What ``kaito run`` does with its server child: a ``subprocess.Popen``, or a ``ForkedProcess``."""

    @property
    def pid(self) -> int: ...

    @property
    def stdin(self) -> IO[bytes] | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


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
    ready_fd: int | None = None  # the server's end of a readiness pipe (ForkedProcess.child_ready_fd)

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
        if self.ready_fd is not None:
            argv += ["--ready-fd", str(self.ready_fd)]
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


def prestart(log: IO[bytes] | None, detach: bool) -> ServerProcess | None:
    """Start the server process before its arguments are known (see ``kaito_core.local.prestart``);
    None when that is not possible, and the caller starts it the plain way later.

    On Linux, from a process with no other thread, it is forked: the child has this process's imports
    (Python itself, click, the CLI) for free, ~0.05 s that a new interpreter spends before it gets
    to the model. Elsewhere (macOS frameworks are not fork-safe) it is a new interpreter.
    """
    if will_fork():
        return _fork_prestart(log, detach)
    try:
        return subprocess.Popen([sys.executable, "-m", "kaito_core.local.prestart"], stdin=subprocess.PIPE,
                                **_popen_kwargs(log, detach))
    except OSError:
        return None


def will_fork() -> bool:
    """Whether ``prestart`` forks (Linux, one thread, KAITO_PRESTART not ``spawn``)."""
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and threading.active_count() == 1  # a lock held by another thread would stay held in the child
        and os.environ.get(PRESTART_ENV, "fork") != "spawn"
    )


def _fork_prestart(log: IO[bytes] | None, detach: bool) -> ServerProcess | None:
    read_fd, write_fd = os.pipe()
    # the server tells this process it is ready through a pipe (`kaito serve --ready-fd`): no polling
    # competing with the model load, and no polling interval added to the start
    ready_read, ready_write = os.pipe()
    for stream in (sys.stdout, sys.stderr):  # or buffered output would be written twice
        with contextlib.suppress(Exception):
            stream.flush()
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        for fd in (read_fd, write_fd, ready_read, ready_write):
            os.close(fd)
        return None
    if pid == 0:  # pragma: no cover - the child; measured through `kaito run` end to end
        os.close(ready_read)
        _forked_child(read_fd, write_fd, log, detach, parent)
    os.close(read_fd)
    os.close(ready_write)  # the child's copy stays open until it has written, or exits
    return ForkedProcess(pid, os.fdopen(write_fd, "wb"), ready_fd=ready_read, child_ready_fd=ready_write)


def _forked_child(read_fd: int, write_fd: int, log: IO[bytes] | None, detach: bool, parent: int) -> None:
    """Become the server as a started child would (``_popen_kwargs``), then never return."""
    code = 1
    try:
        os.close(write_fd)
        if detach:
            os.setsid()  # a session of its own: closing the terminal does not stop it
            if log is not None:
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
        else:
            os.setpgid(0, 0)  # Ctrl-C in the terminal reaches only `kaito run`, which forwards it
            _die_with_parent()
            if os.getppid() != parent:  # the parent died before the line above
                os._exit(1)
        os.environ["PYTHONUNBUFFERED"] = "1"  # for the server's own children (vLLM)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        from kaito_core.local.prestart import become_server

        become_server(os.fdopen(read_fd, "rb"))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)  # never the parent's atexit handlers, finally blocks or buffers


class ForkedProcess:
    """A server child made by ``os.fork``: the part of ``subprocess.Popen`` that ``kaito run`` uses."""

    def __init__(
        self, pid: int, stdin: IO[bytes], ready_fd: int | None = None, child_ready_fd: int | None = None
    ) -> None:
        self.pid = pid
        self.stdin: IO[bytes] | None = stdin
        self.returncode: int | None = None
        self.args = ["kaito", "serve"]
        #: this process's end of the readiness pipe, and the number of the server's end in the server
        self.ready_fd = ready_fd
        self.child_ready_fd = child_ready_fd

    def close_ready_fd(self) -> None:
        if self.ready_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.ready_fd)
            self.ready_fd = None

    def _reap(self, flags: int) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, flags)
            except ChildProcessError:  # reaped elsewhere; its status is gone
                self.returncode = 0
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            while True:
                code = self._reap(0)
                if code is not None:
                    return code
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(min(_POLL_S, max(deadline - time.monotonic(), 0)))
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def send_prefetch(process: ServerProcess, hint: dict[str, object] | None) -> bool:
    """The prestarted process's first line: what to start loading while this one plans (or nothing)."""
    assert process.stdin is not None
    try:
        process.stdin.write(json.dumps({"prefetch": hint}).encode() + b"\n")
        process.stdin.flush()
    except (BrokenPipeError, OSError):
        return False
    return True


def hand_over(process: ServerProcess, args: ServeArgs) -> bool:
    """Give a prestarted process its `kaito serve` arguments; False when it is no longer there."""
    assert process.stdin is not None
    try:
        process.stdin.write(json.dumps(args.cli_args()).encode() + b"\n")
        process.stdin.close()
    except (BrokenPipeError, OSError):
        return False
    return True


def abandon(process: ServerProcess | None) -> None:
    """Stop a prestarted process that will not be needed (it has loaded nothing yet) and reap it."""
    if process is None:
        return
    if isinstance(process, ForkedProcess):
        process.close_ready_fd()
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
    process: ServerProcess,
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
    forked = process if isinstance(process, ForkedProcess) else None
    try:
        while not interrupted():
            code = process.poll()
            if code is not None:
                raise LocalRunError(
                    f"`kaito serve` exited with code {code} before it was ready{on_exit(code)}"
                )
            if forked is not None and forked.ready_fd is not None:
                # told through the readiness pipe (`kaito serve --ready-fd`), then confirmed over HTTP
                if _notified(forked) and health_status(host, port) == 200:
                    return
            elif health_status(host, port) == 200:
                return
            else:
                time.sleep(_POLL_S)
            if time.monotonic() > deadline:
                raise LocalRunError(
                    f"`kaito serve` was not ready after {timeout:.0f}s (GET /health on port {port} is not "
                    "200); raise --ready-timeout for a large model"
                )
    finally:
        if forked is not None:
            forked.close_ready_fd()


def _notified(process: ForkedProcess, wait: float = 0.1) -> bool:
    """Whether the server wrote its ready line within ``wait`` seconds. The pipe is closed once it
    says anything or ends (the server exited, or was started without --ready-fd): then /health is
    polled instead."""
    assert process.ready_fd is not None
    readable, _, _ = select.select([process.ready_fd], [], [], wait)
    if not readable:
        return False
    data = os.read(process.ready_fd, 64)
    process.close_ready_fd()
    return data.startswith(b"ready")


def stop(process: ServerProcess, sig: int = signal.SIGTERM, grace: float = STOP_GRACE_S) -> int:
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

    def __init__(self, process: ServerProcess) -> None:
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
