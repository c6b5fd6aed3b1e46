"""An in-process stand-in for the Hugging Face Hub, speaking its HTTP API as ``huggingface_hub`` uses it.

The Hub cannot be reached from CI, so kaito's Hub client is tested against this: a real HTTP server on
127.0.0.1 (a free port) that ``huggingface_hub`` itself talks to through ``HF_ENDPOINT`` (or
``endpoint=``), unmodified. What it serves, as the Hub does (documented in huggingface_hub's
``hf_api.model_info``, ``file_download.get_hf_file_metadata`` and ``utils._http.hf_raise_for_status``):

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: ``id``, ``sha`` (the commit),
  ``private``, ``gated`` (``False``, ``"auto"`` or ``"manual"``), ``siblings`` (``rfilename``; with
  ``?blobs=true`` also ``size``, ``blobId`` and, for LFS files, ``lfs {sha256, size, pointerSize}``).
  Model info of a gated repository is public, as on the Hub; its files are not.
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: small files answered directly with ``ETag`` (the git
  blob id), ``X-Repo-Commit``, ``Content-Length``; LFS files (weights) answered ``302`` to a CDN (a
  second server on another port: another origin, so the client takes the metadata from the redirect and
  sends no token there, as with the Hub's CDN) with ``X-Linked-Etag`` (the sha256), ``X-Linked-Size``
  and ``X-Repo-Commit``.
  ``Range`` (``bytes=N-`` / ``bytes=N-M``) gives ``206`` with ``Content-Range``; past the end ``416``.
- errors with the Hub's ``X-Error-Code``/``X-Error-Message`` headers: ``RepoNotFound`` (401 without a
  token, 404 with one; a private repository the token cannot read looks the same), ``RevisionNotFound``
  and ``EntryNotFound`` (404), ``GatedRepo`` (401 without a token, 403 with a token not granted access),
  and 401 "Invalid credentials in Authorization header" for a token the Hub does not know.

Test knobs: ``add_repo``/``commit``/``tag`` build repositories (commits are sha1s of their content),
``grant`` gives a token access to a gated or private repository, ``truncate_next(path, n)`` cuts the next
download of a file after ``n`` bytes (to prove resuming), ``requests`` records what was asked (method,
path, Range, whether a token was sent; never the token itself).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

#: File names the Hub stores with Git LFS in a model repository (its default .gitattributes).
LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".onnx", ".msgpack", ".h5", ".model")
LOOPBACK = "127.0.0.1"


def git_blob_id(data: bytes) -> str:
    """The git object id of a file's content (the Hub's ETag for non-LFS files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class HubRepo:
    repo_id: str
    gated: bool | str = False  # False, "auto" or "manual"
    private: bool = False
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> path -> content
    allowed_tokens: set[str] = field(default_factory=set)

    def commit_of(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        if re.fullmatch(r"[0-9a-f]{40}", revision) and revision in self.commits:
            return revision
        return None


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None
    authorized: bool  # whether an Authorization header came with it


class FakeHub:
    """The server; use as a context manager or ``start()``/``stop()``. ``endpoint`` is its base URL."""

    def __init__(self, tokens: Mapping[str, str] | None = None) -> None:
        #: tokens the Hub knows: token -> user name
        self.tokens: dict[str, str] = dict(tokens or {})
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[Request] = []
        self._truncate: dict[str, int] = {}
        self._blobs: dict[str, bytes] = {}  # sha256 -> content, what the CDN serves
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    # ------------------------------------------------------------------ building repositories

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | str],
        *,
        gated: bool | str = False,
        private: bool = False,
        branch: str = "main",
    ) -> str:
        """A repository with one commit on ``branch``; returns the commit."""
        with self._lock:
            self.repos[repo_id] = HubRepo(repo_id, gated="auto" if gated is True else gated, private=private)
        return self.commit(repo_id, files, branch=branch, replace=True)

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes | str],
        *,
        branch: str = "main",
        delete: tuple[str, ...] = (),
        replace: bool = False,
    ) -> str:
        """A new commit on ``branch`` adding/changing ``files`` (and removing ``delete``)."""
        with self._lock:
            repo = self.repos[repo_id]
            parent = repo.refs.get(branch)
            tree = {} if replace or parent is None else dict(repo.commits[parent])
            tree.update({p: c.encode() if isinstance(c, str) else bytes(c) for p, c in files.items()})
            for path, content in tree.items():
                if is_lfs(path):
                    self._blobs[hashlib.sha256(content).hexdigest()] = content
            for path in delete:
                tree.pop(path, None)
            digest = hashlib.sha1(usedforsecurity=False)
            digest.update((parent or "").encode())
            for path in sorted(tree):
                digest.update(path.encode() + b"\0" + git_blob_id(tree[path]).encode())
            sha = digest.hexdigest()
            repo.commits[sha] = tree
            repo.refs[branch] = sha
            return sha

    def tag(self, repo_id: str, tag: str, commit: str) -> None:
        with self._lock:
            self.repos[repo_id].refs[tag] = commit

    def grant(self, repo_id: str, token: str) -> None:
        """Give ``token`` access to a gated or private repository."""
        with self._lock:
            self.repos[repo_id].allowed_tokens.add(token)

    def truncate_next(self, path: str, after_bytes: int) -> None:
        """Cut the next download of ``path`` (in any repository) after ``after_bytes`` bytes."""
        with self._lock:
            self._truncate[path] = after_bytes

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        assert self._servers, "FakeHub is not started"
        return f"http://{LOOPBACK}:{self._servers[0].server_address[1]}"

    @property
    def cdn_endpoint(self) -> str:
        assert self._servers, "FakeHub is not started"
        return f"http://{LOOPBACK}:{self._servers[1].server_address[1]}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        for name in ("fake-hub", "fake-hub-cdn"):
            server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ lookups the handler uses

    def _blob_by_sha256(self, sha256: str) -> bytes | None:
        with self._lock:
            return self._blobs.get(sha256)

    def _take_truncation(self, path: str) -> int | None:
        with self._lock:
            return self._truncate.pop(path, None)


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read ``requests``
        return

    def do_HEAD(self) -> None:
        self._dispatch(body=False)

    def do_GET(self) -> None:
        self._dispatch(body=True)

    # ------------------------------------------------------------------ routing

    def _dispatch(self, body: bool) -> None:
        url = urlsplit(self.path)
        raw_path = url.path
        self.fake.requests.append(
            Request(
                self.command, unquote(raw_path), self.headers.get("Range"), "Authorization" in self.headers
            )
        )
        token = self._token()
        if token is not None and token not in self.fake.tokens:
            return self._error(401, None, "Invalid credentials in Authorization header", body)
        if raw_path.startswith("/api/models/"):
            return self._model_info(raw_path.removeprefix("/api/models/"), parse_qs(url.query), token, body)
        if raw_path.startswith("/lfs-cdn/"):
            return self._cdn(raw_path.removeprefix("/lfs-cdn/"), body)
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", raw_path)
        if match:
            repo_id, revision, path = match.group(1), unquote(match.group(2)), unquote(match.group(3))
            return self._resolve(repo_id, revision, path, token, body)
        return self._error(404, None, "Not Found", body)

    def _token(self) -> str | None:
        header = self.headers.get("Authorization", "")
        return header.removeprefix("Bearer ").strip() or None if header.startswith("Bearer ") else None

    def _repo_or_error(self, repo_id: str, token: str | None, body: bool) -> HubRepo | None:
        repo = self.fake.repos.get(repo_id)
        if repo is None or (repo.private and token not in repo.allowed_tokens):
            # the Hub hides private repositories: they look like missing ones
            self._error(404 if token else 401, "RepoNotFound", "Repository not found", body)
            return None
        return repo

    # ------------------------------------------------------------------ endpoints

    def _model_info(self, rest: str, query: dict[str, list[str]], token: str | None, body: bool) -> None:
        parts = rest.split("/")
        if len(parts) == 2:
            repo_id, revision = rest, "main"
        elif len(parts) == 4 and parts[2] == "revision":
            repo_id, revision = "/".join(parts[:2]), unquote(parts[3])
        else:
            return self._error(404, None, "Not Found", body)
        repo = self._repo_or_error(repo_id, token, body)
        if repo is None:
            return None
        commit = repo.commit_of(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", body)
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path, content in sorted(repo.commits[commit].items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                if is_lfs(path):
                    sha256 = hashlib.sha256(content).hexdigest()
                    pointer = lfs_pointer(sha256, len(content))
                    sibling.update(size=len(content), blobId=git_blob_id(pointer),
                                   lfs={"sha256": sha256, "size": len(content), "pointerSize": len(pointer)})
                else:
                    sibling.update(size=len(content), blobId=git_blob_id(content))
            siblings.append(sibling)
        info = {
            "_id": hashlib.md5(repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit,
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "lastModified": "2025-01-01T00:00:00.000Z",
            "tags": ["transformers", "safetensors"],
            "library_name": "transformers",
            "siblings": siblings,
        }
        return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)

    def _resolve(self, repo_id: str, revision: str, path: str, token: str | None, body: bool) -> None:
        repo = self._repo_or_error(repo_id, token, body)
        if repo is None:
            return None
        if repo.gated and token not in repo.allowed_tokens:
            if token is None:
                message = (f"Access to model {repo_id} is restricted. You must have access to it and be "
                           "authenticated to access it. Please log in.")
                return self._error(401, "GatedRepo", message, body)
            message = (f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                       f"Visit {self.fake.endpoint}/{repo_id} to ask for access.")
            return self._error(403, "GatedRepo", message, body)
        commit = repo.commit_of(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", body)
        content = repo.commits[commit].get(path)
        if content is None:
            return self._error(404, "EntryNotFound", "Entry not found", body)
        headers = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if is_lfs(path):
            sha256 = hashlib.sha256(content).hexdigest()
            pointer = lfs_pointer(sha256, len(content))
            location = f"{self.fake.cdn_endpoint}/lfs-cdn/{sha256}?name={quote(path.rsplit('/', 1)[-1])}"
            headers.update({"Location": location, "ETag": f'"{git_blob_id(pointer)}"',
                            "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(content))})
            return self._send(302, b"", headers, body)
        headers["ETag"] = f'"{git_blob_id(content)}"'
        return self._content(content, path, headers, body)

    def _cdn(self, rest: str, body: bool) -> None:
        sha256 = rest.split("?", 1)[0]
        content = self.fake._blob_by_sha256(sha256)
        if content is None:
            return self._error(404, None, "Not Found", body)
        name = parse_qs(urlsplit(self.path).query).get("name", [sha256])[0]
        headers = {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes",
                   "Content-Disposition": f'inline; filename="{name}"'}
        return self._content(content, name, headers, body)

    # ------------------------------------------------------------------ responses

    def _content(self, content: bytes, name: str, headers: dict[str, str], body: bool) -> None:
        status, start, end = 200, 0, len(content)
        wanted = self.headers.get("Range")
        if wanted:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
            if match is None or int(match.group(1)) >= len(content):
                headers["Content-Range"] = f"bytes */{len(content)}"
                return self._send(416, b"", headers, body)
            start = int(match.group(1))
            end = min(int(match.group(2)) + 1, len(content)) if match.group(2) else len(content)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(content)}"
        headers.setdefault("Content-Type", "application/octet-stream")
        part = content[start:end]
        cut = self.fake._take_truncation(name) if body else None
        if cut is not None and cut < len(part):
            # announce the whole part, send only some of it, then close: the client sees a broken transfer
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(part)), "Connection": "close"}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(part[:cut])
            self.wfile.flush()
            self.close_connection = True
            return None
        return self._send(status, part, headers, body)

    def _error(self, status: int, code: str | None, message: str, body: bool) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code is not None:
            headers["X-Error-Code"] = code
        return self._send(status, json.dumps({"error": message}).encode(), headers, body)

    def _send(self, status: int, payload: bytes, headers: Mapping[str, str], body: bool) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body and payload:
            self.wfile.write(payload)


def iter_requests(hub: FakeHub, method: str | None = None) -> Iterator[Request]:
    """The recorded requests, optionally only those of one method."""
    return (r for r in list(hub.requests) if method is None or r.method == method)
