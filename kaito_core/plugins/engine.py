"""The Engine contract: what a runtime's ``engine(config)`` returns and the inference server calls.

The server (``kaito_core.serving``) owns HTTP, limits, queueing, metrics and health policy; an Engine
owns the model: loading it, turning text into tokens, and streaming generated text for many requests
at once. Everything here is engine-neutral.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class EngineConfig:
    """How ``kaito serve`` asks a runtime for an Engine."""

    model_path: str  # a file (GGUF) or a directory (safetensors, or a directory holding one GGUF)
    served_model_name: str
    context_length: int = 0  # 0: the model's own
    threads: int = 0  # CPU threads; 0: the engine decides
    n_gpu_layers: int = 0  # llama.cpp: -1 = all layers on the GPU
    max_batch: int = 8  # sequences decoded together
    chat_template: str | None = None  # overrides the template in the weights
    adapters: Mapping[str, str] = field(default_factory=dict)  # adapter name -> path
    options: Mapping[str, Any] = field(default_factory=dict)  # runtime-specific extras


@dataclass(frozen=True)
class SamplingParams:
    """Per-request generation settings (both KAITO's generate_kwargs and OpenAI's fields map here)."""

    max_tokens: int = 256
    min_tokens: int = 0
    temperature: float = 1.0
    top_k: int = 0  # 0 disables
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    greedy: bool = False  # do_sample=False / temperature 0
    ignore_eos: bool = False  # keep generating past end-of-sequence tokens (benchmarks)
    #: structured output: the text must be JSON matching this JSON Schema (canonical JSON text); an
    #: engine that cannot constrain its output raises RequestError(param="response_format")
    json_schema: str | None = None
    #: log-probabilities: None for none, else how many alternatives per token (0: only the chosen
    #: token's); an engine fills ``Chunk.logprobs`` for every token it accounts for (the server refuses
    #: the request, naming ``logprobs``, when an engine's first tokens come without them)
    logprobs: int | None = None
    #: which of ``EngineConfig.adapters`` this request uses: None for the configured set (every
    #: adapter at its strength, as KAITO applies them), "" for the base model alone, else one name
    adapter: str | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability and the most likely alternatives at its position: natural
    logs of the model's own distribution (log-softmax of the logits, before temperature and the
    sampling filters, as vLLM reports them by default), so greedy and sampled requests agree.

    ``token`` is the token's text (U+FFFD where it holds part of a UTF-8 character), ``bytes`` its raw
    bytes (OpenAI's ``bytes``: the exact piece, even half a character). ``top`` holds the requested
    number of most likely tokens at this position, most likely first, each a TokenLogprob of its own
    (with an empty ``top``): OpenAI reports the bytes of every alternative too, which text alone
    cannot give back for a partial character."""

    token: str
    logprob: float
    bytes: tuple[int, ...] = ()
    top: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """A piece of generated text. The last chunk of a stream carries ``finish_reason``."""

    text: str
    tokens: int = 0  # tokens this chunk accounts for
    finish_reason: str | None = None  # "stop" | "length" | None while streaming
    #: one entry per token of this chunk when ``SamplingParams.logprobs`` is set
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass
class EngineHealth:
    """What the engine knows about itself; the server turns it into /health."""

    loaded: bool = False
    alive: bool = True
    error: str | None = None
    #: monotonic time of the last decode step that made progress (or of loading)
    last_progress: float = field(default_factory=time.monotonic)
    running: int = 0  # sequences being decoded now


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@runtime_checkable
class Engine(Protocol):
    """A loaded model serving many concurrent streams."""

    @property
    def context_length(self) -> int: ...

    async def load(self) -> None:
        """Load the model. Called once before any other call; may take minutes."""
        ...

    def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        """Generate text for ``prompt``. Closing the iterator (a client went away) stops the sequence."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """Turn chat messages into the prompt text, through a sandboxed chat template."""
        ...

    def health(self) -> EngineHealth: ...

    async def close(self) -> None: ...
