"""The CPU loop of the issue, for real: `kaito tune` on the tiny model, the adapter pushed with
`kaito model push` to a real registry (or an OCI layout when none is given), pulled back with
`kaito model pull` (the init container's command) into an adapter directory, and served over HTTP by
the transformers runtime at strength 0 and 1: /chat, /v1/chat/completions, /v1/models, /health."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from kaito_runtime_transformers.engine import TransformersEngine
from kaito_runtime_transformers.train import ADAPTER_FILES

from kaito_core.cli.main import cli
from kaito_core.plugins import EngineConfig
from kaito_core.serving.server import start_in_thread
from kaito_core.serving.settings import ServerSettings

from .conftest import FAST_CONFIG

pytestmark = pytest.mark.timeout(600)
PROMPT = "what colour is the sky"


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def reference(tmp_path: Path) -> tuple[str, list[str]]:
    registry = os.environ.get("KAITO_TEST_REGISTRY")
    if registry:
        return f"{registry}/adapters/tiny-lora:{time.time_ns()}", ["--plain-http"]
    return f"oci:{tmp_path / 'layout'}:tiny-lora", []


def serve(model: Path, adapter: Path | None, strength: float) -> dict[str, object]:
    adapters = {"tuned": str(adapter)} if adapter else {}
    engine = TransformersEngine(
        EngineConfig(str(model), "tiny", adapters=adapters, options={"strength.tuned": strength})
    )
    server = start_in_thread(engine, ServerSettings(served_model_name="tiny", max_concurrency=1))
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            for _ in range(600):
                if http.get("/health").status_code == 200:
                    break
                time.sleep(0.1)
            assert http.get("/health").status_code == 200
            models = http.get("/v1/models").json()
            chat = http.post(
                "/chat",
                json={
                    "messages": [{"role": "user", "content": PROMPT}],
                    "generate_kwargs": {"max_new_tokens": 10, "do_sample": False},
                },
            )
            assert chat.status_code == 200, chat.text
            openai = http.post(
                "/v1/chat/completions",
                json={
                    "model": "tiny",
                    "max_tokens": 10,
                    "temperature": 0,
                    "messages": [{"role": "user", "content": PROMPT}],
                },
            )
            assert openai.status_code == 200, openai.text
            too_long = http.post(
                "/v1/completions", json={"model": "tiny", "prompt": "x " * 400, "max_tokens": 10}
            )
            assert too_long.status_code == 400, too_long.text
            return {
                "models": models,
                "chat": chat.json(),
                "openai": openai.json()["choices"][0]["message"]["content"],
            }
    finally:
        server.stop()


def test_tune_push_pull_and_serve(tiny_model: Path, chat_parquet: Path, tmp_path: Path) -> None:
    config = tmp_path / "training_config.yaml"
    config.write_text(FAST_CONFIG)
    results = tmp_path / "results"
    out = invoke(
        "tune",
        "--model",
        str(tiny_model),
        "--data",
        str(chat_parquet),
        "--config",
        str(config),
        "--output",
        str(results),
        "--no-progress",
    )
    assert "adapter written to" in out and "12 steps" in out
    ref, flags = reference(tmp_path)
    invoke("model", "push", str(results), ref, "--no-progress", *flags)
    pulled = tmp_path / "mnt" / "adapter" / "tuned"
    invoke("model", "pull", ref, str(pulled), "--no-progress", *flags)
    assert sorted(p.name for p in pulled.iterdir() if not p.name.startswith(".")) == sorted(
        [*ADAPTER_FILES, "README.md"]
    )  # the checkpoints stayed behind (a hidden directory)
    for name in ADAPTER_FILES:
        assert (pulled / name).read_bytes() == (results / name).read_bytes()

    base = serve(tiny_model, None, 1.0)
    off = serve(tiny_model, pulled, 0.0)
    on = serve(tiny_model, pulled, 1.0)
    assert off["openai"] == base["openai"] and off["chat"] == base["chat"]
    assert on["openai"] != base["openai"]
    assert [m["id"] for m in base["models"]["data"]] == ["tiny"]  # type: ignore[index]
