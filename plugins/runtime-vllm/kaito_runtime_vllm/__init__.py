"""The vLLM inference runtime for kaito: vLLM's OpenAI server behind `kaito serve`."""

from kaito_runtime_vllm.args import VllmOptionError, VllmSettings, option_args, server_args
from kaito_runtime_vllm.runtime import IMAGE, OVERHEAD_BYTES, VllmRuntime

__all__ = [
    "IMAGE",
    "OVERHEAD_BYTES",
    "VllmOptionError",
    "VllmRuntime",
    "VllmSettings",
    "option_args",
    "server_args",
]
