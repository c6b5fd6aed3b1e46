"""Adapters by name, as vLLM serves them: /v1/models lists the base model and each adapter (its parent
the base), a request's ``model`` (or /chat's ``adapter``) becomes SamplingParams.adapter, an unknown name
is a 404 naming what is served. Through real HTTP and the official openai client; the engine records
the choice it was handed (what each engine does with it is tested with the real runtimes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from kaito_core.plugins import Chunk, SamplingParams

from .conftest import ScriptedEngine, healthy, wait_for


class RecordingEngine(ScriptedEngine):
    def __init__(self) -> None:
        super().__init__()
        self.choices: list[str | None] = []

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        if prompt != "Hello":  # the server's warm-up
            self.choices.append(params.adapter)
        async for chunk in super().stream(prompt, params):
            yield chunk


@pytest.fixture
def served(serve):  # type: ignore[no-untyped-def]
    engine = RecordingEngine()
    server = serve(engine, adapters=("tuned", "terse"))
    wait_for(lambda: healthy(server.url))
    return engine, server


def test_models_lists_base_and_adapters_with_their_parent(served) -> None:  # type: ignore[no-untyped-def]
    _, server = served
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none")
    cards = {card.id: card for card in client.models.list()}
    assert list(cards) == ["scripted", "tuned", "terse"]
    assert cards["scripted"].model_extra.get("parent") is None
    assert cards["tuned"].model_extra["parent"] == "scripted"
    assert cards["terse"].model_extra["parent"] == "scripted"


def test_openai_model_picks_the_adapter(served) -> None:  # type: ignore[no-untyped-def]
    engine, server = served
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none")
    messages = [{"role": "user", "content": "hi"}]
    reply = client.chat.completions.create(model="tuned", messages=messages, max_tokens=2)
    assert reply.model == "tuned"
    client.chat.completions.create(model="scripted", messages=messages, max_tokens=2)
    completion = client.completions.create(model="terse", prompt="hi", max_tokens=2)
    assert completion.model == "terse"
    httpx.post(server.url + "/v1/completions", json={"prompt": "hi", "max_tokens": 2}).raise_for_status()
    # an adapter's name: that adapter; the base model's: the base alone; none: the configured set
    assert engine.choices == ["tuned", "", "terse", None]


def test_unknown_model_is_404_naming_what_is_served(served) -> None:  # type: ignore[no-untyped-def]
    engine, server = served
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none")
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    message = str(caught.value)
    assert "`nope` does not exist" in message
    assert "`scripted`, `tuned`, `terse`" in message
    assert engine.choices == []


def test_kaito_chat_takes_an_adapter_field(served) -> None:  # type: ignore[no-untyped-def]
    engine, server = served
    kwargs = {"max_new_tokens": 2}
    for body in ({"adapter": "tuned"}, {"adapter": ""}, {"adapter": "scripted"}, {}):
        answer = httpx.post(server.url + "/chat", json={"prompt": "hi", "generate_kwargs": kwargs, **body})
        assert answer.status_code == 200, answer.text
    assert engine.choices == ["tuned", "", "", None]
    wrong = httpx.post(server.url + "/chat", json={"prompt": "hi", "adapter": "nope"})
    assert wrong.status_code == 404
    assert "nope" in wrong.text and "adapter" in wrong.text and "`tuned`" in wrong.text


def test_without_adapters_the_base_name_is_the_only_model(serve) -> None:  # type: ignore[no-untyped-def]
    engine = RecordingEngine()
    server = serve(engine)
    wait_for(lambda: healthy(server.url))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none")
    assert [card.id for card in client.models.list()] == ["scripted"]
    with pytest.raises(openai.NotFoundError, match="this server serves `scripted`"):
        client.completions.create(model="tuned", prompt="hi", max_tokens=2)
