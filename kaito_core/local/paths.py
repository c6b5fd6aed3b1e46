"""Where local state lives: ``$KAITO_HOME`` (default ``~/.cache/kaito``) and its ``runs/`` folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

from kaito_core.local.errors import LocalRunError

HOME_ENV = "KAITO_HOME"

#: Run names become folder names: keep them to what a Kubernetes object name allows.
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


def kaito_home() -> Path:
    """``$KAITO_HOME`` when set, else ``~/.cache/kaito``."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "kaito"


def runs_dir() -> Path:
    return kaito_home() / "runs"


def check_run_name(name: str) -> str:
    """Return ``name`` when it is usable as a run name, else raise a clear error."""
    if not _NAME.match(name):
        raise LocalRunError(
            f"run name {name!r} is not valid: use lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (set it with --name)"
        )
    return name


def run_dir(name: str) -> Path:
    return runs_dir() / check_run_name(name)
