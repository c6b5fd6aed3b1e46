"""Default locations: ``KAITO_HOME`` (else ``~/.cache/kaito``) holds ``blobs/`` (the pull cache) and
``store/`` (the embedded OCI layout)."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "KAITO_HOME"


def kaito_home() -> Path:
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "kaito"


def default_cache_path() -> Path:
    """The content-addressed pull cache: ``$KAITO_HOME/blobs`` or ``~/.cache/kaito/blobs``."""
    return kaito_home() / "blobs"


def default_store_path() -> Path:
    """The embedded OCI layout store: ``$KAITO_HOME/store`` or ``~/.cache/kaito/store``."""
    return kaito_home() / "store"
