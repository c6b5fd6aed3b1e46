"""kaito-presets-phi4: the Phi-4 presets of KAITO v0.12's catalog."""

from kaito_presets_phi4.presets import PRESETS, PRESETS_BY_NAME

__all__ = ["PRESETS", "PRESETS_BY_NAME"]
