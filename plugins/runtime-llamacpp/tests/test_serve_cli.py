"""`kaito serve` as a real subprocess: SIGTERM stops accepting, finishes the in-flight stream, exits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

TEMPLATE = (
    "{% for m in messages %}<start_of_turn>user\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "<start_of_turn>model\n"
)
SERVE = [sys.executable, "-m", "kaito_core.cli.main", "serve"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def kaito_serve(gemma_path: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    port = _free_port()
    template = tmp_path / "template.jinja"
    template.write_text(TEMPLATE)
    env = {**os.environ, "KAITO_SERVE_MAX_BATCH": "2", "KAITO_SERVE_CONTEXT_LENGTH": "256"}  # flags from env
    process = subprocess.Popen(
        [*SERVE, "--runtime", "llamacpp", "--model", str(gemma_path),
         "--host", "127.0.0.1", "--port", str(port), "--threads", "2", "--grace-period", "600",
         "--served-model-name", "gemma", "--chat-template-file", str(template), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(url + "/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "kaito serve did not become healthy"
        time.sleep(0.1)
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait()


def test_sigterm_drains_in_flight_streams_then_exits(kaito_serve) -> None:  # type: ignore[no-untyped-def]
    process, url = kaito_serve
    models = httpx.get(url + "/v1/models").json()
    assert models["data"][0]["id"] == "gemma" and models["data"][0]["max_model_len"] == 256
    # A grace period far longer than the work (8 tokens): the drain is bounded by the generation, however
    # slow this machine is, not by a guess of its speed.
    body = {"model": "gemma", "prompt": "Count to ten:", "max_tokens": 8, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    events = []
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=120) as response:
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: {"):
                events.append(line)
                break
        process.send_signal(signal.SIGTERM)
        # the listening socket closes while the stream goes on
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
            except httpx.TransportError:
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.05)
        events.extend(line for line in lines if line.startswith("data: "))
    assert events[-1] == "data: [DONE]"
    usage = json.loads(events[-2].removeprefix("data: "))["usage"]
    assert usage["completion_tokens"] == 8  # the in-flight request finished in full
    assert process.wait(timeout=120) == 0  # a clean drain exits 0, not by the signal


def test_unknown_runtime_and_missing_model_are_clear_errors(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SERVE, "--runtime", "nope", "--model", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "llamacpp" in result.stderr
    assert result.stderr.count("unknown runtime 'nope'") == 1  # said once, with what is installed
    result = subprocess.run(
        [*SERVE, "--runtime", "llamacpp", "--model", str(tmp_path)],  # a directory with no weights
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and f"no .gguf file in {tmp_path}" in result.stderr
    assert "Uvicorn running" not in result.stderr  # refused before any server started
    result = subprocess.run(
        [*SERVE, "--runtime", "llamacpp", "--model", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_a_model_that_cannot_load_exits_non_zero(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file")
    result = subprocess.run(
        [*SERVE, "--runtime", "llamacpp", "--model", str(bogus),
         "--host", "127.0.0.1", "--port", str(_free_port())],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and "could not be loaded" in result.stderr


def test_engine_options_reach_the_runtime_and_bad_ones_are_named(gemma_path: Path) -> None:
    result = subprocess.run(
        [*SERVE, "--runtime", "llamacpp", "--model", str(gemma_path), "--engine-option", "kv_cells"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "--engine-option" in result.stderr and "KEY=VALUE" in result.stderr
    result = subprocess.run(
        [*SERVE, "--runtime", "llamacpp", "--model", str(gemma_path), "--engine-option", "kv_cells=lots",
         "--host", "127.0.0.1", "--port", str(_free_port()), "--context-length", "256"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and "kv_cells must be a whole number of tokens, not 'lots'" in result.stderr
