"""``kaito model push``: a model file or directory -> an artifact in a registry or an OCI layout."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kaito_core.artifacts import mediatypes
from kaito_core.artifacts.auth import Credentials, resolve_credentials
from kaito_core.artifacts.cache import BlobCache
from kaito_core.artifacts.errors import ArtifactError
from kaito_core.artifacts.hashing import sha256_file
from kaito_core.artifacts.layout import OciLayout
from kaito_core.artifacts.manifest import FileEntry, ModelInfo, build_config, build_manifest, digest_bytes
from kaito_core.artifacts.paths import default_cache_path
from kaito_core.artifacts.progress import Transfer
from kaito_core.artifacts.reference import Reference
from kaito_core.artifacts.transport import UPLOAD_CHUNK, RegistryClient
from kaito_core.plugins import Preset


def collect_files(path: Path) -> list[tuple[str, Path]]:
    """(name in the artifact, file on disk) for a file, or for every file under a directory.

    Hidden files and directories (``.git``, ``.cache``) are skipped; symlinks to files are followed
    (a Hugging Face snapshot is a directory of symlinks into its blob store).
    """
    path = Path(path).expanduser()
    if path.is_file():
        return [(path.name, path)]
    if not path.is_dir():
        raise ArtifactError(f"{path} does not exist; give a model file or a directory of model files")
    found: list[tuple[str, Path]] = []
    for directory, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            full = Path(directory) / filename
            if filename.startswith(".") or not full.is_file():
                continue
            found.append((full.relative_to(path).as_posix(), full))
    if not found:
        raise ArtifactError(f"{path} holds no files to push")
    return found


def describe_files(
    files: Sequence[tuple[str, Path]], jobs: int = 2, progress: Callable[[int], None] | None = None
) -> list[FileEntry]:
    """Hash every file (in parallel: hashlib releases the GIL)."""

    def one(item: tuple[str, Path]) -> FileEntry:
        name, full = item
        return FileEntry(
            name=name,
            digest=sha256_file(full, progress),
            size=full.stat().st_size,
            media_type=mediatypes.layer_media_type(name),
        )

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return list(pool.map(one, files))


def model_info(
    path: Path, preset: Preset | None, fmt: str | None, quantization: str | None, kind: str = "model"
) -> ModelInfo:
    if preset is not None:
        extra = {mediatypes.PRESET_ANNOTATION: preset.name}
        return ModelInfo(
            name=preset.name,
            family=preset.family,
            format=fmt or "",
            quantization=quantization or "",
            license=preset.license,
            source_url=preset.source.url or preset.source.repo,
            revision=preset.source.revision,
            description=preset.description,
            extra=extra,
        )
    guessed = fmt or _guess_format(path)
    return ModelInfo(
        name=Path(path).name if kind == "model" else Path(path).stem,
        format=guessed,
        quantization=quantization or "",
    )


def _guess_format(path: Path) -> str:
    for suffix, name in ((".gguf", "gguf"), (".safetensors", "safetensors")):
        if Path(path).suffix == suffix or (Path(path).is_dir() and any(Path(path).rglob(f"*{suffix}"))):
            return name
    return ""


def push(
    path: Path,
    ref: str,
    *,
    preset: Preset | None = None,
    format: str | None = None,
    quantization: str | None = None,
    credentials: Credentials | tuple[str, str] | None = None,
    registry_configs: Sequence[str | Path] = (),
    plain_http: bool = False,
    progress: bool = True,
    cache_dir: Path | None = None,
    chunk_size: int = UPLOAD_CHUNK,
    jobs: int = 4,
    expected: dict[str, str] | None = None,
) -> str:
    """Push a model file or directory as an artifact; returns the manifest digest.

    Blobs the registry already has are skipped (HEAD); files upload in ``chunk_size`` PATCH requests
    streamed from disk. An ``oci:PATH:TAG`` reference writes into an OCI layout instead.
    ``expected`` maps file names to the digests they must have (a preset's published sha256).
    """
    reference = Reference.parse(ref)
    files = collect_files(Path(path))
    with Transfer(f"hash {path}", sum(full.stat().st_size for _, full in files), progress) as hashing:
        entries = describe_files(files, progress=hashing.advance)
    for entry in entries:
        want = (expected or {}).get(entry.name)
        if want and want != entry.digest:
            raise ArtifactError(
                f"{entry.name} has digest {entry.digest}, the preset publishes {want}; the local file "
                "is not the published one"
            )
    by_name = dict(files)
    info = model_info(Path(path), preset, format, quantization)
    config = build_config(info, entries)
    manifest = build_manifest(config, entries, info)
    digest = digest_bytes(manifest)
    if reference.digest and reference.digest != digest:
        raise ArtifactError(
            f"the artifact built from {path} has digest {digest}, not the {reference.digest} given "
            f"in {ref}; push by tag, or pin the digest this content has"
        )
    if reference.is_layout:
        _push_layout(reference, entries, by_name, config, manifest, cache_dir)
        return digest
    _push_registry(
        reference,
        entries,
        by_name,
        config,
        manifest,
        credentials,
        registry_configs,
        plain_http,
        progress,
        chunk_size,
        jobs,
    )
    return digest


def copy_artifact(
    source: str,
    ref: str,
    *,
    credentials: Credentials | tuple[str, str] | None = None,
    registry_configs: Sequence[str | Path] = (),
    plain_http: bool = False,
    progress: bool = True,
    chunk_size: int = UPLOAD_CHUNK,
    jobs: int = 4,
) -> str:
    """Copy an artifact from an OCI layout (``oci:PATH:TAG``) to a registry or another layout, with the
    same manifest bytes, so the digest (and any pin on it) is kept: pack on a connected machine, push
    into an air-gapped registry. Every blob is verified before it is sent."""
    from kaito_core.artifacts.puller import read_layout_artifact

    origin = Reference.parse(source)
    if not origin.is_layout:
        raise ArtifactError(
            f"copying from a registry ({source}) is not supported; pull it into a directory and push that, "
            "or copy from an oci:PATH:TAG store"
        )
    layout, artifact = read_layout_artifact(origin)
    with Transfer(f"verify {origin}", artifact.total_bytes, progress) as bar:
        for entry in artifact.files:
            blob = layout.blob_path(entry.digest)
            if (
                not layout.has_blob(entry.digest, entry.size)
                or sha256_file(blob, bar.advance) != entry.digest
            ):
                raise ArtifactError(
                    f"blob {entry.name} ({entry.digest[:19]}) in {layout.root} is missing or corrupt; "
                    f"re-pack {origin}"
                )
    config = layout.read_blob(artifact.config_digest, "config")
    manifest = layout.read_blob(artifact.digest, "manifest")
    by_name = {entry.name: layout.blob_path(entry.digest) for entry in artifact.files}
    target = Reference.parse(ref)
    if target.digest and target.digest != artifact.digest:
        raise ArtifactError(f"{source} has digest {artifact.digest}, not the {target.digest} given in {ref}")
    if target.is_layout:
        _push_layout(target, artifact.files, by_name, config, manifest, None)
    else:
        _push_registry(
            target,
            artifact.files,
            by_name,
            config,
            manifest,
            credentials,
            registry_configs,
            plain_http,
            progress,
            chunk_size,
            jobs,
        )
    return artifact.digest


def _push_registry(
    reference: Reference,
    entries: Sequence[FileEntry],
    by_name: dict[str, Path],
    config: bytes,
    manifest: bytes,
    credentials: Credentials | tuple[str, str] | None,
    registry_configs: Sequence[str | Path],
    plain_http: bool,
    progress: bool,
    chunk_size: int,
    jobs: int,
) -> None:
    host_creds = resolve_credentials(reference.api_host, credentials, registry_configs)
    with (
        RegistryClient(reference, credentials=host_creds, plain_http=plain_http, push=True) as client,
        Transfer(f"push {reference}", sum(e.size for e in entries) + len(config), progress) as bar,
    ):

        def upload(entry: FileEntry) -> None:
            if client.blob_size(entry.digest) == entry.size:
                bar.advance(entry.size)
                return
            client.upload_file(
                by_name[entry.name], entry.digest, entry.size, chunk_size=chunk_size, progress=bar.advance
            )

        unique = list({e.digest: e for e in entries}.values())
        with ThreadPoolExecutor(max(1, min(jobs, len(unique)))) as pool:
            list(pool.map(upload, unique))
        config_digest = digest_bytes(config)
        if client.blob_size(config_digest) != len(config):
            client.upload_bytes(config, config_digest)
        bar.advance(len(config))
        client.put_manifest(reference.tag or digest_bytes(manifest), manifest, mediatypes.OCI_MANIFEST)


def _push_layout(
    reference: Reference,
    entries: Sequence[FileEntry],
    by_name: dict[str, Path],
    config: bytes,
    manifest: bytes,
    cache_dir: Path | None,
) -> None:
    assert reference.layout is not None
    layout = OciLayout(reference.layout)
    layout.create()
    fresh: list[FileEntry] = []
    for entry in entries:
        if not layout.has_blob(entry.digest, entry.size):
            layout.put_file(by_name[entry.name], entry.digest, entry.size)
            fresh.append(entry)
    layout.put_bytes(config)
    digest = layout.put_bytes(manifest)
    descriptor = {
        "mediaType": mediatypes.OCI_MANIFEST,
        "digest": digest,
        "size": len(manifest),
        "artifactType": mediatypes.ARTIFACT_TYPE,
    }
    if reference.tag:
        layout.tag(reference.tag, descriptor)
    else:  # pinned by digest only: listed without a ref name, so the manifest is not garbage
        layout.add(descriptor)
    # The blobs just copied were hashed on the way in: hardlink them into the pull cache as verified,
    # so a pull from the store moves nothing (same filesystem) and hashes nothing again.
    cache = BlobCache(cache_dir or default_cache_path())
    for entry in fresh:
        cache.adopt(layout.blob_path(entry.digest), entry.digest)
