"""Phi-3 family presets for kaito: phi-3-mini (4k, 128k), phi-3-medium (4k, 128k), phi-3.5-mini."""

from kaito_presets_phi3.presets import PRESETS, PRESETS_BY_NAME

__all__ = ["PRESETS", "PRESETS_BY_NAME"]
