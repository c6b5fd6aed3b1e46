"""The ``kaito serve`` process, started before its arguments are known.

``kaito run`` starts this at once (forked on Linux, else as ``python -m kaito_core.local.prestart``),
so the server's imports (the CLI, the plugins, the engine library) and, when the same Workspace file
ran before, the load of its weights (local/hints.py) overlap with validating, planning and locating
the weights in the parent. It then reads the argument list of ``kaito serve`` and becomes exactly that
command. When the parent gives up first (an invalid file, a port in use), the pipe closes and this
process exits without doing anything.

The web stack (Starlette, pydantic, uvicorn: the largest import) is preloaded only while a prefetched model is
loading. Otherwise ``kaito serve`` starts loading the model on a thread of its own before it imports
the web stack, so that import overlaps the load; preloading it here would make the load wait for it
whenever the parent's planning is done first (the usual case), which is slower than the overlap.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from importlib import import_module
from typing import BinaryIO

#: Engine-neutral modules every `kaito serve` imports before it starts loading; preloaded while the
#: parent plans.
PRELOAD = ("kaito_core.plugins.engine", "kaito_core.serving.settings", "kaito_core.cli.main")


#: The web stack `kaito serve` imports while its model loads (Starlette, uvicorn, the app).
WEB_STACK = "kaito_core.serving.server"


def preload(web_stack: bool = False) -> None:
    """Import what `kaito serve` will, ahead of its arguments; ``web_stack`` only while a prefetched
    model is loading already (otherwise importing it here would hold back the load: module docstring)."""
    for module in PRELOAD:
        try:
            import_module(module)
        except ImportError:  # the real command reports it properly once it runs
            return
    from kaito_core.plugins import default_registry

    # Loads every plugin module, as `kaito serve` would. Runtimes that run without a GPU may also offer
    # `preload_imports()` (their engine library); the plan is not known yet, and importing a CPU
    # runtime's library that ends up unused costs only memory in this process.
    for runtime in default_registry().runtimes().values():
        preload_imports = getattr(runtime, "preload_imports", None)
        if callable(preload_imports) and not runtime.needs_gpu:
            try:
                preload_imports()
            except Exception:  # noqa: S112 - the real command reports a broken runtime once it runs
                continue
    if web_stack:
        with contextlib.suppress(ImportError):
            import_module(WEB_STACK)


def become_server(stream: BinaryIO) -> None:
    """Read the prefetch hint, preload, read the `kaito serve` arguments and run that command.

    ``stream`` carries two JSON lines from ``kaito run``: at once ``{"prefetch": HINT or null}`` (see
    local/hints.py), later the argument list. Returns without serving when ``stream`` closes before the
    arguments come. Raises SystemExit as the command does.
    """
    first = stream.readline()
    if not first.strip():
        stream.close()
        return  # `kaito run` stopped at once
    message = json.loads(first)
    prefetching = isinstance(message, dict) and prefetch(message.get("prefetch"))
    preload(web_stack=prefetching)
    line = stream.readline()
    stream.close()
    if not line.strip():
        return  # `kaito run` stopped before starting the server
    args = json.loads(line)
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        sys.exit("kaito prestart: expected a JSON list of arguments")
    # Nothing else is read from stdin: give the server /dev/null, as a normally started child has.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.argv = ["kaito", *args]
    from kaito_core.cli.main import cli

    cli.main(args=args, prog_name="kaito")


def prefetch(raw_hint: object) -> bool:
    """Start loading the weights the hint names, through its runtime's optional ``prefetch(model,
    n_gpu_layers)``. A process forked from kaito run has its plugins already; a new interpreter loads
    only the hint's plugin distribution for this, so the load starts before the other plugins are
    imported. Any failure just means no prefetch; the real load reports errors."""
    from kaito_core.local.hints import Hint

    hint = Hint.from_json(raw_hint)
    if hint is None:
        return False
    try:
        from kaito_core.plugins import Registry, default_registry

        if default_registry.cache_info().currsize:  # forked from kaito run after it loaded the plugins
            registry = default_registry()
        else:
            registry = Registry()
            registry.load_entry_points(only=[hint.distribution])
        start = getattr(registry.runtime(hint.runtime), "prefetch", None)
        if not callable(start):
            return False
        start(hint.model, hint.n_gpu_layers)
    except Exception:  # a hint is only a hint
        return False
    return True


def main() -> None:
    become_server(sys.stdin.buffer)


if __name__ == "__main__":
    main()
