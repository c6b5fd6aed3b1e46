"""The vLLM Engine's pieces without a server: chat-template lookup, request bodies, SSE parsing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import httpx
import pytest
from kaito_runtime_vllm.chat import load_template
from kaito_runtime_vllm.engine import UpstreamError, VllmEngine
from kaito_runtime_vllm.options import VllmOptionError, engine_options_from

from kaito_core.plugins import ChatMessage, EngineConfig, SamplingParams

MESSAGES = [ChatMessage("user", "hi")]


def test_template_lookup_order(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": {"content": "<B>"}, "eos_token": "<E>",
        "chat_template": [{"name": "tool_use", "template": "TOOLS"},
                          {"name": "default", "template": "{{ bos_token }}D"}],
    }))
    assert load_template(str(tmp_path)).render(MESSAGES) == "<B>D"  # the named default
    (tmp_path / "chat_template.jinja").write_text("J{{ eos_token }}")
    assert load_template(str(tmp_path)).render(MESSAGES) == "J<E>"  # the file wins, as in transformers
    assert load_template(str(tmp_path), "P").render(MESSAGES) == "P"  # the preset's wins over both
    assert load_template(str(tmp_path / "missing")).render(MESSAGES) == "user: hi\nassistant:"  # base model


def test_unreadable_tokenizer_config_is_named(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"tokenizer_config\.json"):
        load_template(str(tmp_path))


def test_request_body_maps_sampling_params() -> None:
    engine = VllmEngine(EngineConfig(model_path="/m", served_model_name="m"), environ={})
    params = SamplingParams(max_tokens=5, temperature=0.7, top_k=3, top_p=0.8, min_p=0.1,
                            seed=1, stop=("x",), min_tokens=2, presence_penalty=0.5)
    body = engine.request_body("p", params)
    assert body == {"model": "m", "prompt": "p", "max_tokens": 5, "temperature": 0.7, "top_p": 0.8,
                    "top_k": 3, "min_p": 0.1, "min_tokens": 2, "presence_penalty": 0.5, "seed": 1,
                    "stop": ["x"], "stream": True, "stream_options": {"include_usage": True}}
    greedy = engine.request_body("p", SamplingParams(greedy=True, top_k=40, temperature=0.9, ignore_eos=True))
    assert (greedy["temperature"], greedy["top_p"], "top_k" in greedy) == (0.0, 1.0, False)
    assert greedy["ignore_eos"] is True


def test_each_request_goes_to_the_adapter_it_chose() -> None:
    """vLLM picks a LoRA module per request by its name: the server's choice reaches the body."""
    config = EngineConfig(model_path="/m", served_model_name="base", adapters={"fr": "/a", "de": "/b"})
    engine = VllmEngine(config, environ={})
    assert engine.request_body("p", SamplingParams(adapter="de"))["model"] == "de"
    assert engine.request_body("p", SamplingParams(adapter=""))["model"] == "base"
    assert engine.request_body("p", SamplingParams())["model"] == "base"  # two adapters: the base
    single = EngineConfig(model_path="/m", served_model_name="base", adapters={"fr": "/a"})
    one = VllmEngine(single, environ={})
    assert one.request_body("p", SamplingParams())["model"] == "fr"  # one adapter: the default
    assert one.request_body("p", SamplingParams(adapter=""))["model"] == "base"


def test_one_adapter_is_the_default_model() -> None:
    one = EngineConfig(model_path="/m", served_model_name="base", adapters={"fr": "/mnt/adapter/fr"})
    assert VllmEngine(one, environ={}).model == "fr"
    two = EngineConfig(model_path="/m", served_model_name="base", adapters={"fr": "/a", "de": "/b"})
    assert VllmEngine(two, environ={}).model == "base"
    chosen = EngineConfig(model_path="/m", served_model_name="base", adapters={"fr": "/a", "de": "/b"},
                          options={"adapter": "de"})
    assert VllmEngine(chosen, environ={}).model == "de"
    with pytest.raises(VllmOptionError, match="'xx' is not one of the adapters"):
        config = EngineConfig(model_path="/m", served_model_name="b", options={"adapter": "xx"})
        engine_options_from(config, {})


def sse(*events: object) -> httpx.Response:
    body = "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)
    return httpx.Response(200, content=body.encode())


def choice(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "text": text, "finish_reason": finish}], "usage": None}


async def collect(response: httpx.Response) -> list[tuple[str, int, str | None]]:
    engine = VllmEngine(EngineConfig(model_path="/m", served_model_name="m"), environ={})
    return [(c.text, c.tokens, c.finish_reason) async for c in engine._events(response)]


async def test_sse_tokens_settle_on_vllm_usage() -> None:
    # vLLM can emit several tokens in one event (or an empty one at a stop string): usage is the truth.
    response = sse(choice("Hello"), choice(" wor"), choice("ld", "length"),
                   {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}, "[DONE]")
    assert await collect(response) == [("Hello", 1, None), (" wor", 1, None), ("ld", 3, "length")]


async def test_sse_without_finish_or_with_error_fails() -> None:
    with pytest.raises(UpstreamError, match="without a finish_reason"):
        await collect(sse(choice("a"), "[DONE]"))
    with pytest.raises(UpstreamError, match="boom"):
        await collect(sse(choice("a"), {"error": {"message": "boom", "code": 500}}))
    with pytest.raises(UpstreamError, match="old boom"):
        await collect(sse(choice("a"), {"object": "error", "message": "old boom", "code": 500}))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
async def test_without_vllm_load_says_how_to_install_it(tmp_path: Path) -> None:
    engine = VllmEngine(EngineConfig(model_path=str(tmp_path), served_model_name="m"), environ={})
    with pytest.raises(RuntimeError, match=r"kaito-runtime-vllm\[vllm\]"):
        await engine.load()
    await engine.close()
