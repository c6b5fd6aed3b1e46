"""Prometheus metrics of one server (a registry per app, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Paths counted by name; anything else is "other" (unbounded label values would grow the registry).
KNOWN_PATHS = frozenset(
    {"/", "/health", "/metrics", "/chat", "/v1/chat/completions", "/v1/completions", "/v1/models"}
)

_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_TPS_BUCKETS = (1, 5, 10, 20, 40, 60, 80, 100, 150, 200, 400, 800)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "kaito_requests",
            "HTTP requests by endpoint and status code",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.prompt_tokens = Counter("kaito_prompt_tokens", "Prompt tokens processed", registry=self.registry)
        self.generation_tokens = Counter(
            "kaito_generation_tokens", "Tokens generated", registry=self.registry
        )
        self.time_to_first_token = Histogram(
            "kaito_time_to_first_token_seconds",
            "Time from admission request to the first generated text",
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.tokens_per_second = Histogram(
            "kaito_generation_tokens_per_second",
            "Per-sequence decode speed after the first token",
            buckets=_TPS_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge("kaito_queue_depth", "Requests waiting for a slot", registry=self.registry)
        self.running = Gauge("kaito_requests_running", "Sequences being generated", registry=self.registry)

    @staticmethod
    def endpoint(path: str) -> str:
        return path if path in KNOWN_PATHS else "other"
