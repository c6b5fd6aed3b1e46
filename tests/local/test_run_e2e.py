"""`kaito run` end to end with the real Gemma 3 270M model (three model starts in all)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from kaito_core.local import procs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _ps(kit: Any) -> list[dict[str, object]]:
    result = kit.kaito("ps", "-o", "json")
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_foreground_run_answers_then_stops_cleanly_on_sigint(stored_weights: Path, kit: Any) -> None:
    port = kit.free_port()
    run = kit.start("run", str(kit.example), "--port", str(port))
    try:
        ready = run.wait_for(kit.ready)
        url = ready.group("url")
        assert url == f"http://127.0.0.1:{port}" and ready.group("port") == str(port)
        assert float(ready.group("seconds")) > 0

        prompt = "The capital of France is"
        answer = httpx.post(f"{url}/chat", timeout=60, json={
            "prompt": prompt, "generate_kwargs": {"max_new_tokens": 8, "do_sample": False}})
        assert answer.status_code == 200, answer.text
        result = answer.json()["Result"]
        assert result.startswith(prompt) and result[len(prompt):].strip()

        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=60)
        completion = client.completions.create(
            model="gemma-3-270m", prompt=prompt, max_tokens=4, temperature=0
        )
        assert completion.choices[0].text.strip()

        (entry,) = [e for e in _ps(kit) if e["name"] == "workspace-gemma-3-270m"]
        assert entry["state"] == "running" and entry["endpoint"] == url and entry["runtime"] == "llamacpp"
        server_pid = int(str(entry["pid"]))
        server_start = procs.process_start_time(server_pid)
        assert server_start is not None
        command = Path(f"/proc/{server_pid}/cmdline").read_bytes().split(b"\0")
        assert b"kaito_core.local.prestart" in command  # started early, before kaito run had planned
        assert os.getpgid(server_pid) == server_pid  # its own process group
    finally:
        run.process.send_signal(signal.SIGINT)
    assert run.finish() == 0, run.output
    assert "stopped workspace-gemma-3-270m" in run.output
    assert not procs.is_alive(server_pid, server_start)  # the server exited and was reaped
    assert all(e["name"] != "workspace-gemma-3-270m" for e in _ps(kit))


def test_detached_run_with_ps_logs_and_stop(stored_weights: Path, kit: Any) -> None:
    port = kit.free_port()
    started = kit.kaito("run", str(kit.example), "--port", str(port), "--detach", "--name", "gemma-bg",
                        "--parallel", "2", timeout=300)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert re.search(kit.ready.pattern, started.stdout, re.MULTILINE), started.stdout
        (entry,) = [e for e in _ps(kit) if e["name"] == "gemma-bg"]
        server_pid = int(str(entry["pid"]))
        server_start = procs.process_start_time(server_pid)
        assert entry["state"] == "running" and server_start is not None
        assert entry["endpoint"] == f"http://127.0.0.1:{port}"
        assert entry["model"] == "gemma-3-270m"
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200

        table = kit.kaito("ps")
        assert "gemma-bg" in table.stdout and "running" in table.stdout

        logs = kit.kaito("logs", "gemma-bg")
        assert logs.returncode == 0
        assert str(port) in logs.stdout  # the server's own start-up lines went to the log file
        assert "loaded gemma-3-270m-q4_k_m.gguf: 2 sequences" in logs.stdout  # --parallel 2 reached it
        assert Path(str(entry["log"])).is_file()
    finally:
        stopped = kit.kaito("stop", "gemma-bg", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert not procs.is_alive(server_pid, server_start)
    assert all(e["name"] != "gemma-bg" for e in _ps(kit))
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)


def test_demo_once_prints_generated_text(stored_weights: Path, kit: Any) -> None:
    demo = kit.root / "scripts" / "demo.py"
    result = subprocess.run(
        [sys.executable, str(demo), "--once", "--max-new-tokens", "12"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "curl -s http://127.0.0.1:" in result.stdout
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("The three primary colors are")]
    assert line[len("The three primary colors are"):].strip(), result.stdout
