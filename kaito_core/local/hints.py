"""What the last run of a Workspace file served, so the next run can start reading it at once.

``kaito run`` must validate and plan before it knows which weights to serve (~0.1-0.2 s), while the
model load that follows is the longest step of a start. A hint, written once a run was ready and keyed
by the file's content, names the runtime and the weights that run used; the next run of the same file
passes it to its early server process (local/prestart.py), which starts loading those weights while
the parent validates and plans again.

A hint is never trusted: validation and planning run as they always do, and the server takes the
preloaded model only if the planned arguments name the same file and GPU layers; otherwise it is
freed unused. A wrong or stale hint costs the read, never correctness, and only weights under
$KAITO_HOME (the store, the pull cache) are prefetched. Hints live in ``$KAITO_HOME/hints/``, one small
JSON file per Workspace content.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from kaito_core.local.paths import kaito_home


@dataclass(frozen=True)
class Hint:
    distribution: str  # the plugin distribution that provides the runtime (loaded alone to prefetch)
    runtime: str
    model: str  # the weights file itself (links resolved): stable while the store keeps the blob
    n_gpu_layers: int

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> Hint | None:
        if not isinstance(data, dict):
            return None
        fields = (data.get("distribution"), data.get("runtime"), data.get("model"), data.get("n_gpu_layers"))
        distribution, runtime, model, layers = fields
        if not (isinstance(distribution, str) and isinstance(runtime, str) and isinstance(model, str)):
            return None
        if not isinstance(layers, int) or isinstance(layers, bool):
            return None
        return cls(distribution, runtime, model, layers)


def hints_dir() -> Path:
    return kaito_home() / "hints"


def _path_for(content: bytes) -> Path:
    return hints_dir() / f"{hashlib.sha256(content).hexdigest()}.json"


def read(workspace_file: Path) -> Hint | None:
    """The hint for this file's current content, or None (no earlier run, unreadable, or its weights
    are gone)."""
    try:
        text = _path_for(workspace_file.read_bytes()).read_text(encoding="utf-8")
        hint = Hint.from_json(json.loads(text))
    except (OSError, ValueError):
        return None
    if hint is None or not os.path.isfile(hint.model) or not _in_home(hint.model):
        return None
    return hint


def _in_home(model: str) -> bool:
    """Weights come from $KAITO_HOME (the store, the pull cache); a hint naming any other file is not
    followed (the server would parse it before anything checked it)."""
    try:
        return Path(model).resolve().is_relative_to(kaito_home().resolve())
    except OSError:
        return False


def remember(workspace_file: Path, hint: Hint) -> None:
    """Record what a ready run served; failures only mean the next start is not sped up."""
    with contextlib.suppress(OSError):
        target = _path_for(workspace_file.read_bytes())
        text = json.dumps(hint.to_json(), sort_keys=True)
        with contextlib.suppress(OSError):
            if target.read_text(encoding="utf-8") == text:
                return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
