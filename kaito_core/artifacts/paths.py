"""Default locations: ``KAITO_HOME`` (else ``~/.cache/kaito``) holds ``blobs/`` (the pull cache) and
``store/`` (the embedded OCI layout)."""

from __future__ import annotations

import os
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
