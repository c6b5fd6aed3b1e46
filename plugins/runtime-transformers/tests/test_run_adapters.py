"""`kaito run` serves a Workspace with an adapter on the transformers runtime: the adapter pulled from
its artifact into the run's directory, applied at the Workspace's strength (0: the base model's answer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from kaito_runtime_transformers import plugin
from kaito_runtime_transformers.train import tune

from kaito_core.artifacts import push
from kaito_core.local import procs, state
from kaito_core.local.runner import RunOptions, run
from kaito_core.planning.hardware import Hardware
from kaito_core.plugins import GiB, Registry

from .conftest import FAST_CONFIG
from .test_run_tuning import Presets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def workspace_file(path: Path, model_ref: str, adapter_ref: str | None, strength: str) -> Path:
    adapters = (
        f"""
  adapters:
    - source:
        name: tuned
        image: "{adapter_ref}"
      strength: "{strength}"
"""
        if adapter_ref
        else ""
    )
    path.write_text(f"""apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata:
  name: {path.stem}
  annotations:
    kaito.sh/model-artifact: "{model_ref}"
resource:
  labelSelector:
    matchLabels: {{app: tiny}}
inference:
  preset:
    name: tiny-llama{adapters}""")
    return path


def answer(file: Path, registry: Registry, model: str = "tiny-llama") -> str:
    port = free_port()
    code = run(
        RunOptions(file=file, port=port, detach=True, progress=False, ready_timeout=300),
        registry=registry,
        hardware=Hardware.cpu_only(2, 8 * GiB, "this CPU"),
    )
    assert code == 0
    record = state.load(file.stem)
    assert record is not None
    try:
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            timeout=120,
            json={
                "model": model,
                "max_tokens": 10,
                "temperature": 0,
                "messages": [{"role": "user", "content": "what colour is the sky"}],
            },
        )
        assert reply.status_code == 200, reply.text
        text: str = reply.json()["choices"][0]["message"]["content"]
        return text
    finally:
        assert record.pid is not None
        procs.terminate(record.pid, record.pid_start)
        state.remove(record.name)


def test_kaito_run_serves_an_adapter_at_its_strength(
    tiny_model: Path, chat_parquet: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    from kaito_runtime_transformers import config

    monkeypatch.setenv("KAITO_HOME", str(tmp_path / "home"))
    registry = Registry()
    registry.register(Presets(), distribution="tiny-presets", version="0")
    registry.register(plugin, distribution="kaito-runtime-transformers", version="0.1.0")
    model_ref = f"oci:{tmp_path / 'models'}:tiny"
    push(tiny_model, model_ref, progress=False)
    tune(tiny_model, [chat_parquet], config.parse(FAST_CONFIG, "lora"), tmp_path / "adapter", progress=False)
    adapter_ref = f"oci:{tmp_path / 'adapters'}:tuned"
    push(tmp_path / "adapter", adapter_ref, progress=False)

    base = answer(workspace_file(tmp_path / "ws-base.yaml", model_ref, None, "1"), registry)
    # `model` names the adapter (the base model's name would ask for the base alone, as in vLLM)
    off = answer(workspace_file(tmp_path / "ws-zero.yaml", model_ref, adapter_ref, "0.0"), registry, "tuned")
    on = answer(workspace_file(tmp_path / "ws-full.yaml", model_ref, adapter_ref, "1.0"), registry, "tuned")
    assert off == base
    assert on != base
