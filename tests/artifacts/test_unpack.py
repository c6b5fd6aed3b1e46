"""Adapters (and weights) that are not kaito's one-file-a-layer artifacts, pulled from a real registry:
KAITO's tuning pusher's image, an ``oras push DIR`` artifact (oras-py, and the oras CLI's annotations),
a container image built by buildah (a whiteout in its second layer), an image index; and hostile tars,
each refused with nothing written outside DEST."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from kaito_core.artifacts import ArtifactError, mediatypes, pull
from kaito_core.artifacts.manifest import canonical_json, digest_bytes
from kaito_core.artifacts.reference import Reference
from kaito_core.artifacts.transport import RegistryClient

CONFIG = b'{"peft_type": "LORA", "r": 8}'
WEIGHTS = bytes(range(256)) * 64


def adapter_dir(root: Path, config: bytes = CONFIG) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    (data / "adapter_config.json").write_bytes(config)
    (data / "adapter_model.safetensors").write_bytes(WEIGHTS)
    return data


def push_raw(
    host: str,
    repo: str,
    tag: str,
    layers: Sequence[tuple[bytes, str, dict[str, str]]],
    config: bytes = b"{}",
    config_type: str = mediatypes.OCI_IMAGE_CONFIG,
    annotations: dict[str, str] | None = None,
) -> str:
    """A manifest with these (blob, media type, annotations) layers, pushed as a registry client does."""
    reference = Reference.parse(f"{host}/{repo}:{tag}")
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": digest_bytes(config), "size": len(config)},
        "layers": [
            {
                "mediaType": mt,
                "digest": digest_bytes(blob),
                "size": len(blob),
                **({"annotations": a} if a else {}),
            }
            for blob, mt, a in layers
        ],
    }
    if annotations:
        manifest["annotations"] = annotations
    data = canonical_json(manifest)
    with RegistryClient(reference, plain_http=True, push=True) as client:
        for blob in [config, *(b for b, _, _ in layers)]:
            client.upload_bytes(blob, digest_bytes(blob))
        client.put_manifest(tag, data, mediatypes.OCI_MANIFEST)
    return digest_bytes(data)


def tar_of(members: Sequence[tuple[tarfile.TarInfo, bytes]], compress: bool = True) -> tuple[bytes, str]:
    """(blob, sha256 of the uncompressed tar)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    raw = buffer.getvalue()
    return (gzip.compress(raw, mtime=0) if compress else raw), digest_bytes(raw)


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else mode
    return info


def image(host: str, repo: str, tag: str, *layers: Sequence[tuple[tarfile.TarInfo, bytes]]) -> str:
    blobs = [tar_of(layer) for layer in layers]
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [diff for _, diff in blobs]}}).encode()
    return push_raw(host, repo, tag, [(blob, mediatypes.OCI_LAYER_GZIP, {}) for blob, _ in blobs], config)


def listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.name.startswith(".kaito")}


# ------------------------------------------------------------------------------------ the formats


def test_kaito_tuning_pusher_image(registry, repo: str, tmp_path: Path) -> None:
    """What KAITO's tuning job pushes (pusher.sh): `tar c data/`, `gzip -9`, an image config listing the
    tar's diff id, `oras push --annotation-file` of layer.tar.gz; the adapter lands directly in DEST."""
    adapter_dir(tmp_path / "work")
    subprocess.run(
        ["tar", "c", "-f", str(tmp_path / "layer.tar"), "-C", str(tmp_path / "work"), "data"], check=True
    )
    diff = hashlib.sha256((tmp_path / "layer.tar").read_bytes()).hexdigest()
    subprocess.run(["gzip", "-9", str(tmp_path / "layer.tar")], check=True)
    config = f'{{"rootfs":{{"diff_ids":["sha256:{diff}"]}}}}'.encode()
    layer = (tmp_path / "layer.tar.gz").read_bytes()
    ref = f"{registry.host}/{repo}:tuned"
    layers = [(layer, mediatypes.OCI_LAYER_GZIP, {mediatypes.TITLE: "layer.tar.gz"})]
    name = {"sh.kaito.model.name": "phi-3-mini-4k-instruct"}
    digest = push_raw(registry.host, repo, "tuned", layers, config, annotations=name)
    dest = tmp_path / "adapter"
    result = pull(ref, dest, cache_dir=tmp_path / "cache", progress=False)
    assert listing(dest) == {"adapter_config.json", "adapter_model.safetensors"}
    assert (dest / "adapter_config.json").read_bytes() == CONFIG
    assert (dest / "adapter_model.safetensors").read_bytes() == WEIGHTS
    assert result.digest == digest
    assert sorted(result.files) == [dest / "adapter_config.json", dest / "adapter_model.safetensors"]
    # The pull record vouches for the unpacked files: a second pull moves nothing, and a changed file
    # is noticed and pulled again.
    again = pull(ref, dest, cache_dir=tmp_path / "cache", progress=False)
    assert again.skipped
    (dest / "adapter_model.safetensors").write_bytes(b"tampered")
    third = pull(ref, dest, cache_dir=tmp_path / "cache", progress=False, verify_cache=True)
    assert not third.skipped and (dest / "adapter_model.safetensors").read_bytes() == WEIGHTS


def test_an_inconsistent_diff_id_is_refused(registry, repo: str, tmp_path: Path) -> None:
    blob, _ = tar_of([(member("data/adapter_config.json"), CONFIG)])
    config = json.dumps({"rootfs": {"diff_ids": ["sha256:" + "0" * 64]}}).encode()
    push_raw(registry.host, repo, "bad", [(blob, mediatypes.OCI_LAYER_GZIP, {})], config)
    with pytest.raises(ArtifactError, match="uncompressed content hashes to"):
        pull(f"{registry.host}/{repo}:bad", tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    assert listing(tmp_path / "out") == set()


def test_oras_py_pushes_a_directory_and_it_is_unpacked(registry, repo: str, tmp_path: Path) -> None:
    """The real oras client (oras-py) tars a directory as `oras push REF data/` does (title `data`,
    tar+gzip, entries under data/); one directory alone is flattened into DEST."""
    oras_client = pytest.importorskip("oras.client")
    data = adapter_dir(tmp_path / "work")
    client = oras_client.OrasClient(hostname=registry.host, insecure=True)
    client.push(target=f"{registry.host}/{repo}:dir", files=[str(data)], disable_path_validation=True)
    dest = tmp_path / "adapter"
    pull(f"{registry.host}/{repo}:dir", dest, cache_dir=tmp_path / "cache", progress=False)
    assert listing(dest) == {"adapter_config.json", "adapter_model.safetensors"}
    assert (dest / "adapter_model.safetensors").read_bytes() == WEIGHTS

    # A directory next to a file keeps its name, as oras pull writes it.
    (tmp_path / "work" / "README.md").write_text("an adapter\n")
    client.push(
        target=f"{registry.host}/{repo}:mixed", files=[str(data), str(tmp_path / "work" / "README.md")],
        disable_path_validation=True,
    )  # fmt: skip
    mixed = tmp_path / "mixed"
    pull(f"{registry.host}/{repo}:mixed", mixed, cache_dir=tmp_path / "cache", progress=False)
    assert listing(mixed) == {
        "README.md",
        "data",
        "data/adapter_config.json",
        "data/adapter_model.safetensors",
    }


def test_a_tar_gzip_file_that_is_no_directory_stays_a_file(registry, repo: str, tmp_path: Path) -> None:
    """oras-py types a directory tar+gzip without the unpack annotation; a real .tar.gz file pushed with
    that media type (its entries are not under its title) is placed as the file it is."""
    blob, _ = tar_of([(member("notes.txt"), b"hello")])
    layers = [(blob, mediatypes.OCI_LAYER_GZIP, {mediatypes.TITLE: "bundle.tar.gz"})]
    push_raw(registry.host, repo, "file", layers, b"{}", "application/vnd.unknown.config.v1+json")
    dest = tmp_path / "out"
    pull(f"{registry.host}/{repo}:file", dest, cache_dir=tmp_path / "cache", progress=False)
    assert listing(dest) == {"bundle.tar.gz"} and (dest / "bundle.tar.gz").read_bytes() == blob


def test_oras_cli_directory_annotations(registry, repo: str, tmp_path: Path) -> None:
    """The layer the oras CLI (oras-go's file store) writes for `oras push REF data/`: unpack and
    content-digest annotations; the content digest is checked."""
    members = [
        (member("data/", tarfile.DIRTYPE), b""),
        (member("data/adapter_config.json"), CONFIG),
        (member("data/adapter_model.safetensors"), WEIGHTS),
    ]
    blob, diff = tar_of(members)
    annotations = {mediatypes.TITLE: "data", mediatypes.ORAS_UNPACK: "true", mediatypes.ORAS_DIGEST: diff}
    empty = "application/vnd.oci.empty.v1+json"
    push_raw(registry.host, repo, "cli", [(blob, mediatypes.OCI_LAYER_GZIP, annotations)], b"{}", empty)
    dest = tmp_path / "adapter"
    pull(f"{registry.host}/{repo}:cli", dest, cache_dir=tmp_path / "cache", progress=False)
    assert listing(dest) == {"adapter_config.json", "adapter_model.safetensors"}

    wrong = {**annotations, mediatypes.ORAS_DIGEST: "sha256:" + "1" * 64}
    push_raw(registry.host, repo, "wrong", [(blob, mediatypes.OCI_LAYER_GZIP, wrong)], b"{}", empty)
    with pytest.raises(ArtifactError, match="hashes to"):
        pull(f"{registry.host}/{repo}:wrong", tmp_path / "w", cache_dir=tmp_path / "cache", progress=False)


def test_whiteouts_and_opaque_directories(registry, repo: str, tmp_path: Path) -> None:
    ref = f"{registry.host}/{repo}:layers"
    image(
        registry.host, repo, "layers",
        [(member("data/adapter_config.json"), b"old"), (member("data/stale.bin"), b"x"),
         (member("data/sub/a"), b"a"), (member("etc/os-release"), b"scratch")],
        [(member("data/.wh.stale.bin"), b""), (member("data/sub/.wh..wh..opq"), b""),
         (member("data/sub/b"), b"b"), (member("data/adapter_config.json"), CONFIG)],
    )  # fmt: skip
    dest = tmp_path / "adapter"
    pull(ref, dest, cache_dir=tmp_path / "cache", progress=False)
    assert listing(dest) == {"adapter_config.json", "sub", "sub/b"}
    assert (dest / "adapter_config.json").read_bytes() == CONFIG


def test_image_without_data_takes_the_directory_holding_adapter_config(
    registry, repo: str, tmp_path: Path
) -> None:
    layer = [
        (member("opt/lora/adapter_config.json"), CONFIG),
        (member("opt/lora/adapter_model.safetensors"), WEIGHTS),
        (member("bin/sh", tarfile.SYMTYPE, "/bin/busybox"), b""),  # outside the adapter: never written
    ]
    image(registry.host, repo, "nodata", layer)
    dest = tmp_path / "adapter"
    pull(f"{registry.host}/{repo}:nodata", dest, cache_dir=tmp_path / "cache", progress=False)
    assert listing(dest) == {"adapter_config.json", "adapter_model.safetensors"}

    image(registry.host, repo, "empty", [(member("etc/hostname"), b"x")])
    with pytest.raises(ArtifactError, match="without a /data directory"):
        pull(f"{registry.host}/{repo}:empty", tmp_path / "e", cache_dir=tmp_path / "cache", progress=False)


def test_image_index_picks_linux_amd64(registry, repo: str, tmp_path: Path) -> None:
    amd = image(registry.host, repo, "amd", [(member("data/adapter_config.json"), b"amd64")])
    arm = image(registry.host, repo, "arm", [(member("data/adapter_config.json"), b"arm64")])

    def index(entries: list[tuple[str, str, str]]) -> bytes:
        manifests = [
            {"mediaType": mediatypes.OCI_MANIFEST, "digest": d, "size": len(_get(registry.host, repo, d)),
             "platform": {"os": "linux", "architecture": a}} for d, a, _ in entries
        ]  # fmt: skip
        return canonical_json({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": manifests})

    reference = Reference.parse(f"{registry.host}/{repo}:multi")
    with RegistryClient(reference, plain_http=True, push=True) as client:
        data = index([(arm, "arm64", ""), (amd, "amd64", "")])
        client.put_manifest("multi", data, mediatypes.OCI_INDEX)
        client.put_manifest("armonly2", index([(arm, "arm64", ""), (arm, "s390x", "")]), mediatypes.OCI_INDEX)
    result = pull(
        f"{registry.host}/{repo}:multi", tmp_path / "m", cache_dir=tmp_path / "cache", progress=False
    )
    assert (tmp_path / "m" / "adapter_config.json").read_bytes() == b"amd64"
    assert result.digest == digest_bytes(data)  # the pin is the index's digest
    pinned = f"{registry.host}/{repo}@{digest_bytes(data)}"
    assert not pull(pinned, tmp_path / "p", cache_dir=tmp_path / "cache", progress=False).skipped
    assert pull(pinned, tmp_path / "p", cache_dir=tmp_path / "cache", progress=False).skipped
    with pytest.raises(ArtifactError, match="none is linux/amd64"):
        pull(f"{registry.host}/{repo}:armonly2", tmp_path / "a", cache_dir=tmp_path / "cache", progress=False)


def _get(host: str, repo: str, target: str) -> bytes:
    separator = "@" if target.startswith("sha256:") else ":"
    with RegistryClient(Reference.parse(f"{host}/{repo}{separator}{target}"), plain_http=True) as client:
        return client.get_manifest(target)[0]


def test_a_zstd_layer_is_read(registry, repo: str, tmp_path: Path) -> None:
    """An image whose layer is zstd-compressed (podman/buildah ``--compression-format zstd``)."""
    import zstandard

    raw, diff = tar_of([(member("data", tarfile.DIRTYPE), b""), (member("data/adapter_config.json"), CONFIG),
                        (member("data/adapter_model.safetensors"), WEIGHTS)], compress=False)  # fmt: skip
    blob = zstandard.ZstdCompressor().compress(raw)
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    push_raw(registry.host, repo, "zstd", [(blob, mediatypes.OCI_LAYER_ZSTD, {})], config)
    dest = tmp_path / "z"
    pull(f"{registry.host}/{repo}:zstd", dest, cache_dir=tmp_path / "cache", progress=False)
    assert listing(dest) == {"adapter_config.json", "adapter_model.safetensors"}
    assert (dest / "adapter_model.safetensors").read_bytes() == WEIGHTS


def test_zstd_layers_need_a_decompressor(
    registry, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where zstandard is missing (a dependency, but a trimmed environment may lack it): said so."""
    import sys

    monkeypatch.setitem(sys.modules, "zstandard", None)  # `import zstandard` raises ImportError
    blob = b"\x28\xb5\x2f\xfd" + b"\x00" * 32
    push_raw(registry.host, repo, "zstd-bad", [(blob, mediatypes.OCI_LAYER_ZSTD, {})], b"{}")
    with pytest.raises(ArtifactError, match=r"zstd-compressed.*install the `zstandard` package"):
        pull(f"{registry.host}/{repo}:zstd-bad", tmp_path / "z", cache_dir=tmp_path / "cache", progress=False)


# ---------------------------------------------------------------------------------------- buildah


@pytest.fixture
def buildah(tmp_path: Path) -> Any:
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed")
    store = [
        "--root",
        str(tmp_path / "storage"),
        "--runroot",
        str(tmp_path / "run"),
        "--storage-driver",
        "vfs",
    ]

    def run(*args: str) -> str:
        done = subprocess.run(["buildah", *store, *args], check=True, capture_output=True, text=True)
        return done.stdout.strip()

    return run


def test_buildah_image_with_a_whiteout(buildah: Any, registry, repo: str, tmp_path: Path) -> None:
    """A real container image: FROM scratch, the adapter's files COPYed under /data/, then a second layer
    that deletes one file (a whiteout) and overrides another."""
    data = adapter_dir(tmp_path / "work")
    (data / "obsolete.bin").write_bytes(b"remove me")
    first = buildah("from", "scratch")
    buildah("copy", first, str(data / "adapter_config.json"), str(data / "adapter_model.safetensors"),
            str(data / "obsolete.bin"), "/data/")  # fmt: skip
    buildah("commit", "--format", "oci", first, "adapter-base")
    second = buildah("from", "adapter-base")
    root = Path(buildah("mount", second))
    (root / "data" / "obsolete.bin").unlink()
    (root / "data" / "adapter_config.json").write_bytes(b'{"peft_type": "LORA", "r": 16}')
    buildah("umount", second)
    buildah("commit", "--format", "oci", second, "adapter")
    ref = f"{registry.host}/{repo}:buildah"
    buildah("push", "--tls-verify=false", "adapter", f"docker://{ref}")
    manifest = json.loads(_get(registry.host, repo, "buildah"))
    assert len(manifest["layers"]) == 2 and manifest["config"]["mediaType"] == mediatypes.OCI_IMAGE_CONFIG

    dest = tmp_path / "adapter"
    pull(ref, dest, cache_dir=tmp_path / "cache", progress=False)
    assert listing(dest) == {"adapter_config.json", "adapter_model.safetensors"}
    assert (dest / "adapter_config.json").read_bytes() == b'{"peft_type": "LORA", "r": 16}'
    assert (dest / "adapter_model.safetensors").read_bytes() == WEIGHTS

    # The same image as a Docker v2 manifest (docker's own format).
    buildah("push", "--tls-verify=false", "--format", "v2s2", "adapter", f"docker://{ref}-docker")
    docker = json.loads(_get(registry.host, repo, "buildah-docker"))
    assert docker["mediaType"] == mediatypes.DOCKER_MANIFEST
    pull(f"{ref}-docker", tmp_path / "docker", cache_dir=tmp_path / "cache", progress=False)
    assert listing(tmp_path / "docker") == {"adapter_config.json", "adapter_model.safetensors"}


# ---------------------------------------------------------------------------------------- hostile


HOSTILE = {
    "traversal": ([(member("data/../../escaped.txt"), b"x")], "climbs out of the directory"),
    "absolute": ([(member("/tmp/escaped.txt"), b"x")], "absolute path"),
    "symlink-escape": (
        [
            (member("data/adapter_config.json"), CONFIG),
            (member("data/link", tarfile.SYMTYPE, "../../.."), b""),
        ],
        "points at '../../..', outside",
    ),
    "absolute-symlink-out": (
        [
            (member("data/adapter_config.json"), CONFIG),
            (member("data/passwd", tarfile.SYMTYPE, "/etc/passwd"), b""),
        ],
        "outside the directory",
    ),
    "hardlink-out": (
        [(member("etc/shadow"), b"secret"), (member("data/x", tarfile.LNKTYPE, "etc/shadow"), b"")],
        "hard link",
    ),
    "device": ([(member("data/null", tarfile.CHRTYPE), b"")], "device node"),
    "fifo": ([(member("data/pipe", tarfile.FIFOTYPE), b"")], "a fifo"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tars_are_refused(case: str, registry, repo: str, tmp_path: Path) -> None:
    members, message = HOSTILE[case]
    image(registry.host, repo, case, members)
    dest = tmp_path / "deep" / "er" / "adapter"
    with pytest.raises(ArtifactError, match=message):
        pull(f"{registry.host}/{repo}:{case}", dest, cache_dir=tmp_path / "cache", progress=False)
    assert listing(dest) == set() and not list(dest.glob(".kaito-unpack-*"))
    assert not list(tmp_path.rglob("escaped.txt"))


def test_a_tar_bomb_is_refused_before_writing(registry, repo: str, tmp_path: Path) -> None:
    """10 MiB of zeros compress to ~10 KiB; with a 1 MiB cap nothing is written."""
    bomb = [(member("data/adapter_config.json"), CONFIG), (member("data/zeros.bin"), bytes(10 << 20))]
    image(registry.host, repo, "bomb", bomb)
    dest = tmp_path / "adapter"
    ref = f"{registry.host}/{repo}:bomb"
    with pytest.raises(ArtifactError, match=r"unpacks to 10485789 bytes, more than the 1048576 allowed"):
        pull(ref, dest, cache_dir=tmp_path / "cache", progress=False, max_unpacked_bytes=1 << 20)
    assert listing(dest) == set()
    pull(ref, dest, cache_dir=tmp_path / "cache", progress=False, max_unpacked_bytes=64 << 20)
    assert (dest / "zeros.bin").stat().st_size == 10 << 20


def test_a_directory_layer_with_members_outside_its_title_is_refused(
    registry, repo: str, tmp_path: Path
) -> None:
    blob, _ = tar_of([(member("data/adapter_config.json"), CONFIG), (member("other/x"), b"x")])
    annotations = {mediatypes.TITLE: "data", mediatypes.ORAS_UNPACK: "true"}
    push_raw(registry.host, repo, "out", [(blob, mediatypes.OCI_LAYER_GZIP, annotations)], b"{}", "x/y")
    with pytest.raises(ArtifactError, match="outside the directory 'data'"):
        pull(f"{registry.host}/{repo}:out", tmp_path / "o", cache_dir=tmp_path / "cache", progress=False)


def test_cli_adapter_check_and_unpack_cap(registry, model_dir: Path, repo: str, tmp_path: Path) -> None:
    """`kaito model pull --adapter` (the operator's adapter init containers) fails, in one line, unless
    adapter_config.json arrives; `--max-unpacked` caps what unpacking writes."""
    from click.testing import CliRunner

    from kaito_core.artifacts import push
    from kaito_core.cli.main import cli

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["model", "pull", *args, "--cache-dir", str(tmp_path / "cache")])
        return result.exit_code, result.output

    push(model_dir, f"{registry.host}/{repo}:model", progress=False)
    code, out = run(f"{registry.host}/{repo}:model", str(tmp_path / "m"), "--adapter")
    assert (
        code != 0 and "holds no adapter_config.json at its top" in out and len(out.strip().splitlines()) == 1
    )

    image(registry.host, repo, "adapter", [(member("data/adapter_config.json"), CONFIG)])
    code, out = run(
        f"{registry.host}/{repo}:adapter", str(tmp_path / "a"), "--adapter", "--max-unpacked", "16"
    )
    assert code != 0 and "more than the 16 allowed" in out
    code, out = run(
        f"{registry.host}/{repo}:adapter", str(tmp_path / "a"), "--adapter", "--max-unpacked", "1KiB"
    )
    assert code == 0 and (tmp_path / "a" / "adapter_config.json").read_bytes() == CONFIG
    code, out = run(f"{registry.host}/{repo}:adapter", str(tmp_path / "b"), "--max-unpacked", "lots")
    assert code != 0 and "'lots' is not a size" in out
