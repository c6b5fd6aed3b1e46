"""kaito-presets-deepseek: registered, and consistent with KAITO v0.12's catalog numbers."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from kaito_presets_deepseek import PRESETS, plugin
from kaito_presets_deepseek.presets import SPECS

from kaito_core.plugins import GiB, Preset, Registry

NAMES = [
    "deepseek-r1-0528",
    "deepseek-r1-distill-llama-8b",
    "deepseek-r1-distill-qwen-14b",
    "deepseek-v3-0324"
]


def test_the_plugin_registers_the_catalog_names() -> None:
    registry = Registry()
    registry.register(plugin, distribution="kaito-presets-deepseek")
    assert sorted(registry.presets()) == NAMES
    assert registry.errors() == []


def test_the_entry_point_is_advertised() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="kaito.presets")}
    assert eps.get("deepseek") == "kaito_presets_deepseek.plugin"


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_numbers_hold_together(preset: Preset) -> None:
    spec = next(s for s in SPECS if s["name"] == preset.name)
    (weights,) = preset.formats
    assert weights.total_bytes == spec["weights_bytes"] == preset.requirements.total_gpu_memory
    assert all(f.sha256 is None for f in weights.files)  # none known: never invented
    assert preset.requirements.disk >= weights.total_bytes + 80 * GiB
    assert len(preset.source.revision) == 40 and preset.source.url.endswith(preset.source.repo)
    arch = preset.architecture
    if not spec["mla"]:
        assert arch.attention_heads % arch.kv_heads == 0
    assert arch.kv_cache_bytes_per_token() == 2 * arch.layers * arch.kv_heads * arch.head_dim * 2
    assert preset.default_runtime in preset.runtimes
    options = preset.runtime_defaults["vllm"]
    if "tool-call-parser" in options:
        assert options["enable-auto-tool-choice"] is True  # a bare flag
