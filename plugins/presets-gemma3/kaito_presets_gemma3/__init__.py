"""Gemma 3 family presets for kaito, including the CPU-sized 270M (GGUF Q4_K_M from PyPI)."""

from kaito_presets_gemma3.presets import GEMMA_CHAT_TEMPLATE, PRESETS, PRESETS_BY_NAME

__all__ = ["GEMMA_CHAT_TEMPLATE", "PRESETS", "PRESETS_BY_NAME"]
