"""Weights straight from the Hugging Face Hub: ``kaito model pull hf://ORG/REPO@REVISION DIR`` (KAITO's
download-at-runtime path, for a cluster without an artifact registry) and the preset files
``kaito model pack PRESET --from-hf`` packs. The HTTP, the resumable downloads and the Hub's errors are
``huggingface_hub``'s, through :class:`kaito_core.artifacts.hub.HubClient`, which also pins the
revision to one commit and checks each file's size and stated sha256.

A pull downloads into a Hugging Face cache under ``KAITO_HOME`` (in a pod: the weights volume) and
hard-links each file into DEST, so, as for registry pulls, no file is stored twice; it then writes
DEST's pull record, so a pod restarted on its volume pulls nothing. Pickle formats (``.bin``,
``.pt``...) are never pulled: kaito loads safetensors and GGUF only.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kaito_core.artifacts import record
from kaito_core.artifacts.errors import ArtifactError
from kaito_core.artifacts.hashing import sha256_file
from kaito_core.artifacts.hub import HubClient, HubListing, is_repo_id
from kaito_core.artifacts.paths import kaito_home
from kaito_core.artifacts.puller import PullResult, _materialize

SCHEME = "hf://"
#: Never fetched: formats that unpickle (code execution on load), and the repository's git metadata.
SKIPPED = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".gitattributes")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


@dataclass(frozen=True)
class HubReference:
    repo: str
    revision: str

    @classmethod
    def parse(cls, text: str) -> HubReference:
        body = text.removeprefix(SCHEME)
        repo, _, revision = body.partition("@")
        if not text.startswith(SCHEME) or not is_repo_id(repo) or not _REVISION.match(revision or "main"):
            raise ArtifactError(
                f"{text!r} is not a Hugging Face reference: expected hf://ORG/REPO@REVISION "
                "(a commit, branch or tag), e.g. hf://microsoft/Phi-3-mini-4k-instruct@main"
            )
        return cls(repo, revision or "main")

    def __str__(self) -> str:
        return f"{SCHEME}{self.repo}@{self.revision}"


def is_hub_reference(ref: str) -> bool:
    return ref.startswith(SCHEME)


def hub_cache() -> Path:
    """The Hugging Face cache kaito downloads into: beside its blob cache, on the same filesystem."""
    return kaito_home() / "huggingface"


def _wanted(listing: HubListing, include: Sequence[str]) -> list[str]:
    names = [f.path for f in listing.files if not f.path.endswith(SKIPPED)]
    if include:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, pattern) for pattern in include)]
        missing = [p for p in include if not any(c in p for c in "*?[") and p not in names]
        if missing:
            raise ArtifactError(
                f"{', '.join(missing)} not in {listing.repo} at {listing.sha[:12]}: check the file names"
            )
    if not names:
        raise ArtifactError(f"{listing.repo} at {listing.sha[:12]} has no files to pull (pickles are not)")
    return names


def pull_from_hub(
    ref: str,
    dest: Path,
    *,
    include: Sequence[str] = (),
    cache_dir: Path | None = None,
    verify_cache: bool = False,
    jobs: int = 4,
    endpoint: str | None = None,
    token: str | None = None,
) -> PullResult:
    """Pull ``hf://ORG/REPO@REVISION`` (the files matching ``include``, default all but pickles) into
    ``dest``; the token is ``token`` else ``$HF_TOKEN`` (gated and private repositories)."""
    reference = HubReference.parse(ref)
    dest = Path(dest).expanduser()
    pinned = reference.revision if re.fullmatch(r"[0-9a-f]{40}", reference.revision) else None
    done = record.verified(dest, str(reference), pinned, rehash=verify_cache)
    if done is not None:
        return PullResult(
            reference=str(reference),
            digest=done["digest"],
            files=[dest / f["name"] for f in done["files"]],
            bytes_from_cache=sum(int(f["size"]) for f in done["files"]),
            skipped=True,
        )
    client = HubClient(endpoint=endpoint, token=token, cache_dir=cache_dir or hub_cache())
    listing = client.listing(reference.repo, reference.revision)
    names = _wanted(listing, include)
    snapshot = client.cache_dir / ("models--" + reference.repo.replace("/", "--")) / "snapshots" / listing.sha
    cached = {n for n in names if (snapshot / n).is_file()}
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(f"cannot create {dest} ({exc.strerror}) to pull {reference} into") from None
    record.clear(dest)
    local = client.download_files(listing, names, workers=jobs)
    files = [_materialize(local[name].resolve(), dest, name) for name in names]
    sizes = {name: (dest / name).stat().st_size for name in names}
    entries = [(name, _digest(listing, name, dest), sizes[name]) for name in names]
    record.write(dest, str(reference), listing.sha, entries)
    return PullResult(
        reference=str(reference),
        digest=listing.sha,
        files=files,
        bytes_downloaded=sum(sizes[n] for n in names if n not in cached),
        bytes_from_cache=sum(sizes[n] for n in cached),
    )


def _digest(listing: HubListing, name: str, dest: Path) -> str:
    """The sha256 the Hub states (LFS files, checked by the download), else hashed here (small files)."""
    entry = listing.file(name)
    if entry is not None and entry.sha256:
        return f"sha256:{entry.sha256}"
    return sha256_file(dest / name)


def preset_files_from_hub(
    repo: str, revision: str, names: Sequence[str], *, endpoint: str | None = None, token: str | None = None
) -> Path:
    """Download a preset format's files (resumable, into the Hugging Face cache) and return the directory
    holding them under their names (the cache's snapshot of that commit)."""
    client = HubClient(endpoint=endpoint, token=token, cache_dir=hub_cache())
    listing = client.listing(repo, revision)
    missing = [n for n in names if listing.file(n) is None]
    if missing:
        raise ArtifactError(f"{', '.join(missing)} not in {repo} at {listing.sha[:12]}: the preset names "
                            "files this revision does not have; pass the revision it was made from")
    local = client.download_files(listing, list(names))
    first = names[0]
    return Path(str(local[first])[: -len(first)])
