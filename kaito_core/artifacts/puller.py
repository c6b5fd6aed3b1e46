"""``kaito model pull``: an artifact -> files in a directory, verified, resumable, cached.

Every blob goes: registry -> ``CACHE/tmp/<hex>.partial`` (appended to, resumable with a Range request,
hashed while streaming) -> ``CACHE/sha256/<hex>`` once its digest matches. A file layer is then
hardlinked (or copied across filesystems) into DEST under a temporary name and renamed to its real
name, so a file under its real name in DEST is always complete and verified. A directory layer (``oras
push DIR``) or a container image's layers are unpacked from the verified blobs (``unpack``).

Why this module is long: the two sources (a registry, an OCI layout) share the verification, caching
and placing here, and the download loop (resume, retries, size checks) is most of it; split apart, the
pieces would pass the cache, the counters and the progress bar back and forth.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import secrets
import shutil
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests
import urllib3

from kaito_core.artifacts import record
from kaito_core.artifacts.auth import Credentials, resolve_credentials
from kaito_core.artifacts.cache import BlobCache
from kaito_core.artifacts.errors import ArtifactError
from kaito_core.artifacts.hashing import PipelinedHasher
from kaito_core.artifacts.layout import OciLayout
from kaito_core.artifacts.manifest import (
    Artifact,
    FileEntry,
    digest_bytes,
    is_index,
    parse_manifest,
    select_platform,
)
from kaito_core.artifacts.paths import default_cache_path
from kaito_core.artifacts.progress import Transfer
from kaito_core.artifacts.reference import Reference
from kaito_core.artifacts.transport import CONNECT_TIMEOUT, READ_TIMEOUT, RegistryClient
from kaito_core.artifacts.unpack import image_diff_ids, max_unpacked, place
from kaito_core.artifacts.verify import WeightsCorrupted, verify_blob

#: The cache inside DEST used when the default cache location cannot be written.
FALLBACK_CACHE = ".kaito-cache"
#: Local write failures: retrying the download cannot help.
_LOCAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
#: A broken blob download is resumed this many times within one pull before giving up.
STREAM_TRIES = 3
#: The largest image config read (it lists the layers' uncompressed digests).
MAX_CONFIG = 4 * 1024 * 1024


@dataclass
class PullResult:
    reference: str
    digest: str  # the manifest digest
    files: list[Path] = field(default_factory=list)
    bytes_downloaded: int = 0  # bytes moved from the registry (or copied out of the store)
    bytes_from_cache: int = 0  # bytes already in the cache (nothing moved)
    skipped: bool = False  # DEST already held this artifact, verified (its pull record): no registry call


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.downloaded = 0
        self.cached = 0

    def add(self, downloaded: int = 0, cached: int = 0) -> None:
        with self._lock:
            self.downloaded += downloaded
            self.cached += cached


def pull(
    ref: str,
    dest: Path,
    *,
    credentials: Credentials | tuple[str, str] | None = None,
    registry_configs: Sequence[str | Path] = (),
    plain_http: bool = False,
    cache_dir: Path | None = None,
    progress: bool = True,
    verify_cache: bool = False,
    jobs: int = 4,
    timeout: float = READ_TIMEOUT,
    max_unpacked_bytes: int | None = None,
) -> PullResult:
    """Pull ``ref`` into ``dest``; raises :class:`ArtifactError` unless every file is verified.

    ``timeout`` bounds each connect and each wait for data, in seconds (not the whole pull).
    ``max_unpacked_bytes`` caps what unpacking directory or image layers may write (default
    ``KAITO_MAX_UNPACKED`` or 512 GiB)."""
    limit = max_unpacked_bytes if max_unpacked_bytes is not None else max_unpacked()
    reference = Reference.parse(ref)
    dest = Path(dest).expanduser()
    if not reference.is_layout:
        done = record.verified(dest, str(reference), reference.digest, rehash=verify_cache)
        if done is not None:  # this volume already holds it, verified: nothing to move
            return PullResult(
                reference=str(reference),
                digest=done["digest"],
                files=[dest / f["name"] for f in done["files"]],
                bytes_from_cache=sum(int(f["size"]) for f in done["files"]),
                skipped=True,
            )
    cache = _open_cache(cache_dir, dest)
    if reference.is_layout:
        return _pull_layout(reference, dest, cache, verify_cache, progress, limit)
    host_creds = resolve_credentials(reference.api_host, credentials, registry_configs)
    with RegistryClient(
        reference,
        credentials=host_creds,
        plain_http=plain_http,
        pool_size=max(4, jobs),
        timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
    ) as client:
        artifact = fetch_artifact(client, reference)
        counter = _Counter()
        _prepare_dest(dest, reference)
        record.clear(dest)
        with Transfer(f"pull {reference}", artifact.total_bytes, progress) as bar:

            def one(entry: FileEntry) -> Path:
                with cache.lock(entry.digest):
                    blob = cache.lookup(entry.digest, entry.size, full=verify_cache)
                    if blob is not None:
                        counter.add(cached=entry.size)
                        bar.advance(entry.size)
                    else:
                        blob = _download(client, cache, entry, reference, bar, counter)
                if artifact.has_archives:
                    return blob
                return _materialize(blob, dest, entry.name)

            placed = _run_parallel(one, artifact.files, jobs)
        entries = [(f.name, f.digest, f.size) for f in artifact.files]
        if artifact.has_archives:
            diff_ids = (
                image_diff_ids(_registry_config(client, artifact, reference)) if artifact.is_image else []
            )
            entries = _unpack(artifact, placed, dest, str(reference), limit, diff_ids)
        record.write(dest, str(reference), artifact.pinned_digest, entries)
    return PullResult(
        reference=str(reference),
        digest=artifact.pinned_digest,
        files=[dest / name for name, _, _ in entries],
        bytes_downloaded=counter.downloaded,
        bytes_from_cache=counter.cached,
    )


def _open_cache(cache_dir: Path | None, dest: Path) -> BlobCache:
    """The given cache, else the default one; when the default is not writable (a pod with a read-only
    root filesystem and no --cache-dir), ``DEST/.kaito-cache``: same filesystem, so files are still
    hardlinked rather than stored twice."""
    if cache_dir is not None:
        return BlobCache(Path(cache_dir))
    try:
        return BlobCache(default_cache_path())
    except ArtifactError:
        return BlobCache(dest / FALLBACK_CACHE)


def fetch_artifact(client: RegistryClient, reference: Reference) -> Artifact:
    """The manifest ``reference`` names; of an image index, its linux/amd64 (or only) manifest."""
    data, media_type = client.get_manifest(reference.target)
    digest = digest_bytes(data)
    if reference.digest and digest != reference.digest:
        raise ArtifactError(
            f"registry {client.host} served a manifest with digest {digest} for {reference}, not the "
            "pinned digest; the registry content does not match, do not use it"
        )
    where = f"{reference} (registry {client.host})"
    if not is_index(data, media_type):
        return parse_manifest(data, digest, media_type, where)
    chosen = select_platform(data, where)
    child, child_type = client.get_manifest(str(chosen.get("digest", "")))
    if digest_bytes(child) != chosen.get("digest"):
        raise ArtifactError(
            f"registry {client.host} served a manifest for {chosen.get('digest')} (listed in the index of "
            f"{reference}) with another digest; the registry content does not match, do not use it"
        )
    artifact = parse_manifest(child, digest_bytes(child), chosen.get("mediaType") or child_type, where)
    return replace(artifact, index_digest=digest)


def _registry_config(client: RegistryClient, artifact: Artifact, reference: Reference) -> bytes:
    """An image's config blob (small: it lists the layers' uncompressed digests), verified."""
    if artifact.config_size > MAX_CONFIG:
        return b""
    resp = client.request("GET", client.url(f"blobs/{artifact.config_digest}"), what="fetching the config")
    if digest_bytes(resp.content) != artifact.config_digest:
        raise ArtifactError(
            f"the config blob of {reference} from registry {client.host} is corrupt (digest mismatch); "
            "re-push it"
        )
    return resp.content


def _unpack(
    artifact: Artifact, blobs: Sequence[Path], dest: Path, where: str, limit: int, diff_ids: Sequence[str]
) -> list[tuple[str, str, int]]:
    """Place file layers and unpack the others; the files now in DEST as (name, digest, size)."""
    try:
        return place(artifact.files, blobs, dest, where, limit, diff_ids, _materialize)
    except OSError as exc:
        raise ArtifactError(
            f"cannot unpack {where} into {dest} ({exc.strerror}); free space, or clear what is in the way"
        ) from None


def _run_parallel(fn: Any, entries: Sequence[FileEntry], jobs: int) -> list[Path]:
    if len(entries) <= 1 or jobs <= 1:
        return [fn(e) for e in entries]
    with ThreadPoolExecutor(min(jobs, len(entries))) as pool:
        futures = [pool.submit(fn, entry) for entry in entries]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            error = future.exception()
            if error is not None:
                for pending in futures:  # fail fast: files not started yet are not downloaded
                    pending.cancel()
                raise error
        return [future.result() for future in futures]


def _prepare_dest(dest: Path, reference: Reference) -> None:
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(
            f"cannot create {dest} ({exc.strerror}) to pull {reference} into; choose a writable directory"
        ) from None


# ------------------------------------------------------------------------------------- download


def _download(
    client: RegistryClient,
    cache: BlobCache,
    entry: FileEntry,
    reference: Reference,
    bar: Transfer,
    counter: _Counter,
) -> Path:
    """Download one blob into the cache, resuming a partial file; returns the cached, verified blob."""
    partial = cache.partial_path(entry.digest)
    restarted = False
    for attempt in range(STREAM_TRIES + 1):
        offset = partial.stat().st_size if partial.exists() else 0
        if offset > entry.size:
            partial.unlink()
            offset = 0
        try:
            moved, hexdigest, total = _stream_blob(client, partial, entry, offset, bar, attempt == 0)
        except _SizeMismatch as exc:
            partial.unlink(missing_ok=True)
            raise ArtifactError(
                f"blob {entry.name} of {reference} is {exc.served} bytes in registry {client.host}, but "
                f"its manifest declares {entry.size}; nothing was written under its name, fix the "
                "manifest (re-push the artifact)"
            ) from None
        except (
            OSError,
            http.client.HTTPException,
            urllib3.exceptions.HTTPError,
            requests.exceptions.RequestException,
        ) as exc:
            if isinstance(exc, OSError) and exc.errno in _LOCAL_ERRNOS:
                raise ArtifactError(
                    f"cannot write {partial} ({exc.strerror}) while pulling {entry.name} of {reference}; "
                    "free space or pass a --cache-dir on a volume with room for the model"
                ) from None
            kept = partial.stat().st_size if partial.exists() else 0
            counter.add(downloaded=max(0, kept - offset))
            if attempt + 1 < STREAM_TRIES + restarted:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise ArtifactError(
                f"the download of {entry.name} ({entry.digest[:19]}) from registry {client.host} broke "
                f"({type(exc).__name__}) while pulling {reference}; {kept} of {entry.size} bytes are kept, "
                "run the pull again to resume"
            ) from None
        counter.add(downloaded=moved)
        if total > entry.size:
            partial.unlink(missing_ok=True)
            raise ArtifactError(
                f"blob {entry.name} of {reference} from registry {client.host} is larger than the "
                f"{entry.size} bytes its manifest declares; nothing was written under its name, fix the "
                "manifest (re-push the artifact)"
            )
        if f"sha256:{hexdigest}" != entry.digest:
            partial.unlink(missing_ok=True)
            if offset and not restarted:
                # The bytes kept from an earlier pull were damaged here, not by the registry: fetch the
                # whole blob again in this pull before blaming anyone.
                restarted = True
                continue
            raise ArtifactError(
                f"blob {entry.name} of {reference} from registry {client.host} is corrupt: its digest is "
                f"sha256:{hexdigest}, the manifest says {entry.digest}; nothing was written under its name, "
                "re-push the artifact or repair the registry storage"
            )
        return cache.commit(partial, entry.digest)
    raise AssertionError("unreachable")


def _stream_blob(
    client: RegistryClient, partial: Path, entry: FileEntry, offset: int, bar: Transfer, count_prefix: bool
) -> tuple[int, str, int]:
    """Append the rest of the blob to ``partial`` while hashing; returns (bytes moved, hex digest, bytes
    of the blob in ``partial``)."""
    initial = hashlib.sha256()
    if offset:
        initial = _hash_prefix(partial, offset)
        if count_prefix:  # bytes from an earlier run; a retry in this run has shown them already
            bar.advance(offset)
    if offset == entry.size:
        return 0, initial.hexdigest(), offset
    resp = client.open_blob(entry.digest, offset)
    if offset and resp.status_code == 200:  # the registry ignored Range: start over
        offset, initial = 0, hashlib.sha256()
    served = _served_size(resp, offset)
    if served is not None and served != entry.size:
        resp.close()
        raise _SizeMismatch(served)
    moved = 0
    hasher = PipelinedHasher(initial)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
        reader = _raw_reader(resp)
        limit = entry.size - offset
        while True:
            buffer = hasher.buffer()
            n = reader(buffer)
            if not n:
                hasher.give_back(buffer)
                break
            view = memoryview(buffer)[:n]
            written = 0
            while written < n:
                written += os.write(fd, view[written:])
            hasher.submit(buffer, n)
            moved += n
            bar.advance(n)
            if moved > limit:
                break  # more bytes than the manifest says: the caller refuses the blob
        if moved < limit:
            # http.client's readinto reports a connection closed early as a plain end of body; keep
            # the partial file and let the caller resume it instead of failing the digest check.
            raise http.client.IncompleteRead(b"", limit - moved)
    finally:
        os.close(fd)
        resp.close()
        digest = hasher.hexdigest()
    return moved, digest, offset + moved


class _SizeMismatch(Exception):
    """The registry says the blob has another size than the manifest declares."""

    def __init__(self, served: int) -> None:
        self.served = served


def _served_size(resp: requests.Response, offset: int) -> int | None:
    """The blob's whole size as the response states it (Content-Range's total, or Content-Length of a
    200), or None when it does not say."""
    if resp.status_code == 206:
        total = resp.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = resp.headers.get("Content-Length", "")
    return int(length) if length.isdigit() and not resp.headers.get("Content-Encoding") else None


def _raw_reader(resp: requests.Response) -> Any:
    """``readinto`` of the undecoded body. Registries serve blobs uncompressed; reading from
    http.client's response directly avoids urllib3's extra copy per block (a third of the time)."""
    raw = resp.raw
    fp = getattr(raw, "_fp", None)
    if not resp.headers.get("Content-Encoding") and fp is not None and hasattr(fp, "readinto"):
        return fp.readinto
    return raw.readinto


def _hash_prefix(path: Path, length: int) -> Any:
    digest = hashlib.sha256()
    buffer = bytearray(4 * 1024 * 1024)
    view = memoryview(buffer)
    remaining = length
    with path.open("rb", buffering=0) as handle:
        while remaining:
            n = handle.readinto(view[: min(len(buffer), remaining)])
            if not n:
                break
            digest.update(view[:n])
            remaining -= n
    return digest


# ---------------------------------------------------------------------------------- materialize


def _materialize(blob: Path, dest: Path, name: str) -> Path:
    """Place a verified blob at DEST/name: hardlink (or copy) under a temporary name, then rename."""
    try:
        return _place(blob, dest, name)
    except OSError as exc:
        raise ArtifactError(
            f"cannot write {dest / name} ({exc.strerror}); free space, or clear what is in the way in {dest}"
        ) from None


def _place(blob: Path, dest: Path, name: str) -> Path:
    target = dest / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if os.path.samefile(blob, target):
            return target
    tmp = target.parent / f".{target.name}.kaito-{secrets.token_hex(4)}.tmp"
    try:
        try:
            os.link(blob, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
            shutil.copyfile(blob, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


# -------------------------------------------------------------------------------- layout source


def read_layout_artifact(reference: Reference) -> tuple[OciLayout, Artifact]:
    assert reference.layout is not None
    layout = OciLayout(reference.layout)
    descriptor = layout.resolve(reference.tag, reference.digest)
    digest = descriptor["digest"]
    if reference.digest and digest != reference.digest:
        raise ArtifactError(f"{reference} resolved to {digest}, not the pinned digest")
    data = layout.read_blob(digest, "manifest")
    media_type = descriptor.get("mediaType", "")
    if not is_index(data, media_type):
        return layout, parse_manifest(data, digest, media_type, str(reference))
    chosen = select_platform(data, str(reference))
    child = layout.read_blob(str(chosen.get("digest", "")), "manifest")
    artifact = parse_manifest(child, digest_bytes(child), chosen.get("mediaType", ""), str(reference))
    return layout, replace(artifact, index_digest=digest)


def _pull_layout(
    reference: Reference, dest: Path, cache: BlobCache, verify_cache: bool, progress: bool, limit: int
) -> PullResult:
    layout, artifact = read_layout_artifact(reference)
    _prepare_dest(dest, reference)
    result = PullResult(reference=str(reference), digest=artifact.pinned_digest)
    blobs: list[Path] = []
    with Transfer(f"pull {reference}", artifact.total_bytes, progress) as bar:
        for entry in artifact.files:
            with cache.lock(entry.digest):
                blob = cache.lookup(entry.digest, entry.size, full=verify_cache)
                if blob is None:
                    source = layout.blob_path(entry.digest)
                    try:  # a corrupted blob is dropped from the layout, so a re-pack writes it again
                        verify_blob(source, entry.digest, entry.size, entry.name, full=verify_cache)
                    except WeightsCorrupted as exc:
                        raise ArtifactError(
                            f"blob {entry.name} ({entry.digest[:19]}) in the OCI layout "
                            f"{layout.root} is missing or corrupt ({exc}); re-pack {reference}"
                        ) from None
                    blob = cache.adopt(source, entry.digest)
                    if blob is None:  # store and cache on different filesystems: use the store's copy
                        blob = source
                        result.bytes_downloaded += entry.size
                    else:
                        result.bytes_from_cache += entry.size
                else:
                    result.bytes_from_cache += entry.size
            bar.advance(entry.size)
            blobs.append(blob)
    if artifact.has_archives:
        config = layout.read_blob(artifact.config_digest, "config") if artifact.is_image else b""
        placed = _unpack(artifact, blobs, dest, str(reference), limit, image_diff_ids(config))
        result.files = [dest / name for name, _, _ in placed]
    else:
        result.files = [_materialize(b, dest, e.name) for e, b in zip(artifact.files, blobs, strict=True)]
    return result
