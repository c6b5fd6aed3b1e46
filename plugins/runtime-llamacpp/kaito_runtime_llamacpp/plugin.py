"""Entry point of the kaito-runtime-llamacpp distribution (group ``kaito.runtimes``)."""

from __future__ import annotations

from collections.abc import Callable

from kaito_core.plugins import Runtime, hookimpl
from kaito_runtime_llamacpp.runtime import LlamaCppRuntime

RUNTIME = LlamaCppRuntime()


@hookimpl
def kaito_register_runtimes(register: Callable[[Runtime], None]) -> None:
    register(RUNTIME)
