"""The inference server (`kaito serve`) and the Engine contract runtimes implement.

Heavy imports (Starlette, uvicorn) live in ``app`` and ``server``; import those modules directly.
"""

from kaito_core.serving.engine import Chunk, Engine, EngineConfig, EngineHealth, SamplingParams
from kaito_core.serving.settings import ServerSettings

__all__ = ["Chunk", "Engine", "EngineConfig", "EngineHealth", "SamplingParams", "ServerSettings"]
