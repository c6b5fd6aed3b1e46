"""Entry point of kaito-presets-mistral (group ``kaito.presets``): registers the Mistral presets."""

from __future__ import annotations

from collections.abc import Callable

from kaito_core.plugins import Preset, hookimpl
from kaito_presets_mistral.presets import PRESETS


@hookimpl
def kaito_register_presets(register: Callable[[Preset], None]) -> None:
    for preset in PRESETS:
        register(preset)
