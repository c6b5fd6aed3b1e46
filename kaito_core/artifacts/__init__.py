"""Model weights as OCI artifacts: pack, push, pull (verified, resumable, cached) and inspect.

An artifact has one raw layer per file (titled with the file's path), the ModelPack artifact type and
config media type; see docs/artifacts.md. Registries are spoken to directly over the OCI distribution
API (``transport``); an OCI image layout directory (``oci:PATH:TAG``) works wherever a registry does.
"""

from kaito_core.artifacts.auth import Credentials
from kaito_core.artifacts.errors import ArtifactError
from kaito_core.artifacts.inspector import inspect_artifact
from kaito_core.artifacts.pack import PackResult, pack_preset, store_reference, store_tag
from kaito_core.artifacts.paths import default_cache_path, default_store_path, kaito_home
from kaito_core.artifacts.puller import PullResult, pull
from kaito_core.artifacts.pusher import copy_artifact, push
from kaito_core.artifacts.reference import Reference

__all__ = [
    "ArtifactError",
    "Credentials",
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
