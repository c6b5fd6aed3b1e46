"""Entry point of kaito-presets-llama3 (group ``kaito.presets``): registers the Llama 3 presets."""

from __future__ import annotations

from collections.abc import Callable

from kaito_core.plugins import Preset, hookimpl
from kaito_presets_llama3.presets import PRESETS


@hookimpl
def kaito_register_presets(register: Callable[[Preset], None]) -> None:
    for preset in PRESETS:
        register(preset)
