"""The vLLM inference runtime for kaito."""
