"""Tar layers into a pull's DEST, safely: oras directory layers and the layers of a container image.

Two kinds of archive reach a pull (``manifest.FileEntry.kind``):

- an oras directory layer (``oras push REF DIR``): a tar(+gzip) whose entries all sit under the
  directory named by the layer's title. ``oras pull`` writes it to ``DEST/<title>/``; so does this,
  except that an artifact that is one directory and nothing else has that directory's *contents*
  placed directly in DEST (``oras push REF data/`` of an adapter gives ``DEST/adapter_config.json``,
  where the inference server reads it).
- a container image (KAITO's adapter images, ``FROM scratch`` + ``COPY ... /data/``, or what KAITO's
  tuning pusher writes): its layers are applied in order, OCI whiteouts included (``.wh.NAME`` removes
  NAME from the layers below, ``.wh..wh..opq`` empties its directory of them), and the files under
  ``/data/`` are placed in DEST, as KAITO's puller does; an image without ``/data`` gives the one
  directory holding ``adapter_config.json``.

Nothing is extracted with tarfile's extractall. Every layer is read twice: first its headers only
(names checked: no absolute path, no ``..``, no device or fifo; the uncompressed stream hashed against
the digest the manifest or image config declares), from which the final tree is computed; then, with
the selection's total size checked against a cap and against the free space before a byte is written,
the selected regular files are written by this module under a staging directory inside DEST
(``O_EXCL | O_NOFOLLOW``, hashed on the way), links are checked to stay inside the selection (and by
``tarfile.data_filter`` on top), and the result is renamed into DEST.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import secrets
import shutil
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kaito_core.artifacts.errors import ArtifactError
from kaito_core.artifacts.manifest import DIRECTORY, IMAGE_LAYER, MAYBE_DIRECTORY, FileEntry
from kaito_core.artifacts.reference import DIGEST_RE
from kaito_core.artifacts.tarsafe import CHUNK, Member, decompressed, member_kind, normalize, scan

#: The most an unpack may write unless told otherwise (``KAITO_MAX_UNPACKED`` or ``--max-unpacked``):
#: generous for weights, small enough that a tar bomb is refused before it fills a node's disk.
DEFAULT_MAX_UNPACKED = 512 * 1024**3
ADAPTER_CONFIG = "adapter_config.json"
DATA_DIR = "data"  # KAITO's adapter and data images keep their files under /data
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_RESERVED = (".kaito-",)  # DEST's own entries (pull record, fallback cache, staging)


class NotADirectoryLayer(Exception):
    """A tar+gzip layer without the oras unpack annotation that is not a directory: a file after all."""


@dataclass
class _Node:
    kind: str  # "dir" | "file" | "symlink" | "hardlink"
    layer: int
    member: int  # index of the member in its layer's tar; -1 for an implied directory
    size: int = 0
    mode: int = 0o755
    linkname: str = ""
    info: tarfile.TarInfo | None = None


@dataclass
class Unpacked:
    """What an unpack placed in DEST: regular files as (name, sha256 digest, size)."""

    files: list[tuple[str, str, int]] = field(default_factory=list)


def max_unpacked() -> int:
    text = os.environ.get("KAITO_MAX_UNPACKED", "")
    return parse_size(text, "KAITO_MAX_UNPACKED") if text else DEFAULT_MAX_UNPACKED


def parse_size(text: str, what: str) -> int:
    """Bytes from ``123``, ``10GiB``, ``500M`` (binary multiples)."""
    units = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    number, unit = (value[:-1], value[-1]) if value and value[-1] in units else (value, "")
    try:
        size = int(float(number) * units[unit])
    except ValueError:
        size = -1
    if size <= 0:
        raise ArtifactError(f"{what}: {text!r} is not a size; write bytes or e.g. 64GiB")
    return size


def check_adapter(dest: Path, where: str) -> None:
    """Refuse a pulled adapter that an inference server could not load: no adapter_config.json on top."""
    if not (dest / ADAPTER_CONFIG).is_file():
        raise ArtifactError(
            f"{where} holds no {ADAPTER_CONFIG} at its top (pulled into {dest}), so it is no LoRA adapter; "
            f"an adapter is {ADAPTER_CONFIG} with its weights: pushed as files, as a directory (oras push "
            "REF data/), or as a container image with them under /data/ (KAITO's adapter images)"
        )


def image_diff_ids(config: bytes) -> list[str]:
    """The uncompressed digests an image config lists for its layers (``rootfs.diff_ids``); [] when it
    lists none (the compressed blobs' digests are still verified)."""
    try:
        ids = (json.loads(config).get("rootfs") or {}).get("diff_ids") if config else None
    except (ValueError, AttributeError):
        return []
    if not isinstance(ids, list) or not all(isinstance(i, str) and DIGEST_RE.match(i) for i in ids):
        return []
    return list(ids)


def place(
    entries: Sequence[FileEntry],
    blobs: Sequence[Path],
    dest: Path,
    where: str,
    limit: int,
    diff_ids: Sequence[str],
    materialize: Callable[[Path, Path, str], Any],
) -> list[tuple[str, str, int]]:
    """Every layer's verified blob into DEST: an image unpacked whole; of an artifact, each directory
    layer unpacked (its contents straight into DEST when it is the artifact's only layer) and each file
    placed by ``materialize(blob, dest, name)``. Returns the files in DEST as (name, digest, size)."""
    if any(e.kind == IMAGE_LAYER for e in entries):
        return unpack(entries, blobs, dest, where, flatten=True, limit=limit, diff_ids=diff_ids).files
    placed: list[tuple[str, str, int]] = []
    for entry, blob in zip(entries, blobs, strict=True):
        if entry.kind in (DIRECTORY, MAYBE_DIRECTORY):
            left = limit - sum(size for _, _, size in placed)
            try:
                placed += unpack([entry], [blob], dest, where, flatten=len(entries) == 1, limit=left).files
                continue
            except NotADirectoryLayer:
                pass  # an oras-py tar+gzip file that is not a directory: placed as the file it is
        materialize(blob, dest, entry.name)
        placed.append((entry.name, entry.digest, entry.size))
    return placed


# ------------------------------------------------------------------------------ the final tree


def _remove(tree: dict[str, _Node], path: str, keep_self: bool = False) -> None:
    prefix = f"{path}/" if path else ""
    for key in [k for k in tree if k.startswith(prefix) or (k == path and not keep_self)]:
        del tree[key]


def _add(tree: dict[str, _Node], path: str, node: _Node) -> None:
    parts = path.split("/")
    for depth in range(1, len(parts)):
        ancestor = "/".join(parts[:depth])
        existing = tree.get(ancestor)
        if existing is not None and existing.kind != "dir":
            del tree[ancestor]  # a file or link below replaced by a directory
            existing = None
        if existing is None:
            tree[ancestor] = _Node("dir", node.layer, -1)
    old = tree.get(path)
    if old is not None and (old.kind == "dir") != (node.kind == "dir"):
        _remove(tree, path)
    tree[path] = node


def _node(member: Member, layer: int) -> _Node:
    info = member.info
    kind = member_kind(info, member.path, "")
    return _Node(
        kind, layer, member.index, info.size if kind == "file" else 0, info.mode, info.linkname, info
    )


def _apply_layer(tree: dict[str, _Node], members: Sequence[Member], layer: int) -> None:
    """An image layer over the tree: its whiteouts remove from the layers below, then its entries land."""
    for member in members:
        parent, base = posixpath.split(member.path)
        if base == _OPAQUE:
            _remove(tree, parent, keep_self=True)
        elif base.startswith(_WHITEOUT):
            _remove(tree, posixpath.join(parent, base[len(_WHITEOUT) :]))
    for member in members:
        base = posixpath.basename(member.path)
        if member.path and not base.startswith(_WHITEOUT):
            _add(tree, member.path, _node(member, layer))


def _adapter_root(tree: dict[str, _Node], where: str) -> str:
    data = tree.get(DATA_DIR)
    if data is not None and data.kind == "dir":
        return DATA_DIR
    holders = sorted(
        posixpath.dirname(p)
        for p, n in tree.items()
        if posixpath.basename(p) == ADAPTER_CONFIG and n.kind == "file"
    )
    if len(holders) == 1:
        return holders[0]
    if not holders:
        raise ArtifactError(
            f"{where} is a container image without a /data directory and without an {ADAPTER_CONFIG}; "
            "KAITO's adapter images hold the adapter's files under /data/ (COPY adapter_config.json "
            "adapter_model.safetensors /data/)"
        )
    raise ArtifactError(
        f"{where} is a container image without /data and with {ADAPTER_CONFIG} in several directories "
        f"({', '.join('/' + h for h in holders)}); put the adapter's files under /data/"
    )


# ------------------------------------------------------------------------------------ unpacking


@dataclass
class _Plan:
    """What to write: for each selected path, its node and its name in DEST (relative)."""

    root: str
    strip: bool  # write paths relative to root (True) or as they are (False)
    nodes: dict[str, _Node]
    image: bool  # an absolute symlink means a path in the image (not on the pulling machine)

    def rel(self, path: str) -> str:
        return path[len(self.root) + 1 :] if self.strip and self.root else path


def unpack(
    entries: Sequence[FileEntry],
    blobs: Sequence[Path],
    dest: Path,
    where: str,
    *,
    flatten: bool,
    limit: int,
    diff_ids: Sequence[str] = (),
) -> Unpacked:
    """Unpack ``entries`` (all image layers, or one directory layer) from their verified ``blobs`` into
    ``dest``. Raises :class:`NotADirectoryLayer` for a maybe-directory layer that is not one."""
    if entries and entries[0].kind == IMAGE_LAYER:
        tree: dict[str, _Node] = {}
        for layer, (entry, blob) in enumerate(zip(entries, blobs, strict=True)):
            diff = diff_ids[layer] if len(diff_ids) == len(entries) else ""
            _apply_layer(tree, scan(blob, f"{where} ({entry.name})", diff), layer)
        root = _adapter_root(tree, where)
        plan = _Plan(root, True, _under(tree, root), image=True)
    else:
        [entry], [blob] = entries, blobs
        plan = _directory_plan(entry, blob, where, flatten)
    return _write(plan, entries, blobs, dest, where, limit)


def _under(tree: dict[str, _Node], root: str) -> dict[str, _Node]:
    prefix = f"{root}/" if root else ""
    return {p: n for p, n in tree.items() if p.startswith(prefix) and p != root}


def _directory_plan(entry: FileEntry, blob: Path, where: str, flatten: bool) -> _Plan:
    label = f"{where} (directory {entry.name})"
    maybe = entry.kind == MAYBE_DIRECTORY
    try:
        members = scan(blob, label, entry.diff_digest)
    except ArtifactError:
        if maybe:
            raise NotADirectoryLayer from None
        raise
    tree: dict[str, _Node] = {}
    for member in members:
        if member.path != entry.name and not member.path.startswith(f"{entry.name}/"):
            if maybe:
                raise NotADirectoryLayer
            raise ArtifactError(
                f"{label} has a member {member.info.name!r} outside the directory {entry.name!r} its "
                "title names; refusing it (nothing was written)"
            )
        if member.path != entry.name:
            _add(tree, member.path, _node(member, 0))
    assert entry.kind in (DIRECTORY, MAYBE_DIRECTORY)
    return _Plan(entry.name, flatten, _under(tree, entry.name), image=False)


def _link_target(plan: _Plan, path: str, node: _Node, where: str) -> str:
    """A symlink's target rewritten relative to the link, or a hardlink's path in DEST; refused when
    it leaves the selection."""
    if node.kind == "hardlink":
        target = normalize(node.linkname, where)
        found = plan.nodes.get(target)
        if found is None or found.kind != "file":
            raise ArtifactError(
                f"{where}: the hard link {path!r} points at {node.linkname!r}, outside what is unpacked; "
                "refusing it (nothing was written)"
            )
        return plan.rel(target)
    link = node.linkname
    if "\x00" in link:
        raise ArtifactError(f"{where}: the symlink {path!r} has a NUL in its target; refusing it")
    absolute = link.startswith("/")
    resolved = posixpath.normpath(
        link.lstrip("/") if absolute else posixpath.join(posixpath.dirname(path), link)
    )
    inside = (
        not resolved.startswith("../")
        and resolved not in ("..", ".")
        and (plan.root == "" or resolved.startswith(f"{plan.root}/"))
    )
    if not inside or (absolute and not plan.image):
        raise ArtifactError(
            f"{where}: the symlink {path!r} points at {link!r}, outside the directory being unpacked; "
            "refusing it (nothing was written)"
        )
    return posixpath.relpath(resolved, posixpath.dirname(path) or ".")


def _write(
    plan: _Plan, entries: Sequence[FileEntry], blobs: Sequence[Path], dest: Path, where: str, limit: int
) -> Unpacked:
    links = {
        p: _link_target(plan, p, n, where) for p, n in plan.nodes.items() if n.kind in ("symlink", "hardlink")
    }
    for path in plan.nodes:
        top = plan.rel(path).split("/")[0]
        if top.startswith(_RESERVED):
            raise ArtifactError(f"{where} has an entry {path!r} named like kaito's own files; refusing it")
    total = sum(n.size for n in plan.nodes.values() if n.kind == "file")
    if total > limit:
        raise ArtifactError(
            f"{where} unpacks to {total} bytes, more than the {limit} allowed (a tar bomb, or an artifact "
            "bigger than expected); nothing was written. If it is genuine, raise the limit with "
            "--max-unpacked or KAITO_MAX_UNPACKED"
        )
    free = shutil.disk_usage(dest).free
    if total > free:
        raise ArtifactError(
            f"{where} unpacks to {total} bytes and {dest} has {free} free; nothing was written, free space"
        )
    staging = dest / f".kaito-unpack-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        result = _extract(plan, links, entries, blobs, staging, where, limit)
        _place(staging, dest)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract(
    plan: _Plan,
    links: dict[str, str],
    entries: Sequence[FileEntry],
    blobs: Sequence[Path],
    staging: Path,
    where: str,
    limit: int,
) -> Unpacked:
    for path, node in sorted(plan.nodes.items()):
        if node.info is not None:  # tarfile's own "data" filter, on top of the checks above
            probe = node.info.replace(name=plan.rel(path), linkname=links.get(path, ""), deep=False)
            try:
                tarfile.data_filter(probe, str(staging))
            except tarfile.FilterError as exc:
                raise ArtifactError(f"{where}: {exc}; refusing it (nothing was written)") from None
        if node.kind == "dir":
            (staging / plan.rel(path)).mkdir(parents=True, exist_ok=True)
    digests: dict[str, tuple[str, int]] = {}
    written = 0
    wanted = {(n.layer, n.member): p for p, n in plan.nodes.items() if n.kind == "file"}
    for layer, blob in enumerate(blobs):
        if not any(key[0] == layer for key in wanted):
            continue
        with decompressed(blob, where) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for index, info in enumerate(tar):
                if (layer, index) not in wanted:
                    continue
                path = wanted[(layer, index)]
                written += info.size
                if written > limit:  # the headers said less: refuse rather than trust them
                    raise ArtifactError(f"{where} writes more than the {limit} bytes allowed; refusing it")
                source = tar.extractfile(info)
                assert source is not None
                digests[path] = _write_file(source, staging / plan.rel(path), info.mode)
    for path, target in sorted(links.items()):
        name = staging / plan.rel(path)
        name.parent.mkdir(parents=True, exist_ok=True)
        if plan.nodes[path].kind == "hardlink":
            os.link(staging / target, name, follow_symlinks=False)
            source_path = next(p for p in plan.nodes if plan.rel(p) == target)
            digests[path] = digests[source_path]
        else:
            os.symlink(target, name)
    return Unpacked(files=sorted((plan.rel(p), d, s) for p, (d, s) in digests.items()))


def _write_file(source: IO[bytes], target: Path, mode: int) -> tuple[str, int]:
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644 | (mode & 0o111 & 0o755))
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(CHUNK):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return f"sha256:{digest.hexdigest()}", size


def _place(staging: Path, dest: Path) -> None:
    """Move what was unpacked into DEST, replacing entries of the same name (an older pull's)."""
    for child in sorted(staging.iterdir()):
        target = dest / child.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(child, target)
