"""`kaito run` serves a Workspace with a PEFT adapter on the llama.cpp runtime: the base GGUF and the
adapter pulled from their artifacts, the adapter converted to a GGUF LoRA when ``kaito serve`` starts,
applied at the Workspace's strength. Answers compared with the engine run in this process."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from kaito_runtime_llamacpp import plugin
from kaito_runtime_llamacpp.engine import LlamaCppEngine

from kaito_core.artifacts import push
from kaito_core.local import paths, procs, state
from kaito_core.local.runner import RunOptions, run
from kaito_core.planning.hardware import Hardware
from kaito_core.plugins import (
    Architecture,
    EngineConfig,
    GiB,
    ModelSource,
    Preset,
    Registry,
    Requirements,
    SamplingParams,
    WeightFile,
    WeightFormat,
    hookimpl,
)

from .conftest import TinyLlama

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
PROMPT = "the sky is"


def tiny_preset(size: int) -> Preset:
    return Preset(
        name="tiny-llama",
        family="tiny",
        source=ModelSource("local/tiny-llama", "0" * 40),
        formats=(WeightFormat("gguf", "F32", (WeightFile("tiny.gguf", size, None),)),),
        architecture=Architecture(
            parameters=100_000, layers=2, attention_heads=4, kv_heads=2, head_dim=16, context_length=256
        ),
        requirements=Requirements(gpu_count=0, total_gpu_memory=0, per_gpu_memory=0, disk=1 << 30),
        runtimes=("llamacpp",),
        default_runtime="llamacpp",
        license="Apache-2.0",
    )


class Presets:
    def __init__(self, preset: Preset) -> None:
        self.preset = preset

    @hookimpl
    def kaito_register_presets(self, register: Any) -> None:
        register(self.preset)


def workspace_file(path: Path, model_ref: str, adapter_ref: str, strength: str) -> Path:
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
    name: tiny-llama
  adapters:
    - source:
        name: tuned
        image: "{adapter_ref}"
      strength: "{strength}"
""")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(file: Path, registry: Registry, models: list[str]) -> tuple[list[str], list[Path]]:
    """What each of ``models`` answers, and the converted adapters in the run's directory."""
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
        listed = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]
        assert [(m["id"], m["parent"]) for m in listed] == [("tiny-llama", None), ("tuned", "tiny-llama")]
        texts = []
        for model in models:
            body = {"model": model, "prompt": PROMPT, "max_tokens": 16, "temperature": 0, "ignore_eos": True}
            reply = httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=120, json=body)
            assert reply.status_code == 200, reply.text
            texts.append(reply.json()["choices"][0]["text"])
        return texts, sorted((paths.kaito_home() / "lora-gguf").glob("*.gguf"))
    finally:
        assert record.pid is not None
        procs.terminate(record.pid, record.pid_start)
        state.remove(record.name)


def in_process(tiny: TinyLlama, strength: float, adapter: str, cache: Path) -> str:
    options = {"strength.tuned": strength, "adapter_cache": str(cache)}
    engine = LlamaCppEngine(EngineConfig(model_path=str(tiny.gguf), served_model_name="tiny", threads=2,
                                         adapters={"tuned": str(tiny.adapter)}, options=options))  # fmt: skip

    async def go() -> str:
        await engine.load()
        try:
            params = SamplingParams(max_tokens=16, greedy=True, ignore_eos=True, adapter=adapter)
            return "".join([c.text async for c in engine.stream(PROMPT, params)])
        finally:
            await engine.close()

    return asyncio.run(go())


def test_kaito_run_converts_and_serves_a_peft_adapter(
    tiny_llama: TinyLlama, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAITO_HOME", str(tmp_path / "home"))
    registry = Registry()
    registry.register(Presets(tiny_preset(tiny_llama.gguf.stat().st_size)), distribution="tiny", version="0")
    registry.register(plugin, distribution="kaito-runtime-llamacpp", version="0.1.0")
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "tiny.gguf").write_bytes(tiny_llama.gguf.read_bytes())
    model_ref, adapter_ref = f"oci:{tmp_path / 'models'}:tiny", f"oci:{tmp_path / 'adapters'}:tuned"
    push(weights, model_ref, progress=False)
    push(tiny_llama.adapter, adapter_ref, progress=False)

    half, converted = answers(workspace_file(tmp_path / "ws-half.yaml", model_ref, adapter_ref, "0.5"),
                              registry, ["tuned", "tiny-llama"])  # fmt: skip
    cache = tmp_path / "cache"
    assert half == [in_process(tiny_llama, 0.5, "tuned", cache), in_process(tiny_llama, 0.5, "", cache)]
    assert half[0] != half[1]
    # converted when kaito serve started, into kaito's local state
    assert [p.name.split("-")[0] for p in converted] == ["tuned"]
