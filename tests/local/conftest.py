"""Fixtures for `kaito run` tests: one KAITO_HOME per session, weights packed into its store once."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "workspace-gemma-3-270m.yaml"
READY = re.compile(r"^kaito: ready in (?P<seconds>[0-9.]+)s on port (?P<port>\d+): (?P<url>\S+)")


@pytest.fixture(scope="session")
def kaito_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A KAITO_HOME of the session, in this process and every `kaito` subprocess."""
    home = tmp_path_factory.mktemp("kaito-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAITO_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def stored_weights(kaito_home: Path) -> Path:
    """Pack the example's weights into the session's store once (the GGUF is assembled once)."""
    from kaito_core.local.prepare import prepare
    from kaito_core.local.weights import locate
    from kaito_core.plugins import default_registry

    weights = locate(prepare(EXAMPLE, default_registry()), progress=False)
    (gguf,) = [path for name, path in weights.files.items() if name.endswith(".gguf")]
    return gguf


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kaito(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `kaito ARGS` to completion with this interpreter."""
    return subprocess.run([sys.executable, "-m", "kaito_core.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@dataclass
class Running:
    """A `kaito run` subprocess whose combined output is read by a thread (so reads never block)."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 240) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern.pattern!r} in {timeout}s:\n{self.output}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"kaito run exited ({self.process.wait()}) before {pattern.pattern!r}:\n"
                                     f"{self.output}")
            self.lines.append(line)
            match = pattern.search(line)
            if match:
                return match

    def finish(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        while True:
            try:
                line = self._queue.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)


def start_kaito(*args: str) -> Running:
    process = subprocess.Popen([sys.executable, "-m", "kaito_core.cli.main", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return Running(process)


@dataclass(frozen=True)
class Kit:
    """The helpers above, handed to tests as a fixture (test modules cannot import conftest under
    --import-mode=importlib)."""

    example: Path = EXAMPLE
    root: Path = ROOT
    ready: re.Pattern[str] = READY

    @staticmethod
    def free_port() -> int:
        return free_port()

    @staticmethod
    def kaito(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return kaito(*args, timeout=timeout)

    @staticmethod
    def start(*args: str) -> Running:
        return start_kaito(*args)


@pytest.fixture()
def kit() -> Kit:
    return Kit()
