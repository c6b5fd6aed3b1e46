"""llama-cpp-python's ctypes bindings first, its high-level API afterwards.

``import llama_cpp`` runs the package's ``__init__``, which imports the bindings (``llama_cpp.llama_cpp``,
~0.02 s) and then the high-level ``Llama`` class with numpy, jinja2, chat formats and grammars
(~0.06-0.09 s on 2 cores). This engine uses the bindings alone, and loading a model is the longest step
of a start, so ``low_level()`` imports only the bindings: the load can start at once, and
``complete_package()`` then runs the package's ``__init__`` on the caller's thread while the load runs
(ctypes releases the GIL). After that, ``import llama_cpp`` anywhere in the process gets the whole
package, as usual. Measured: the load of Gemma 3 270M starts ~0.06-0.09 s sooner.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from importlib.machinery import ModuleSpec
from types import ModuleType

_lock = threading.Lock()
#: The package module created without running its __init__ (completed by complete_package()).
_incomplete: list[tuple[ModuleSpec, ModuleType]] = []


def low_level() -> ModuleType:
    """``llama_cpp.llama_cpp``: every ``llama_*`` function, struct and constant the engine uses."""
    with _lock:
        module = sys.modules.get("llama_cpp.llama_cpp")
        if module is not None:
            return module
        if "llama_cpp" not in sys.modules:
            spec = importlib.util.find_spec("llama_cpp")
            if spec is not None and spec.loader is not None and spec.submodule_search_locations:
                package = importlib.util.module_from_spec(spec)  # the package, its __init__ not run
                sys.modules["llama_cpp"] = package
                try:
                    module = importlib.import_module("llama_cpp.llama_cpp")
                    # what the package's __init__ does first (`from .llama_cpp import *`), so that
                    # llama_cpp._logger can be imported now: it installs its own log callback (Python,
                    # printing everything) when imported, which must happen before the engine sets
                    # its own, not in the middle of a load when complete_package() runs
                    names = getattr(module, "__all__", None)
                    for name in names or [n for n in vars(module) if not n.startswith("_")]:
                        setattr(package, name, getattr(module, name))
                    importlib.import_module("llama_cpp._logger")
                except BaseException:
                    for name in ("llama_cpp", "llama_cpp.llama_cpp", "llama_cpp._logger"):
                        sys.modules.pop(name, None)
                    raise
                _incomplete.append((spec, package))
                return module
    return importlib.import_module("llama_cpp.llama_cpp")  # the plain way (imports the package)


def complete_package() -> None:
    """Run ``llama_cpp``'s ``__init__`` if ``low_level()`` skipped it (the bindings are not re-imported)."""
    with _lock:
        while _incomplete:
            spec, package = _incomplete.pop()
            assert spec.loader is not None
            try:
                spec.loader.exec_module(package)
            except BaseException:
                sys.modules.pop("llama_cpp", None)  # the next `import llama_cpp` tries from scratch
                raise
