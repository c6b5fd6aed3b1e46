"""kaito-presets-gptoss: the gpt-oss presets of KAITO v0.12's catalog."""

from kaito_presets_gptoss.presets import PRESETS, PRESETS_BY_NAME

__all__ = ["PRESETS", "PRESETS_BY_NAME"]
