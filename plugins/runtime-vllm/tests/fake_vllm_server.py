"""A small server speaking vLLM's OpenAI API as vLLM 0.10 does, for tests without a GPU.

Endpoints and wire format follow vLLM's ``vllm/entrypoints/openai/api_server.py``: ``/health`` (200,
empty body), ``/v1/models`` (model cards with ``max_model_len``, LoRA modules with ``parent``),
``/tokenize`` (``count``/``max_model_len``/``tokens``), and ``/v1/completions`` streaming as SSE:
``data: {json}`` events with ``text``/``finish_reason``/``stop_reason`` per choice, ``usage: null``
until a last ``choices: []`` event with usage (``stream_options.include_usage``), then
``data: [DONE]``. Errors are ``{"object": "error", "message", "type", "param", "code"}``.

The "model" is deterministic so tests can predict it: tokens are whitespace-led words, BOS is
``<s>``, and the completion repeats the prompt's words in reverse order, then stops (EOS) unless
``ignore_eos``. ``/_requests`` returns the completion bodies received (test introspection).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

BOS = "<s>"
_TOKEN = re.compile(r"\s*\S+")


def tokenize(text: str, add_special_tokens: bool) -> list[str]:
    """BOS written in the text (a rendered chat template) is the special token, as in HF tokenizers."""
    lead: list[str] = []
    if text.startswith(BOS):
        lead, text = [BOS], text[len(BOS):]
    if add_special_tokens:
        lead = [BOS, *lead]
    return [*lead, *_TOKEN.findall(text)]


def error(message: str, code: int = 400, kind: str = "BadRequestError") -> JSONResponse:
    return JSONResponse({"object": "error", "message": message, "type": kind, "param": None, "code": code},
                        status_code=code)


def build_app(name: str, max_model_len: int, loras: dict[str, str], token_delay: float) -> FastAPI:
    app = FastAPI()
    received: list[dict[str, Any]] = []
    models = {name, *loras}

    health_status = [200]

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=health_status[0])

    @app.post("/_health_status/{code}")
    async def set_health(code: int) -> dict[str, int]:
        health_status[0] = code  # vLLM answers 500 once its engine core died
        return {"status": code}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        created = int(time.time())
        cards = [{"id": name, "object": "model", "created": created, "owned_by": "vllm", "root": name,
                  "parent": None, "max_model_len": max_model_len, "permission": []}]
        cards += [{"id": lora, "object": "model", "created": created, "owned_by": "vllm", "root": path,
                   "parent": name, "max_model_len": None, "permission": []} for lora, path in loras.items()]
        return {"object": "list", "data": cards}

    @app.post("/tokenize")
    async def tokenize_endpoint(request: Request) -> Any:
        body = await request.json()
        if body.get("model") not in models:
            return error(f"The model `{body.get('model')}` does not exist.", 404, "NotFoundError")
        tokens = tokenize(body["prompt"], body.get("add_special_tokens", True))
        return {"count": len(tokens), "max_model_len": max_model_len,
                "tokens": [abs(hash(t)) % 32000 for t in tokens], "token_strs": None}

    @app.get("/_requests")
    async def requests_seen() -> list[dict[str, Any]]:
        return received

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        received.append(body)
        model = body.get("model")
        if model not in models:
            return error(f"The model `{model}` does not exist.", 404, "NotFoundError")
        prompt_tokens = tokenize(body["prompt"], body.get("add_special_tokens", True))
        max_tokens = int(body.get("max_tokens") or 16)
        if len(prompt_tokens) + max_tokens > max_model_len:
            return error(
                f"This model's maximum context length is {max_model_len} tokens. However, you requested "
                f"{len(prompt_tokens) + max_tokens} tokens ({len(prompt_tokens)} in the messages, "
                f"{max_tokens} in the completion). Please reduce the length of the messages or completion."
            )
        words = [t.strip() for t in prompt_tokens if t != BOS]
        output = [" " + w for w in reversed(words)] or [" ."]
        if body.get("ignore_eos"):
            output = (output * (max_tokens // len(output) + 1))[:max_tokens]
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

        wanted = body.get("logprobs")

        def logprobs(i: int, token: str, offset: int) -> dict[str, Any] | None:
            """vLLM's legacy shape for one token: the chosen one (here the most likely, -0.25 per step)
            among ``logprobs`` alternatives " alt1", " alt2"... one nat less likely each."""
            if wanted is None:
                return None
            value = -0.25 * (i + 1)
            top = {token: value, **{f" alt{k}": value - k for k in range(1, int(wanted) + 1)}}
            return {"text_offset": [offset], "token_logprobs": [value], "tokens": [token],
                    "top_logprobs": [top]}

        def event(text: str, finish: str | None, stop_reason: str | None = None,
                  lp: dict[str, Any] | None = None) -> str:
            choice = {"index": 0, "text": text, "logprobs": lp, "finish_reason": finish,
                      "stop_reason": stop_reason}
            return "data: " + json.dumps({"id": rid, "object": "text_completion", "created": created,
                                          "model": model, "choices": [choice], "usage": None}) + "\n\n"

        async def stream() -> AsyncIterator[str]:
            produced, generated = 0, ""
            for i, token in enumerate(output[:max_tokens]):
                if token_delay:
                    await asyncio.sleep(token_delay)
                produced += 1
                candidate = generated + token
                hit = next((s for s in stops if s in candidate), None)
                lp = logprobs(i, token, len(generated))
                if hit is not None:  # vLLM trims the stop string and names it in stop_reason
                    cut = max(candidate.index(hit), len(generated))
                    yield event(candidate[len(generated):cut], "stop", hit, lp)
                    break
                generated += token
                last = i == min(len(output), max_tokens) - 1
                finish = None if not last else ("length" if produced >= max_tokens else "stop")
                yield event(token, finish, lp=lp)
            if body.get("stream_options", {}).get("include_usage"):
                usage = {"prompt_tokens": len(prompt_tokens), "total_tokens": len(prompt_tokens) + produced,
                         "completion_tokens": produced}
                yield "data: " + json.dumps({"id": rid, "object": "text_completion", "created": created,
                                             "model": model, "choices": [], "usage": usage}) + "\n\n"
            yield "data: [DONE]\n\n"

        if not body.get("stream"):
            return error("this test server only streams", 400)
        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--lora-modules", nargs="*", default=[])
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--startup-delay", type=float, default=0.0)
    parser.add_argument("--exit-code", type=int, default=None, help="exit at start-up with this code")
    parser.add_argument("--pid-file", default=None, help="write this process's id here")
    args, _ = parser.parse_known_args()  # the rest of vLLM's flags are accepted and ignored
    if args.pid_file:
        with open(args.pid_file, "w") as handle:
            handle.write(str(os.getpid()))
    if args.exit_code is not None:
        print("fake vLLM: CUDA out of memory (simulated)", flush=True)
        raise SystemExit(args.exit_code)
    time.sleep(args.startup_delay)
    loras = dict(m.split("=", 1) for m in args.lora_modules)
    app = build_app(args.served_model_name, args.max_model_len, loras, args.token_delay)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
