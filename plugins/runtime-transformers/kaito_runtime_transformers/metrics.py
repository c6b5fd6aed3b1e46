"""Training progress on ``/metrics`` (Prometheus text), for a tuning Job's pod to be scraped."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server


class TrainingMetrics:
    """Gauges of the newest step, its loss and the throughput; ``serve(port)`` exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.steps = Gauge("kaito_tune_step", "Optimizer steps done", registry=self.registry)
        self.max_steps = Gauge("kaito_tune_max_steps", "Optimizer steps planned", registry=self.registry)
        self.loss = Gauge(
            "kaito_tune_loss", "Training loss of the newest logged step", registry=self.registry
        )
        self.samples_per_second = Gauge(
            "kaito_tune_samples_per_second", "Training samples per second of the run", registry=self.registry
        )
        self._server: Any = None

    def step(self, step: int, max_steps: int, loss: float) -> None:
        self.steps.set(step)
        self.max_steps.set(max_steps)
        self.loss.set(loss)

    def serve(self, port: int, host: str = "0.0.0.0") -> int:  # noqa: S104 - a pod is scraped on its IP
        """Serve /metrics on ``port`` (0: a free one); returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
