"""Model weights as OCI artifacts: pack, push, pull (verified, resumable, cached) and inspect.

An artifact has one raw layer per file (titled with the file's path), the ModelPack artifact type and
config media type; see docs/artifacts.md. Registries are spoken to directly over the OCI distribution
API (``transport``); an OCI image layout directory (``oci:PATH:TAG``) works wherever a registry does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kaito_core.artifacts.errors import ArtifactError
from kaito_core.artifacts.paths import (
    default_cache_path,
    default_store_path,
    kaito_home,
    store_reference,
    store_tag,
)
from kaito_core.artifacts.reference import Reference

if TYPE_CHECKING:
    from kaito_core.artifacts.auth import Credentials
    from kaito_core.artifacts.hub import HubClient, HubError, HubFile, HubListing
    from kaito_core.artifacts.inspector import inspect_artifact
    from kaito_core.artifacts.pack import PackResult, pack_preset
    from kaito_core.artifacts.puller import PullResult, pull
    from kaito_core.artifacts.pusher import copy_artifact, push

# The registry client (requests, TLS) is imported on first use only: `kaito run` with weights already in
# the local store, and every other `kaito` command, should not pay for it at start-up.
_LAZY = {
    "Credentials": "kaito_core.artifacts.auth",
    "HubClient": "kaito_core.artifacts.hub",
    "HubError": "kaito_core.artifacts.hub",
    "HubFile": "kaito_core.artifacts.hub",
    "HubListing": "kaito_core.artifacts.hub",
    "inspect_artifact": "kaito_core.artifacts.inspector",
    "PackResult": "kaito_core.artifacts.pack",
    "pack_preset": "kaito_core.artifacts.pack",
    "PullResult": "kaito_core.artifacts.puller",
    "pull": "kaito_core.artifacts.puller",
    "copy_artifact": "kaito_core.artifacts.pusher",
    "push": "kaito_core.artifacts.pusher",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = [
    "ArtifactError",
    "Credentials",
    "HubClient",
    "HubError",
    "HubFile",
    "HubListing",
    "PackResult",
    "PullResult",
    "Reference",
    "copy_artifact",
    "default_cache_path",
    "default_store_path",
    "inspect_artifact",
    "kaito_home",
    "pack_preset",
    "pull",
    "push",
    "store_reference",
    "store_tag",
]
