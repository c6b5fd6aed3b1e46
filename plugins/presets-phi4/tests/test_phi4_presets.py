"""kaito-presets-phi4: registered, and consistent with KAITO v0.12's catalog numbers."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from kaito_presets_phi4 import PRESETS, plugin
from kaito_presets_phi4.presets import SPECS

from kaito_core.plugins import GiB, Preset, Registry

NAMES = [
    "phi-4",
    "phi-4-mini-instruct"
]


def test_the_plugin_registers_the_catalog_names() -> None:
    registry = Registry()
    registry.register(plugin, distribution="kaito-presets-phi4")
    assert sorted(registry.presets()) == sorted([*NAMES, "phi-2"])
    assert registry.preset("phi-2").deprecated
    assert registry.errors() == []


def test_the_entry_point_is_advertised() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="kaito.presets")}
    assert eps.get("phi4") == "kaito_presets_phi4.plugin"


@pytest.mark.parametrize("preset", [p for p in PRESETS if not p.deprecated], ids=lambda p: p.name)
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


def test_a_workspace_naming_phi_2_is_refused_with_kaitos_message() -> None:
    from kaito_core.api import parse_documents, validate_workspace

    registry = Registry()
    registry.register(plugin, distribution="kaito-presets-phi4")
    (document,) = parse_documents(
        "apiVersion: kaito.sh/v1beta1\nkind: Workspace\nmetadata: {name: old}\n"
        "resource: {labelSelector: {matchLabels: {apps: old}}}\ninference: {preset: {name: phi-2}}\n"
    )
    assert document.workspace is not None
    problems = validate_workspace(document.workspace, registry)
    assert [(p.path, p.message) for p in problems if p.is_error] == [
        ("inference.preset.name", "Model phi-2 is deprecated and no longer supported")
    ]
