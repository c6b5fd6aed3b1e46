"""The ``kaito serve`` process, started before its arguments are known.

``kaito run`` starts this at once (forked on Linux, else as ``python -m kaito_core.local.prestart``),
so the server's imports (the CLI, the plugins, the engine library) overlap with validating, planning
and locating the weights in the parent. It then reads one JSON line — the argument list of ``kaito
serve`` — and becomes exactly that command. When the parent gives up first (an invalid file, a port
in use), the pipe closes and this process exits without doing anything.

The web stack (FastAPI, uvicorn: the largest import) is deliberately not preloaded: ``kaito serve``
starts loading the model on a thread of its own before it imports the web stack, so that import
overlaps the load. Preloading it here would make the load wait for it whenever the parent's planning
is done first (the usual case), which is slower than the overlap.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import import_module
from typing import BinaryIO

#: Engine-neutral modules every `kaito serve` imports before it starts loading; preloaded while the
#: parent plans.
PRELOAD = ("kaito_core.serving.engine", "kaito_core.serving.settings", "kaito_core.cli.main")


def preload() -> None:
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


def become_server(stream: BinaryIO) -> None:
    """Preload, read the `kaito serve` arguments (one JSON line) from ``stream`` and run the command;
    returns (without serving) when ``stream`` closes first. Raises SystemExit as the command does."""
    preload()
    line = stream.readline()
    stream.close()
    if not line.strip():
        return  # `kaito run` stopped before starting the server
    args = json.loads(line)
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        sys.exit("kaito prestart: expected a JSON list of arguments on stdin")
    # Nothing else is read from stdin: give the server /dev/null, as a normally started child has.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.argv = ["kaito", *args]
    from kaito_core.cli.main import cli

    cli.main(args=args, prog_name="kaito")


def main() -> None:
    become_server(sys.stdin.buffer)


if __name__ == "__main__":
    main()
