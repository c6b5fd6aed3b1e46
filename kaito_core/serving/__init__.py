"""The inference server (`kaito serve`): KAITO's /chat, the OpenAI API, health and metrics over one
Engine (the contract runtimes implement is in ``kaito_core.plugins``).

Heavy imports (Starlette, uvicorn) live in ``app`` and ``server``; import those modules directly.
"""
