"""Structured output through llama.cpp grammars, with the official openai client's parse helper, and
the chat fields this server does not offer refused by name."""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import openai
import pytest
from pydantic import BaseModel

MODEL_NAME = "gemma-3-270m"  # what conftest serves


class Verdict(BaseModel):
    # bounded fields only: a 270M model must finish the object inside the token cap
    answer: bool
    colour: Literal["red", "green", "blue"]


def _client(served: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key="unused")


def test_json_schema_through_the_openai_parse_helper(gemma_server: Any) -> None:
    completion = _client(gemma_server).beta.chat.completions.parse(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "Is the sky blue? Answer with a colour too."}],
        response_format=Verdict,
        temperature=0,
        max_tokens=gemma_server.cap,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Verdict)


def test_json_object_is_valid_json_streamed_too(gemma_server: Any) -> None:
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "Describe a cat as JSON."}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "flags", "schema": {"type": "object", "properties": {
                "cat": {"type": "boolean"}, "legs": {"enum": [2, 4]}}, "required": ["cat", "legs"]}},
        },
        "temperature": 0.7,
        "seed": 3,
        "max_tokens": gemma_server.cap,
        "stream": True,
    }  # fmt: skip
    text = ""
    with httpx.stream("POST", gemma_server.url + "/v1/chat/completions", json=body, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    text += choice["delta"].get("content") or ""
    value = json.loads(text)
    assert isinstance(value["cat"], bool) and value["legs"] in (2, 4)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ],
)
def test_fields_not_offered_are_refused_by_name(gemma_server: Any, extra: dict[str, Any], field: str) -> None:
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, **extra}
    response = httpx.post(gemma_server.url + "/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400 and response.json()["error"]["param"] == field, response.text
