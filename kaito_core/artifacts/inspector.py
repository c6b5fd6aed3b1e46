"""``kaito model inspect``: an artifact's manifest and config, without downloading its files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kaito_core.artifacts.auth import Credentials, resolve_credentials
from kaito_core.artifacts.errors import ArtifactError
from kaito_core.artifacts.manifest import Artifact, digest_bytes
from kaito_core.artifacts.puller import fetch_artifact, read_layout_artifact
from kaito_core.artifacts.reference import Reference
from kaito_core.artifacts.transport import RegistryClient

MAX_CONFIG = 4 * 1024 * 1024


def inspect_artifact(
    ref: str,
    *,
    credentials: Credentials | tuple[str, str] | None = None,
    registry_configs: Sequence[str | Path] = (),
    plain_http: bool = False,
) -> dict[str, Any]:
    """Reference, digest, manifest, config and file list of an artifact (registry or OCI layout)."""
    reference = Reference.parse(ref)
    if reference.is_layout:
        layout, artifact = read_layout_artifact(reference)
        config_bytes = (
            layout.read_blob(artifact.config_digest, "config") if artifact.config_size <= MAX_CONFIG else b""
        )
        where = str(reference)
    else:
        host_creds = resolve_credentials(reference.api_host, credentials, registry_configs)
        with RegistryClient(reference, credentials=host_creds, plain_http=plain_http) as client:
            artifact = fetch_artifact(client, reference)
            config_bytes = b""
            if artifact.config_size <= MAX_CONFIG:
                resp = client.request(
                    "GET", client.url(f"blobs/{artifact.config_digest}"), what="fetching the config"
                )
                config_bytes = resp.content
                if digest_bytes(config_bytes) != artifact.config_digest:
                    raise ArtifactError(
                        f"the config blob of {reference} from registry {client.host} is corrupt "
                        "(digest mismatch); re-push the artifact"
                    )
        where = f"{reference}"
    return _describe(where, artifact, config_bytes)


def _describe(where: str, artifact: Artifact, config_bytes: bytes) -> dict[str, Any]:
    config: Any = None
    if config_bytes:
        try:
            config = json.loads(config_bytes)
        except ValueError:
            config = None  # an opaque config (not JSON) is shown by its descriptor only
    return {
        "reference": where,
        "digest": artifact.digest,
        "mediaType": artifact.manifest.get("mediaType", ""),
        "artifactType": artifact.manifest.get("artifactType", ""),
        "configMediaType": artifact.config_media_type,
        "annotations": artifact.manifest.get("annotations", {}),
        "size": artifact.total_bytes,
        "files": [
            {"name": f.name, "size": f.size, "digest": f.digest, "mediaType": f.media_type}
            for f in artifact.files
        ],
        "config": config,
        "manifest": artifact.manifest,
    }
