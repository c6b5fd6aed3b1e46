"""Gemma 3 family presets for kaito, including the CPU-sized 270M."""
