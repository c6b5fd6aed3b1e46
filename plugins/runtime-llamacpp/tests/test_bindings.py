"""llama-cpp-python's bindings first, its high-level package afterwards (bindings.py), in a fresh process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CODE = """
import sys
from pathlib import Path
from kaito_runtime_llamacpp.bindings import low_level
L = low_level()
# the bindings alone: none of the high-level API (numpy, jinja2, chat formats) yet
assert "llama_cpp.llama" not in sys.modules and "numpy" not in sys.modules, sorted(sys.modules)
import llama_cpp
assert not hasattr(llama_cpp, "Llama") and llama_cpp.llama_decode is L.llama_decode

from kaito_runtime_llamacpp import engine
engine.prefetch_model(sys.argv[1], 0)  # starts the load, then completes the package meanwhile
import llama_cpp
from llama_cpp import Llama, llama_chat_format  # the whole package, as any other user expects it
assert llama_cpp.llama_decode is L.llama_decode
model = engine._take_prefetched(engine._model_key(Path(sys.argv[1]), 0, False))
assert model, "the prefetched load failed"
L.llama_model_free(model)
print("ok")
"""


def test_the_load_starts_on_the_bindings_and_the_package_is_whole_afterwards(gemma_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", CODE, str(gemma_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr
    # llama_cpp._logger installs a printing log callback when imported; it was imported before the
    # engine silenced llama.cpp's log, so the load printed nothing
    assert result.stderr == ""
