"""The embedded store: an OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/``).

Follows the OCI image-layout spec so other tools (oras, skopeo, crane) can read it: every tag is an
``index.json`` entry whose ``org.opencontainers.image.ref.name`` annotation is the tag.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kaito_core.artifacts import mediatypes
from kaito_core.artifacts.errors import ArtifactError
from kaito_core.artifacts.manifest import digest_bytes

LAYOUT_VERSION = "1.0.0"


class OciLayout:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    # -------------------------------------------------------------------------------- structure

    def exists(self) -> bool:
        return (self.root / "oci-layout").is_file()

    def create(self) -> None:
        try:
            (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            if not (self.root / "oci-layout").exists():
                _atomic_write(
                    self.root / "oci-layout", json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode()
                )
            if not (self.root / "index.json").exists():
                _atomic_write(self.root / "index.json", _index_bytes([]))
        except OSError as exc:
            raise ArtifactError(
                f"cannot create the OCI layout store at {self.root} ({exc.strerror}); choose a "
                "writable directory"
            ) from None

    def require(self) -> None:
        if not self.exists():
            raise ArtifactError(
                f"no OCI layout at {self.root} (no oci-layout file); pack or push an artifact into "
                f"oci:{self.root}:TAG first"
            )

    def index(self) -> dict[str, Any]:
        self.require()
        try:
            data = json.loads((self.root / "index.json").read_text())
        except (OSError, ValueError):
            raise ArtifactError(
                f"{self.root}/index.json is missing or not JSON; the store is damaged"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("manifests", []), list):
            raise ArtifactError(f"{self.root}/index.json is not an OCI image index")
        return data

    # ------------------------------------------------------------------------------------ blobs

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def has_blob(self, digest: str, size: int) -> bool:
        try:
            return self.blob_path(digest).stat().st_size == size
        except FileNotFoundError:
            return False

    def put_bytes(self, data: bytes) -> str:
        digest = digest_bytes(data)
        if not self.has_blob(digest, len(data)):
            _atomic_write(self.blob_path(digest), data)
        return digest

    def put_file(self, source: Path, digest: str, size: int) -> Path:
        """Copy a file whose digest the caller computed into blobs/ (temp name, then rename)."""
        final = self.blob_path(digest)
        if self.has_blob(digest, size):
            return final
        tmp = final.with_name(f".{final.name}.tmp{os.getpid()}-{secrets.token_hex(4)}")
        try:
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ArtifactError(
                f"cannot write {final} into the OCI layout {self.root} ({exc.strerror}); free space or "
                "choose another store directory"
            ) from None
        return final

    def read_blob(self, digest: str, what: str) -> bytes:
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ArtifactError(
                f"the OCI layout {self.root} lacks the {what} blob {digest}; re-pack it"
            ) from None
        if digest_bytes(data) != digest:
            raise ArtifactError(
                f"the {what} blob {digest} in {self.root} is corrupt (digest mismatch); re-pack it"
            )
        return data

    # ------------------------------------------------------------------------------------- tags

    def resolve(self, tag: str | None, digest: str | None) -> dict[str, Any]:
        """The index.json descriptor of a tag, or of a manifest digest."""
        manifests = self.index().get("manifests", [])
        for entry in manifests:
            if digest is not None and entry.get("digest") == digest:
                return dict(entry)
            if digest is None and (entry.get("annotations") or {}).get(mediatypes.REF_NAME) == tag:
                return dict(entry)
        if digest is not None and self.blob_path(digest).exists():
            return {
                "mediaType": mediatypes.OCI_MANIFEST,
                "digest": digest,
                "size": self.blob_path(digest).stat().st_size,
            }
        known = sorted((e.get("annotations") or {}).get(mediatypes.REF_NAME, "") for e in manifests)
        raise ArtifactError(
            f"the OCI layout {self.root} has no {'manifest ' + digest if digest else 'tag ' + str(tag)}"
            f" (tags: {', '.join(t for t in known if t) or 'none'})"
        )

    def tag(self, tag: str, descriptor: dict[str, Any]) -> None:
        """Point ``tag`` at a manifest descriptor (replacing the tag's previous entry)."""
        with self._locked():
            manifests = [
                e
                for e in self.index().get("manifests", [])
                if (e.get("annotations") or {}).get(mediatypes.REF_NAME) != tag
            ]
            entry = dict(descriptor)
            entry["annotations"] = {**(descriptor.get("annotations") or {}), mediatypes.REF_NAME: tag}
            manifests.append(entry)
            _atomic_write(self.root / "index.json", _index_bytes(manifests))

    def add(self, descriptor: dict[str, Any]) -> None:
        """List a manifest in index.json without a tag (once)."""
        with self._locked():
            manifests = self.index().get("manifests", [])
            if not any(e.get("digest") == descriptor["digest"] for e in manifests):
                _atomic_write(self.root / "index.json", _index_bytes([*manifests, dict(descriptor)]))

    def tags(self) -> dict[str, str]:
        return {
            (e.get("annotations") or {}).get(mediatypes.REF_NAME, ""): e.get("digest", "")
            for e in self.index().get("manifests", [])
        }

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # The lock file sits beside the layout's own files; the spec allows extra files in the root.
        with open(self.root / ".index.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _index_bytes(manifests: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": manifests}, indent=2
    ).encode()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{secrets.token_hex(4)}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
