"""The labels and annotations kaito puts on the objects it writes, and the content hash they carry."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaito_core.api import Workspace

WORKSPACE_LABEL = "kaito.sh/workspace"
WORKSPACE_NAMESPACE_LABEL = "kaito.sh/workspacenamespace"
ENABLE_LB_ANNOTATION = "kaito.sh/enablelb"
REVISION_ANNOTATION = "kaito.sh/revision"  # hash of the Workspace spec the object was built from
MANIFEST_HASH_ANNOTATION = "kaito.sh/manifest-hash"  # hash of the object's own desired content
CONFIG_HASH_ANNOTATION = "kaito.sh/config-hash"  # on the pod template: a config change rolls the pods
CONFIG_FILE = "inference_config.yaml"


def content_hash(value: Any) -> str:
    """A stable sha256 of JSON-able content (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def config_map_name(ws: Workspace) -> str:
    return f"{ws.name}-inference-config"
