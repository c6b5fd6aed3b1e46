"""Server-side limits and policy (the engine's own knobs live in EngineConfig)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerSettings:
    served_model_name: str
    #: The LoRA adapters the engine serves (EngineConfig.adapters' names): /v1/models lists each with the
    #: base model as its parent, a request's ``model`` (or /chat's ``adapter``) picks one.
    adapters: tuple[str, ...] = ()
    #: Sequences generated at once; requests beyond it wait in the queue. Match EngineConfig.max_batch.
    max_concurrency: int = 8
    #: Requests allowed to wait for a slot; one more is answered 429 with Retry-After.
    queue_size: int = 64
    #: Largest max_tokens (or KAITO max_new_tokens) a request may ask for; above it: 400.
    max_tokens_cap: int = 4096
    #: Largest `n` (choices per request); above it: 400.
    max_n: int = 4
    #: Largest request body in bytes; above it: 413, before the body is read.
    max_body_bytes: int = 4 * 1024 * 1024
    #: A prompt (or the messages' text) longer than context length x this many characters is refused
    #: before it is tokenized: no token of a real vocabulary averages more, and tokenizing a huge text
    #: takes seconds (llama.cpp's tokenizer is quadratic on some inputs).
    max_chars_per_token: int = 16
    #: Threads that tokenize and render chat templates (off the event loop); more requests wait for one.
    tokenizer_threads: int = 2
    #: Bearer keys accepted; empty: no authentication.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: Seconds in-flight requests get to finish after SIGTERM.
    grace_period: float = 30.0
    #: Seconds a connection may take to send its request headers (idle or half-sent ones are closed).
    header_timeout: float = 10.0
    #: /health turns 503 when requests are running but no decode step made progress for this long.
    stall_timeout: float = 60.0
    #: Seconds a 429 answer tells the client to wait.
    retry_after: int = 1
    #: Called (from the event loop) when loading or the warm-up generation fails; `kaito serve` exits.
    on_load_failure: Callable[[BaseException], None] | None = field(default=None, repr=False, compare=False)
