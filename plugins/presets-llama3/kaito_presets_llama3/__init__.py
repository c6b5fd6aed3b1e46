"""kaito-presets-llama3: the Llama 3 presets of KAITO v0.12's catalog."""

from kaito_presets_llama3.presets import PRESETS, PRESETS_BY_NAME

__all__ = ["PRESETS", "PRESETS_BY_NAME"]
