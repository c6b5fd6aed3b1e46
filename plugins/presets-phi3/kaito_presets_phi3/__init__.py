"""Phi-3 family presets for kaito."""
