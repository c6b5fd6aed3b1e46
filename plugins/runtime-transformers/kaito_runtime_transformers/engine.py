"""An Engine over Hugging Face transformers, with peft LoRA adapters applied at their strength.

Adapters: each ``EngineConfig.adapters`` entry (name -> a directory with ``adapter_config.json`` and
``adapter_model.safetensors``) is loaded with peft; all of them are active together, each scaled by its
strength (``options["strength.<name>"]``, a number in [0, 1], default 1), as KAITO's transformers
runtime combines them. peft's ``set_scale`` multiplies the adapter's ``lora_alpha / r`` by the
strength, so strength 0 contributes nothing (the base model's answers) and 1 the adapter as trained.

Per request (``SamplingParams.adapter``): None runs every adapter at its strength; "" the base model
(peft's ``disable_adapter``); a name that adapter alone at its strength (``set_adapter``). Generations
run one at a time (below), so each sets its own choice before its first forward pass and no two
choices ever mix in one batch.

Generation: one sequence at a time on a worker thread (transformers' forward is not re-entrant on one
model); the server's queue holds the others. Each step feeds the new token with the KV cache, samples
with the request's settings, and hands the new text to asyncio; closing the stream stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from kaito_core.plugins import (
    FALLBACK_TEMPLATE,
    ChatMessage,
    ChatTemplate,
    Chunk,
    EngineConfig,
    EngineHealth,
    RequestError,
    SamplingParams,
    TokenLogprob,
)
from kaito_runtime_transformers.logprobs import TokenTexts, token_logprob

log = logging.getLogger("kaito.transformers")


class EngineError(RuntimeError):
    """The model or an adapter could not be loaded."""


def adapter_strengths(config: EngineConfig) -> dict[str, float]:
    strengths: dict[str, float] = {}
    for name in config.adapters:
        raw = config.options.get(f"strength.{name}", 1.0)
        try:
            value = float(str(raw))
        except (TypeError, ValueError):
            raise EngineError(f"adapter {name}: strength {raw!r} is not a number in [0, 1]") from None
        if not 0.0 <= value <= 1.0:
            raise EngineError(f"adapter {name}: strength {value} is not in [0, 1]")
        strengths[name] = value
    return strengths


def find_model_dir(path: str) -> Path:
    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise EngineError(
            f"{path} has no config.json; the transformers runtime serves a Hugging Face model directory "
            "(config.json, *.safetensors, tokenizer files)"
        )
    if not any(directory.glob("*.safetensors")):
        raise EngineError(f"{path} has no *.safetensors weights (pickled .bin weights are not loaded)")
    return directory


class TransformersEngine:
    """The Engine contract (kaito_core.plugins.Engine) over ``AutoModelForCausalLM``."""

    def __init__(self, config: EngineConfig) -> None:
        self.model_dir = find_model_dir(config.model_path)
        self.config = config
        self.strengths = adapter_strengths(config)
        for name, location in config.adapters.items():
            if not (Path(location) / "adapter_config.json").is_file():
                raise EngineError(f"adapter {name}: {location} has no adapter_config.json (a peft adapter)")
        self._health = EngineHealth()
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._template: ChatTemplate | None = None
        self._context = 0
        self._device = "cpu"
        self._texts: TokenTexts | None = None  # token texts for log-probabilities, on first use

    @property
    def context_length(self) -> int:
        return self._context

    async def load(self) -> None:
        try:
            await asyncio.to_thread(self._load)
        except Exception as exc:
            self._health.error = f"{type(exc).__name__}: {exc}"
            self._health.alive = False
            raise
        self._health.loaded = True
        self._health.last_progress = time.monotonic()

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        on_gpu = torch.cuda.is_available() and self.config.options.get("device", "auto") != "cpu"
        self._device = "cuda" if on_gpu else "cpu"
        dtype = torch.bfloat16 if on_gpu else torch.float32
        trust = bool(self.config.options.get("trust_remote_code", False))  # only when asked for
        self._tokenizer = AutoTokenizer.from_pretrained(
            str(self.model_dir), local_files_only=True, trust_remote_code=trust
        )
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(self.model_dir), dtype=dtype, local_files_only=True, trust_remote_code=trust,
            use_safetensors=True,
        )  # fmt: skip
        if self.config.adapters:
            model = self._with_adapters(model)
        self._model = model.to(self._device).eval()
        limit = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self._context = min(self.config.context_length or limit, limit)
        source = self.config.chat_template or self._tokenizer.chat_template or FALLBACK_TEMPLATE
        self._template = ChatTemplate(
            source, bos_token=self._tokenizer.bos_token or "", eos_token=self._tokenizer.eos_token or ""
        )
        log.info("loaded %s on %s (adapters: %s)", self.model_dir, self._device,
                 ", ".join(f"{n}@{s}" for n, s in self.strengths.items()) or "none")  # fmt: skip

    def _with_adapters(self, model: Any) -> Any:
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        names = list(self.config.adapters)
        peft_model: Any = PeftModel.from_pretrained(
            model, self.config.adapters[names[0]], adapter_name=names[0]
        )
        for name in names[1:]:
            peft_model.load_adapter(self.config.adapters[name], adapter_name=name)
        peft_model.base_model.set_adapter(names)  # every adapter active together
        for module in peft_model.modules():
            if isinstance(module, LoraLayer):
                for name, strength in self.strengths.items():
                    if name in module.scaling:
                        module.set_scale(name, strength)
        return peft_model

    def _check_adapter(self, choice: str | None) -> None:
        if choice and choice not in self.config.adapters:
            known = ", ".join(self.config.adapters) or "none"
            raise RequestError(f"no adapter named {choice!r} (adapters: {known})", param="model", status=404)

    @contextlib.contextmanager
    def _adapters_for(self, choice: str | None) -> Any:
        """The model with the request's adapter choice applied (held under the generation lock)."""
        if not self.config.adapters:
            yield
            return
        if choice == "":
            with self._model.disable_adapter():
                yield
            return
        wanted = list(self.config.adapters) if choice is None else [choice]
        if self._model.base_model.active_adapters != wanted:
            self._model.base_model.set_adapter(wanted)
        yield

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        assert self._template is not None, "load() first"
        return self._template.render(messages)

    def health(self) -> EngineHealth:
        return self._health

    async def close(self) -> None:
        self._model = None

    def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        return self._stream(prompt, params)

    async def _stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        self._check_adapter(params.adapter)
        ids = self._tokenizer(prompt, add_special_tokens=True)["input_ids"]
        if len(ids) + params.max_tokens > self._context:
            raise RequestError(
                f"the prompt ({len(ids)} tokens) and max_tokens ({params.max_tokens}) exceed the context "
                f"length {self._context}"
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Chunk | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Chunk | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        worker = loop.run_in_executor(None, self._generate, ids, params, stop, put)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await worker

    def _generate(self, ids: list[int], params: SamplingParams, stop: threading.Event, put: Any) -> None:
        import torch

        try:
            with self._lock, torch.inference_mode(), self._adapters_for(params.adapter):
                self._health.running = 1
                self._decode(torch, ids, params, stop, put)
        except BaseException as exc:  # reaches the request, not the thread's void
            put(exc)
        finally:
            self._health.running = 0
            put(None)

    def _decode(
        self, torch: Any, ids: list[int], params: SamplingParams, stop: threading.Event, put: Any
    ) -> None:
        generator = torch.Generator(device=self._device)
        generator.manual_seed(params.seed if params.seed is not None else int(time.time_ns() % 2**31))
        eos = set(_as_list(self._tokenizer.eos_token_id)) | set(_as_list(self._model.config.eos_token_id))
        out: list[int] = []
        text = ""
        past = None
        feed = torch.tensor([ids], device=self._device)
        for _ in range(params.max_tokens):
            if stop.is_set():
                return
            result = self._model(input_ids=feed, past_key_values=past, use_cache=True)
            past = result.past_key_values
            logits = result.logits[0, -1].float()
            # the model's own distribution: before _sample applies penalties to these logits in place
            logprobs = None if params.logprobs is None else torch.log_softmax(logits, dim=-1)
            token = _sample(torch, logits, out, params, generator)
            self._health.last_progress = time.monotonic()
            entry = () if logprobs is None else (self._logprob(torch, logprobs, token, params),)
            if token in eos and not params.ignore_eos and len(out) >= params.min_tokens:
                put(Chunk("", tokens=1, finish_reason="stop", logprobs=entry))  # counted, as vLLM does
                return
            out.append(token)
            full = self._tokenizer.decode(out, skip_special_tokens=True)
            cut = _stop_at(full, params.stop)
            if cut is not None:  # this token is counted (and its logprob reported), its text cut
                put(Chunk(full[len(text) : cut] if cut > len(text) else "", 1, "stop", entry))
                return
            if full.endswith("\ufffd"):
                put(Chunk("", tokens=1, logprobs=entry))  # half a multi-byte character: wait for the rest
            else:
                put(Chunk(full[len(text) :], tokens=1, logprobs=entry))
                text = full
            feed = torch.tensor([[token]], device=self._device)
        put(Chunk("", finish_reason="length"))

    def _logprob(self, torch: Any, logprobs: Any, token: int, params: SamplingParams) -> TokenLogprob:
        if self._texts is None:
            self._texts = TokenTexts(self._tokenizer)
        return token_logprob(torch, self._texts, logprobs, token, params.logprobs or 0)


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]


def _stop_at(text: str, stops: Sequence[str]) -> int | None:
    found = [text.find(s) for s in stops if s and s in text]
    return min(found) if found else None


def _sample(torch: Any, logits: Any, previous: list[int], params: SamplingParams, generator: Any) -> int:
    if params.repetition_penalty != 1.0 and previous:
        seen = torch.tensor(sorted(set(previous)), device=logits.device)
        values = logits[seen]
        logits[seen] = torch.where(
            values > 0, values / params.repetition_penalty, values * params.repetition_penalty
        )
    if params.greedy or params.temperature <= 0:
        return int(torch.argmax(logits))
    logits = logits / params.temperature
    if params.top_k > 0:
        kth = torch.topk(logits, min(params.top_k, logits.numel())).values[-1]
        logits = torch.where(logits < kth, torch.full_like(logits, float("-inf")), logits)
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
        mask = torch.zeros_like(probs, dtype=torch.bool)
        mask[order[keep]] = True
        probs = torch.where(mask, probs, torch.zeros_like(probs))
    if params.min_p > 0:
        probs = torch.where(probs >= params.min_p * probs.max(), probs, torch.zeros_like(probs))
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
