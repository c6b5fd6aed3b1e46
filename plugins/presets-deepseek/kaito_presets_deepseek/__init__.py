"""kaito-presets-deepseek: the DeepSeek presets of KAITO v0.12's catalog."""

from kaito_presets_deepseek.presets import PRESETS, PRESETS_BY_NAME

__all__ = ["PRESETS", "PRESETS_BY_NAME"]
