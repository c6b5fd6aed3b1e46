"""The Hugging Face Hub, through ``huggingface_hub``: resolve, list, read and download a model repository.

One client for every place that talks to the Hub (``kaito validate``/``plan`` and the operator reading a
generic ``org/model`` id's ``config.json`` and safetensors index, ``kaito model pack`` from Hugging Face,
the image build): ``huggingface_hub`` does the HTTP, the cache layout, resumable downloads and the
Hub's error codes (a broken transfer resumes with ``Range`` from the last chunk written; since
``huggingface_hub`` 1.x a partial file is not kept across processes); this module adds what kaito needs:

- a revision is resolved to its commit once and every file is then read at that commit, so a branch
  that moves during a download cannot mix two commits' files;
- listings carry each file's size and, for LFS files, the sha256 the Hub states; downloads are checked
  against both (the Hub's client only checks sizes);
- offline (``offline=True`` or ``HF_HUB_OFFLINE=1``) everything is answered from the local Hugging Face
  cache, and a miss names the repository, revision and file that are missing and how to get them; an
  online listing is noted in the cache (``kaito-listings/<commit>.json`` beside the snapshots), so an
  offline run can size weights it never downloaded;
- every failure is one ``HubError`` line a user can act on, with a ``kind`` a caller can branch on
  (``repo-not-found``, ``gated``, ``no-access``, ``unauthorized``, ``revision-not-found``,
  ``entry-not-found``, ``offline``, ``connection``, ``invalid``, ``corrupt``, ``http``). Messages never
  carry the token.

The endpoint is ``endpoint=`` else ``$HF_ENDPOINT`` else https://huggingface.co; the token is
``token=`` else ``$HF_TOKEN`` (else whatever ``huggingface_hub`` finds, e.g. ``hf auth login``'s file).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaito_core.api.names import is_repo_id as is_repo_id  # re-exported: callers of the client use it
from kaito_core.artifacts.errors import ArtifactError, connection_problem

DEFAULT_ENDPOINT = "https://huggingface.co"
CONFIG_FILE = "config.json"
SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_SINGLE = "model.safetensors"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TRUE = {"1", "true", "yes", "on"}


class HubError(ArtifactError):
    """A Hub problem in one line; ``kind`` says which (see the module docstring)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class HubFile:
    """One file of a repository at one commit."""

    path: str
    size: int | None  # bytes; None where the listing did not say
    sha256: str | None = None  # LFS files only: the digest the Hub states for the content
    blob_id: str | None = None  # the git object id


@dataclass(frozen=True)
class HubListing:
    """A repository at one commit: its files with sizes, and whether downloading needs a token."""

    repo: str
    revision: str  # as asked ("main", a tag, or a commit)
    sha: str  # the commit it resolved to
    files: tuple[HubFile, ...]
    gated: bool = False
    private: bool = False

    def file(self, path: str) -> HubFile | None:
        return next((f for f in self.files if f.path == path), None)

    @property
    def safetensors(self) -> tuple[HubFile, ...]:
        return tuple(f for f in self.files if f.path.endswith(".safetensors"))


def hub_cache_dir() -> Path:
    """Where ``huggingface_hub`` keeps its cache: ``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or
    ~/.cache/huggingface/hub.

    Read from the environment at call time (``huggingface_hub`` reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


class HubClient:
    """Reads and downloads model repositories; see the module docstring for what it adds."""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        cache_dir: str | Path | None = None,
        offline: bool | None = None,
    ) -> None:
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self._token = token if token is not None else (os.environ.get("HF_TOKEN") or None)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
        if offline is None:
            offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE
        self.offline = offline

    def __repr__(self) -> str:  # never the token
        return (
            f"HubClient(endpoint={self.endpoint!r}, offline={self.offline}, "
            f"cache_dir={str(self.cache_dir)!r})"
        )

    # ------------------------------------------------------------------ reading

    def resolve(self, repo: str, revision: str | None = None) -> str:
        """The commit ``revision`` (default ``main``) of ``repo`` points to."""
        if self.offline:
            return self._cached_commit(repo, revision or "main")
        return self.listing(repo, revision).sha

    def listing(self, repo: str, revision: str | None = None) -> HubListing:
        """The files of ``repo`` at ``revision`` with their sizes (and LFS sha256), and its commit."""
        revision = revision or "main"
        if self.offline:
            return self._cached_listing(repo, revision)
        api = self._api()
        try:
            info = api.model_info(repo, revision=revision, files_metadata=True, token=self._token_arg())
        except Exception as exc:
            raise self._translate(exc, repo, revision) from None
        if not info.sha:
            raise HubError(f"the Hub at {self.endpoint} gave no commit for {repo}@{revision}", "http")
        self._remember_ref(repo, revision, info.sha)
        files = tuple(
            HubFile(
                path=s.rfilename,
                size=s.lfs.size if s.lfs is not None else s.size,
                sha256=s.lfs.sha256 if s.lfs is not None else None,
                blob_id=s.blob_id,
            )
            for s in info.siblings or ()
        )
        listing = HubListing(
            repo, revision, info.sha, files, gated=bool(info.gated), private=bool(info.private)
        )
        self._remember_listing(listing)
        return listing

    def read_json(self, repo: str, path: str, revision: str | None = None) -> dict[str, Any]:
        """A JSON file of the repository (``config.json``, the safetensors index), parsed."""
        local = self.download(repo, path, revision)
        try:
            data = json.loads(local.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise HubError(
                f"{path} of {repo}@{revision or 'main'} is not valid JSON ({exc})", "corrupt"
            ) from None
        if not isinstance(data, dict):
            raise HubError(f"{path} of {repo}@{revision or 'main'} is not a JSON object", "corrupt")
        return data

    def config(self, repo: str, revision: str | None = None) -> dict[str, Any]:
        """The model's ``config.json``."""
        return self.read_json(repo, CONFIG_FILE, revision)

    def safetensors_index(self, repo: str, listing: HubListing) -> dict[str, Any]:
        """The safetensors index at the listing's commit; for a single-file model (``model.safetensors``,
        no index) an equivalent index built from the listing (``metadata.total_size`` = the file's size,
        which includes its small JSON header)."""
        if listing.file(SAFETENSORS_INDEX) is not None:
            return self.read_json(repo, SAFETENSORS_INDEX, listing.sha)
        single = listing.file(SAFETENSORS_SINGLE)
        if single is not None and single.size is not None:
            return {"metadata": {"total_size": single.size}, "weight_map": {}}
        raise HubError(
            f"{repo}@{listing.sha[:12]} has neither {SAFETENSORS_INDEX} nor {SAFETENSORS_SINGLE}: "
            "kaito serves Hugging Face models from safetensors weights only",
            "entry-not-found",
        )

    # ------------------------------------------------------------------ downloading

    def download(
        self, repo: str, path: str, revision: str | None = None, *, local_dir: str | Path | None = None
    ) -> Path:
        """One file, into the Hugging Face cache (or ``local_dir``); resumes a partial download."""
        from huggingface_hub import hf_hub_download

        revision = revision or "main"
        try:
            return Path(
                hf_hub_download(
                    repo,
                    path,
                    revision=revision,
                    cache_dir=self.cache_dir,
                    local_dir=local_dir,
                    token=self._token_arg(),
                    endpoint=self.endpoint,
                    local_files_only=self.offline,
                )
            )
        except Exception as exc:
            raise self._translate(exc, repo, revision, path) from None

    def download_files(
        self,
        listing: HubListing,
        paths: Iterable[str] | None = None,
        *,
        local_dir: str | Path | None = None,
        workers: int = 4,
        verify: bool = True,
    ) -> dict[str, Path]:
        """Files of ``listing`` (all by default) at its commit, in parallel; sizes and stated sha256
        checked (``verify``). Returns path in the repository -> local file."""
        wanted = list(paths) if paths is not None else [f.path for f in listing.files]
        files: list[HubFile] = []
        for path in wanted:
            entry = listing.file(path)
            if entry is None:
                raise HubError(
                    f"file {path} not found in {listing.repo} at {listing.sha[:12]}", "entry-not-found"
                )
            files.append(entry)

        def one(entry: HubFile) -> tuple[str, Path]:
            local = self.download(listing.repo, entry.path, listing.sha, local_dir=local_dir)
            if verify:
                check_file(local, entry, listing)
            return entry.path, local

        with ThreadPoolExecutor(max(1, min(workers, len(files) or 1))) as pool:
            return dict(pool.map(one, files))

    # ------------------------------------------------------------------ internals

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint)

    def _token_arg(self) -> str | None:
        return self._token

    def _repo_cache(self, repo: str) -> Path:
        return self.cache_dir / ("models--" + repo.replace("/", "--"))

    def _remember_ref(self, repo: str, revision: str, sha: str) -> None:
        """Record ``revision -> sha`` in the cache's ``refs/`` as ``huggingface_hub`` does for the
        revisions it downloads by name: files are downloaded by commit here, so without this an offline
        run could not find ``main`` again."""
        if commit_of(revision) or revision != revision.strip() or ".." in revision:
            return
        ref = self._repo_cache(repo) / "refs" / revision
        try:
            if not ref.is_file() or ref.read_text().strip() != sha:
                ref.parent.mkdir(parents=True, exist_ok=True)
                ref.write_text(sha)
        except OSError:
            return  # a read-only cache still serves; only the offline lookup of the name is lost

    def _listing_file(self, repo: str, sha: str) -> Path:
        # kaito's own note beside huggingface_hub's cache: the Hub's listing (sizes, sha256) of a commit,
        # so that an offline run can size weights it has not downloaded
        return self._repo_cache(repo) / "kaito-listings" / f"{sha}.json"

    def _remember_listing(self, listing: HubListing) -> None:
        path = self._listing_file(listing.repo, listing.sha)
        data = {"gated": listing.gated, "private": listing.private,
                "files": [[f.path, f.size, f.sha256, f.blob_id] for f in listing.files]}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(path)
        except OSError:
            return  # a read-only cache still serves online; offline sizing of this commit is lost

    def _cached_commit(self, repo: str, revision: str) -> str:
        root = self._repo_cache(repo)
        if _COMMIT.match(revision) and (root / "snapshots" / revision).is_dir():
            return revision
        ref = root / "refs" / revision
        if ref.is_file():
            return ref.read_text().strip()
        raise HubError(
            f"offline, and {repo}@{revision} is not in the Hugging Face cache at {self.cache_dir}: "
            f"fetch it once with network access (`hf download {repo} --revision {revision}`) or point "
            "HF_HUB_CACHE/HF_HOME at a cache that has it",
            "offline",
        )

    def _cached_listing(self, repo: str, revision: str) -> HubListing:
        sha = self._cached_commit(repo, revision)
        try:
            noted = json.loads(self._listing_file(repo, sha).read_text())
            return HubListing(repo, revision, sha, tuple(HubFile(*entry) for entry in noted["files"]),
                              gated=bool(noted["gated"]), private=bool(noted["private"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no note (a cache filled by other tools): what is in the snapshot
        snapshot = self._repo_cache(repo) / "snapshots" / sha
        files = []
        for local in sorted(p for p in snapshot.rglob("*") if p.is_file()):
            # the cache names every blob after its ETag, which for LFS files is the content's sha256
            blob = local.resolve().name
            files.append(
                HubFile(
                    path=local.relative_to(snapshot).as_posix(),
                    size=local.stat().st_size,
                    sha256=blob if _SHA256.match(blob) else None,
                )
            )
        # only what an earlier run downloaded is here: a file missing from this listing is reported by
        # the read that needs it, with the offline message
        return HubListing(repo, revision, sha, tuple(files))

    def _translate(self, exc: Exception, repo: str, revision: str, path: str | None = None) -> HubError:
        return translate_error(exc, repo, revision, path, endpoint=self.endpoint, offline=self.offline,
                               cache_dir=self.cache_dir)


def check_file(local: Path, entry: HubFile, listing: HubListing) -> None:
    """The downloaded file has the size and (LFS) sha256 the listing states, else ``HubError`` corrupt."""
    where = f"{entry.path} of {listing.repo}@{listing.sha[:12]}"
    size = local.stat().st_size
    if entry.size is not None and size != entry.size:
        raise HubError(f"{where}: {size} bytes downloaded, the Hub states {entry.size}", "corrupt")
    if entry.sha256:
        digest = hashlib.sha256()
        with local.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != entry.sha256:
            raise HubError(
                f"{where}: sha256 {digest.hexdigest()} does not match the Hub's {entry.sha256}; delete it "
                "from the cache and download again",
                "corrupt",
            )


def translate_error(
    exc: Exception,
    repo: str,
    revision: str,
    path: str | None,
    *,
    endpoint: str,
    offline: bool,
    cache_dir: Path,
) -> HubError:
    """``huggingface_hub``'s exception as a ``HubError`` (ordered: subclasses before their parents)."""
    from huggingface_hub import errors

    what = f"{path} of {repo}@{revision}" if path else f"{repo}@{revision}"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, errors.GatedRepoError):
        if status == 403:
            return HubError(
                f"the token given cannot read gated repository {repo}: accept its terms at "
                f"{endpoint}/{repo} with the token's account, or use a token of an account that has",
                "no-access",
            )
        return HubError(
            f"{repo} is a gated repository: downloading it needs a Hugging Face token (HF_TOKEN; in a "
            f"Workspace, inference.preset.presetOptions.modelAccessSecret naming a Secret with an HF_TOKEN "
            f"key) of an account that accepted its terms at {endpoint}/{repo}",
            "gated",
        )
    if isinstance(exc, errors.RepositoryNotFoundError):
        return HubError(
            f"Hugging Face repository {repo} not found at {endpoint} (or it is private and the token given "
            "cannot read it): check the id (org/model)",
            "repo-not-found",
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return HubError(
            f"revision {revision} not found in Hugging Face repository {repo}", "revision-not-found"
        )
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return HubError(f"file {path} not found in {repo} at revision {revision}", "entry-not-found")
    if isinstance(exc, errors.LocalEntryNotFoundError):
        if offline:
            return HubError(
                f"offline, and {what} is not in the Hugging Face cache at {cache_dir}: fetch it once with "
                f"network access (`hf download {repo} {path or ''} --revision {revision}`) or point "
                "HF_HUB_CACHE/HF_HOME at a cache that has it",
                "offline",
            )
        return HubError(
            f"could not reach the Hub at {endpoint} for {what}, and it is not in the Hugging Face cache at "
            f"{cache_dir}: check the network (or set HF_HUB_OFFLINE=1 with a filled cache)",
            "connection",
        )
    if isinstance(exc, errors.HFValidationError):
        return HubError(f"{repo!r} is not a Hugging Face repository id (org/model): {exc}", "invalid")
    if isinstance(exc, errors.HfHubHTTPError):
        if status == 401:
            return HubError(
                f"the Hub at {endpoint} rejected the token given (HTTP 401) for {what}: check HF_TOKEN or "
                "the modelAccessSecret's HF_TOKEN value",
                "unauthorized",
            )
        return HubError(f"the Hub at {endpoint} answered HTTP {status} for {what}", "http")
    if isinstance(exc, OSError) or type(exc).__module__.startswith(("httpx", "httpcore")):
        return HubError(
            f"could not reach the Hub at {endpoint} for {what}: {connection_problem(exc)}", "connection"
        )
    return HubError(f"reading {what} from the Hub at {endpoint} failed: {type(exc).__name__}", "http")


def commit_of(value: str) -> bool:
    """Whether ``value`` is a full commit id (40 hex), i.e. already pinned."""
    return bool(_COMMIT.match(value))


def total_safetensors_bytes(index: dict[str, Any], listing: HubListing | None = None) -> int:
    """The weights' size: the index's ``metadata.total_size`` (tensor bytes), else the listed files' sum."""
    total = (index.get("metadata") or {}).get("total_size")
    if isinstance(total, int | float) and total > 0:
        return int(total)
    if listing is not None:
        shards: Sequence[HubFile] = listing.safetensors
        return sum(f.size or 0 for f in shards)
    return 0
