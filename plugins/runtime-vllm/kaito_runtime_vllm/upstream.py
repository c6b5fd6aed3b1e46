"""The vLLM OpenAI server as a child process of `kaito serve`: start, watch, log, stop."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Mapping, Sequence

#: Lines of the child's output kept to explain a failed start.
LOG_TAIL = 60
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when `kaito serve` dies, however it dies (Linux), so a killed
    server never leaves a vLLM holding the GPU behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: close() still stops the child on a clean exit
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ChildServer:
    """One child process whose output is passed through to our stderr (the pod log) and remembered."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None, label: str = "vllm"):
        self.argv = list(argv)
        self.env = dict(os.environ if env is None else env)
        self.label = label
        self.tail: deque[str] = deque(maxlen=LOG_TAIL)
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    async def start(self) -> None:
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                # Its own process group: vLLM forks engine/worker processes, and stop() must reach them.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        except OSError as exc:
            raise RuntimeError(f"cannot start {self.label} server {self.argv[0]!r}: {exc}") from exc
        self._drain = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while True:
            line = await self._proc.stdout.readline()
            if not line:
                break
            text = line.decode("utf-8", "replace").rstrip()
            self.tail.append(text)
            print(f"[{self.label}] {text}", file=sys.stderr, flush=True)

    async def wait(self) -> int:
        assert self._proc is not None
        code = await self._proc.wait()
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain, 2)
        return code

    def describe_exit(self) -> str:
        tail = "\n".join(list(self.tail)[-15:])
        head = f"{self.label} server exited with code {self.returncode}"
        return head + (f"; last output:\n{tail}" if tail else "")

    async def stop(self, grace: float = 15.0) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            self._signal(signal.SIGKILL)
            await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(BaseException):
                await self._drain

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)  # the group we created at start
