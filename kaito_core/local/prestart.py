"""The ``kaito serve`` process, started before its arguments are known.

``kaito run`` starts this at once (``python -m kaito_core.local.prestart``), so the server's imports
(the CLI, the plugins, CPU runtimes' engine libraries) overlap with validating, planning and locating
the weights in the parent. It then reads the argument list of ``kaito serve`` and becomes exactly that
command, which starts loading the model before it imports the web stack (``Engine.start_loading``).
When the parent gives up first (an invalid file, a port in use), the pipe closes and this process
exits without doing anything. docs/local.md has the measurements that keep this and nothing more.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from importlib import import_module
from typing import BinaryIO

#: Engine-neutral modules every `kaito serve` imports before it starts loading.
PRELOAD = ("kaito_core.plugins", "kaito_core.serving.settings", "kaito_core.cli.main")


def preload() -> None:
    """Import what `kaito serve` will, ahead of its arguments."""
    try:
        for module in PRELOAD:
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
            with contextlib.suppress(Exception):  # the real command reports a broken runtime
                preload_imports()


def become_server(stream: BinaryIO) -> None:
    """Preload, read the `kaito serve` arguments (one JSON list) and run that command.

    Returns without serving when ``stream`` closes before the arguments come. Raises SystemExit as the
    command does.
    """
    preload()
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


def main() -> None:
    become_server(sys.stdin.buffer)


if __name__ == "__main__":
    main()
