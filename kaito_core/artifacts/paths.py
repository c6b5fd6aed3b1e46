"""Default locations: ``KAITO_HOME`` (else ``~/.cache/kaito``) holds ``blobs/`` (the pull cache) and
``store/`` (the embedded OCI layout)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

HOME_ENV = "KAITO_HOME"


def kaito_home() -> Path:
    value = os.environ.get(HOME_ENV)
    if value:
        return Path(value).expanduser()
    try:
        return Path.home() / ".cache" / "kaito"
    except (RuntimeError, KeyError):
        # A container user without a passwd entry and no $HOME: Path.home() cannot answer.
        return Path(tempfile.gettempdir()) / f"kaito-{os.getuid()}"


def default_cache_path() -> Path:
    """The content-addressed pull cache: ``$KAITO_HOME/blobs`` or ``~/.cache/kaito/blobs``."""
    return kaito_home() / "blobs"


def default_store_path() -> Path:
    """The embedded OCI layout store: ``$KAITO_HOME/store`` or ``~/.cache/kaito/store``."""
    return kaito_home() / "store"


def store_tag(preset_name: str, fmt: str, quantization: str) -> str:
    """The tag a preset's format gets in the embedded store, e.g. ``gemma-3-270m-gguf-q4_k_m``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{preset_name}-{fmt}-{quantization}".lower())[:128]


def store_reference(preset_name: str, fmt: str, quantization: str, store: Path | None = None) -> str:
    """``oci:<store>:<tag>``: where ``pack_preset`` puts a preset format when not pushing."""
    return f"oci:{store or default_store_path()}:{store_tag(preset_name, fmt, quantization)}"
