"""Fixtures: `kaito serve --runtime vllm` as a real process over the fake vLLM server (a real process too)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

FAKE_VLLM = Path(__file__).with_name("fake_vllm_server.py")
MODEL = "tiny-chat"
#: A Hugging Face-style template that writes BOS itself, as Llama/Phi/Gemma templates do.
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def model_dir(root: Path) -> Path:
    """A safetensors-style model directory as far as the engine reads it: the tokenizer config."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": {"content": "<s>"}, "eos_token": "</s>", "chat_template": TEMPLATE}))
    return root


def upstream_command(pid_file: Path, *extra: str) -> list[str]:
    return [sys.executable, str(FAKE_VLLM), "--host", "{host}", "--port", "{port}",
            "--served-model-name", MODEL, "--pid-file", str(pid_file), *extra]


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    pid_file: Path
    log: Path

    def upstream_pid(self) -> int:
        return int(self.pid_file.read_text())

    def requests_seen(self) -> list[dict]:
        # The fake vLLM server's own record of what the engine sent it.
        port = self.upstream_port()
        return httpx.get(f"http://127.0.0.1:{port}/_requests").json()

    def upstream_port(self) -> int:
        # The engine picks the port; the child's command line says which.
        args = Path(f"/proc/{self.upstream_pid()}/cmdline").read_bytes().split(b"\0")
        return int(args[args.index(b"--port") + 1])


def start_serve(tmp: Path, *upstream_extra: str, env_extra: dict[str, str] | None = None) -> Served:
    port = free_port()
    pid_file = tmp / "upstream.pid"
    options = {"upstream_command": upstream_command(pid_file, *upstream_extra), "startup_timeout": 60,
               "health_interval": 0.2}
    env = {**os.environ, "KAITO_VLLM_OPTIONS": json.dumps(options), **(env_extra or {})}
    log = tmp / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "kaito_core.cli.main", "serve", "--runtime", "vllm",
         "--model", str(model_dir(tmp / "model")), "--served-model-name", MODEL,
         "--host", "127.0.0.1", "--port", str(port), "--grace-period", "1"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"kaito serve exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return Served(url, process, pid_file, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(process)
    raise AssertionError(f"kaito serve did not become healthy:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start `kaito serve` over the fake vLLM with extra fake-server flags; stopped after the test."""
    started: list[Served] = []

    def start(*upstream_extra: str) -> Served:
        server = start_serve(tmp_path, *upstream_extra)
        started.append(server)
        return server

    yield start
    for server in started:
        stop(server.process)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("vllm-serve")
    server = start_serve(tmp, "--max-model-len", "64")
    yield server
    stop(server.process)
