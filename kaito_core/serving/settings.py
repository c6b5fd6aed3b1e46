"""Server-side limits and policy (the engine's own knobs live in EngineConfig)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerSettings:
    served_model_name: str
    #: Sequences generated at once; requests beyond it wait in the queue. Match EngineConfig.max_batch.
    max_concurrency: int = 8
    #: Requests allowed to wait for a slot; one more is answered 429 with Retry-After.
    queue_size: int = 64
    #: Largest max_tokens (or KAITO max_new_tokens) a request may ask for; above it: 400.
    max_tokens_cap: int = 4096
    #: Largest `n` (choices per request); above it: 400.
    max_n: int = 4
    #: Bearer keys accepted; empty: no authentication.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: Seconds in-flight requests get to finish after SIGTERM.
    grace_period: float = 30.0
    #: /health turns 503 when requests are running but no decode step made progress for this long.
    stall_timeout: float = 60.0
    #: Seconds a 429 answer tells the client to wait.
    retry_after: int = 1
    #: Called (from the event loop) when loading or the warm-up generation fails; `kaito serve` exits.
    on_load_failure: Callable[[BaseException], None] | None = field(default=None, repr=False, compare=False)
