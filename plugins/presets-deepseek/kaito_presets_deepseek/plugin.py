"""Entry point of kaito-presets-deepseek (group ``kaito.presets``): registers the DeepSeek presets."""

from __future__ import annotations

from collections.abc import Callable

from kaito_core.plugins import Preset, hookimpl
from kaito_presets_deepseek.presets import PRESETS


@hookimpl
def kaito_register_presets(register: Callable[[Preset], None]) -> None:
    for preset in PRESETS:
        register(preset)
