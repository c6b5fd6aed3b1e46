"""Building and reading the artifact: an OCI image manifest with ModelPack config and layers.

The manifest is deterministic (no timestamps, layers sorted by file name), so packing the same files
twice gives the same digest and a re-push is a no-op.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from kaito_core.artifacts import mediatypes
from kaito_core.artifacts.errors import ArtifactError
from kaito_core.artifacts.reference import DIGEST_RE


@dataclass(frozen=True)
class FileEntry:
    """One file of the artifact: a layer whose title is the file's path in the model directory."""

    name: str  # POSIX path relative to the model directory
    digest: str  # sha256:<hex> of the raw file
    size: int
    media_type: str


@dataclass(frozen=True)
class ModelInfo:
    """What the config blob says about the model (ModelPack ``descriptor`` and ``config``)."""

    name: str
    family: str = ""
    format: str = ""  # "gguf" | "safetensors" | ...
    quantization: str = ""
    license: str = ""
    source_url: str = ""
    revision: str = ""
    description: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)  # more manifest annotations


def digest_bytes(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, indent=None, separators=(",", ":"), sort_keys=False).encode()


def build_config(info: ModelInfo, files: Sequence[FileEntry]) -> bytes:
    """The config blob (``application/vnd.cncf.model.config.v1+json``); ``files`` is a kaito extension
    listing name, size, sha256 and media type, so a reader needs no manifest to know the layout."""
    descriptor: dict[str, Any] = {"name": info.name}
    for key, value in (
        ("family", info.family),
        ("description", info.description),
        ("sourceURL", info.source_url),
        ("revision", info.revision),
    ):
        if value:
            descriptor[key] = value
    if info.license:
        descriptor["licenses"] = [info.license]
    config = {
        key: value for key, value in (("format", info.format), ("quantization", info.quantization)) if value
    }
    ordered = sorted(files, key=lambda f: f.name)
    return canonical_json(
        {
            "descriptor": descriptor,
            "config": config,
            "modelfs": {"type": "layers", "diffIds": [f.digest for f in ordered]},
            "files": [
                {
                    "name": f.name,
                    "size": f.size,
                    "sha256": f.digest.removeprefix("sha256:"),
                    "mediaType": f.media_type,
                }
                for f in ordered
            ],
        }
    )


def build_manifest(config: bytes, files: Sequence[FileEntry], info: ModelInfo) -> bytes:
    annotations = {mediatypes.TITLE: info.name}
    if info.format:
        annotations[mediatypes.FORMAT_ANNOTATION] = info.format
    if info.quantization:
        annotations[mediatypes.QUANTIZATION_ANNOTATION] = info.quantization
    annotations.update(info.extra)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": mediatypes.ARTIFACT_TYPE,
        "config": {"mediaType": mediatypes.CONFIG, "digest": digest_bytes(config), "size": len(config)},
        "layers": [
            {
                "mediaType": f.media_type,
                "digest": f.digest,
                "size": f.size,
                "annotations": {mediatypes.TITLE: f.name},
            }
            for f in sorted(files, key=lambda f: f.name)
        ],
        "annotations": annotations,
    }
    return canonical_json(manifest)


@dataclass(frozen=True)
class Artifact:
    """A parsed manifest: the layers to fetch and the config descriptor."""

    manifest: dict[str, Any]
    digest: str
    config_digest: str
    config_size: int
    config_media_type: str
    files: tuple[FileEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def parse_manifest(data: bytes, digest: str, media_type: str, where: str) -> Artifact:
    """Validate a manifest and its layer titles (they become paths on disk, so no '..', no '/' start)."""
    try:
        manifest = json.loads(data)
    except ValueError:
        raise ArtifactError(
            f"the manifest of {where} is not JSON; the artifact is damaged, re-push it"
        ) from None
    kind = manifest.get("mediaType") or media_type if isinstance(manifest, dict) else ""
    if kind in (mediatypes.OCI_INDEX, mediatypes.DOCKER_MANIFEST_LIST) or (
        isinstance(manifest, dict) and "manifests" in manifest
    ):
        raise ArtifactError(
            f"{where} is an index of several manifests, not a model artifact; pull one of its "
            "manifests by digest"
        )
    if (
        not isinstance(manifest, dict)
        or manifest.get("schemaVersion") != 2
        or not isinstance(manifest.get("layers"), list)
        or not isinstance(manifest.get("config"), dict)
    ):
        raise ArtifactError(f"{where} is not an OCI image manifest (schemaVersion 2 with config and layers)")
    config = manifest["config"]
    _check_descriptor(config, where, "config")
    files: list[FileEntry] = []
    seen: set[str] = set()
    for index, layer in enumerate(manifest["layers"]):
        _check_descriptor(layer, where, f"layers[{index}]")
        title = (layer.get("annotations") or {}).get(mediatypes.TITLE)
        if not title:
            raise ArtifactError(
                f"layer {index} of {where} has no {mediatypes.TITLE} annotation, so it has no file "
                "name; push the model with `kaito model push`"
            )
        name = safe_relative_path(title, where)
        if name in seen:
            raise ArtifactError(f"{where} names the file {name!r} twice")
        seen.add(name)
        files.append(
            FileEntry(
                name=name, digest=layer["digest"], size=layer["size"], media_type=layer.get("mediaType", "")
            )
        )
    return Artifact(
        manifest=manifest,
        digest=digest,
        config_digest=config["digest"],
        config_size=config["size"],
        config_media_type=config.get("mediaType", ""),
        files=tuple(files),
    )


def _check_descriptor(descriptor: Any, where: str, field_name: str) -> None:
    if (
        not isinstance(descriptor, dict)
        or not isinstance(descriptor.get("digest"), str)
        or not DIGEST_RE.match(descriptor["digest"])
        or not isinstance(descriptor.get("size"), int)
        or descriptor["size"] < 0
    ):
        raise ArtifactError(f"{field_name} of the manifest of {where} needs a sha256 digest and a size")


def safe_relative_path(title: str, where: str) -> str:
    path = PurePosixPath(title)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in title or "\x00" in title:
        raise ArtifactError(
            f"{where} names a file {title!r} outside the target directory; refusing to pull it"
        )
    return path.as_posix()
