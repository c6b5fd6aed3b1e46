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

#: What a layer is (``FileEntry.kind``): a file named by its title (kaito's own artifacts, ``oras push
#: FILE``); a directory to unpack (``oras push DIR``: the oras unpack annotation); a tar+gzip layer
#: titled like a directory but without that annotation (what oras-py pushes for a directory), unpacked
#: when its entries all sit under its title and placed as a file otherwise; a container-image layer.
FILE = "file"
DIRECTORY = "directory"
MAYBE_DIRECTORY = "maybe-directory"
IMAGE_LAYER = "image-layer"


@dataclass(frozen=True)
class FileEntry:
    """One layer of the artifact; for a file, its title is the file's path in the model directory."""

    name: str  # POSIX path relative to the model directory (an image layer: "layer N", a label)
    digest: str  # sha256:<hex> of the blob (a file: the raw file)
    size: int
    media_type: str
    kind: str = FILE
    diff_digest: str = ""  # sha256 of the uncompressed tar when the manifest declares it (oras)


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
    files: tuple[FileEntry, ...]  # every layer, in manifest order (an image's layers apply in order)
    index_digest: str = ""  # the image index the reference named, when it named one

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def is_image(self) -> bool:
        return any(f.kind == IMAGE_LAYER for f in self.files)

    @property
    def has_archives(self) -> bool:
        """Whether any layer is unpacked rather than placed as one file."""
        return any(f.kind != FILE for f in self.files)

    @property
    def pinned_digest(self) -> str:
        """The digest the reference resolves to (the index's, for a multi-platform image)."""
        return self.index_digest or self.digest


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
    if config.get("mediaType") in mediatypes.IMAGE_CONFIGS:
        files = _image_layers(manifest["layers"], where)
    else:
        files = _artifact_layers(manifest["layers"], where)
    return Artifact(
        manifest=manifest,
        digest=digest,
        config_digest=config["digest"],
        config_size=config["size"],
        config_media_type=config.get("mediaType", ""),
        files=tuple(files),
    )


def _artifact_layers(layers: list[Any], where: str) -> list[FileEntry]:
    files: list[FileEntry] = []
    seen: set[str] = set()
    for index, layer in enumerate(layers):
        _check_descriptor(layer, where, f"layers[{index}]")
        annotations = layer.get("annotations") or {}
        title = annotations.get(mediatypes.TITLE)
        if not title:
            raise ArtifactError(
                f"layer {index} of {where} has no {mediatypes.TITLE} annotation, so it has no file "
                "name; push the model with `kaito model push`"
            )
        name = safe_relative_path(title, where)
        if name in seen:
            raise ArtifactError(f"{where} names the file {name!r} twice")
        seen.add(name)
        media_type = layer.get("mediaType", "")
        kind = FILE
        if str(annotations.get(mediatypes.ORAS_UNPACK, "")).lower() == "true":
            kind = DIRECTORY
        elif media_type == mediatypes.OCI_LAYER_GZIP:
            kind = MAYBE_DIRECTORY
        diff = str(annotations.get(mediatypes.ORAS_DIGEST, ""))
        files.append(
            FileEntry(
                name=name,
                digest=layer["digest"],
                size=layer["size"],
                media_type=media_type,
                kind=kind,
                diff_digest=diff if DIGEST_RE.match(diff) else "",
            )
        )
    return files


def _image_layers(layers: list[Any], where: str) -> list[FileEntry]:
    """A container image's layers: tar changesets, applied in order."""
    files: list[FileEntry] = []
    for index, layer in enumerate(layers):
        _check_descriptor(layer, where, f"layers[{index}]")
        media_type = layer.get("mediaType", "")
        if any(marker in media_type for marker in mediatypes.FOREIGN_LAYER_MARKERS):
            raise ArtifactError(
                f"layer {index} of {where} is a foreign layer ({media_type}) whose bytes the registry does "
                "not hold; build the image from scratch (FROM scratch, COPY the files under /data/)"
            )
        if media_type not in mediatypes.IMAGE_LAYERS:
            raise ArtifactError(
                f"layer {index} of {where} has media type {media_type!r}, which is not a tar layer of a "
                f"container image (one of {', '.join(sorted(mediatypes.IMAGE_LAYERS))})"
            )
        files.append(
            FileEntry(
                name=f"layer {index}",
                digest=layer["digest"],
                size=layer["size"],
                media_type=media_type,
                kind=IMAGE_LAYER,
            )
        )
    return files


def select_platform(data: bytes, where: str) -> dict[str, Any]:
    """The manifest descriptor to use from an image index: linux/amd64, else its only entry (attestation
    manifests, platform unknown/unknown, do not count)."""
    try:
        index = json.loads(data)
    except ValueError:
        raise ArtifactError(
            f"the index of {where} is not JSON; the artifact is damaged, re-push it"
        ) from None
    entries = [
        m
        for m in (index.get("manifests") if isinstance(index, dict) else None) or []
        if isinstance(m, dict) and (m.get("platform") or {}).get("os") != "unknown"
    ]
    for entry in entries:
        platform = entry.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
            return dict(entry)
    if len(entries) == 1:
        return dict(entries[0])
    platforms = sorted(
        f"{(m.get('platform') or {}).get('os', '?')}/{(m.get('platform') or {}).get('architecture', '?')}"
        for m in entries
    )
    raise ArtifactError(
        f"{where} is an index of {len(entries)} manifests ({', '.join(platforms) or 'none'}) and none is "
        "linux/amd64; pull one of its manifests by digest"
    )


def is_index(data: bytes, media_type: str) -> bool:
    try:
        manifest = json.loads(data)
    except ValueError:
        return False
    if not isinstance(manifest, dict):
        return False
    kind = manifest.get("mediaType") or media_type
    return kind in (mediatypes.OCI_INDEX, mediatypes.DOCKER_MANIFEST_LIST) or "manifests" in manifest


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
