"""`kaito model push|pull|inspect|pack` through click: output, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kaito_core.artifacts import Reference
from kaito_core.artifacts.transport import RegistryClient
from kaito_core.cli.main import cli


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_push_inspect_pull_via_cli(registry, model_dir: Path, repo: str, tmp_path: Path) -> None:
    ref = f"{registry.host}/{repo}:cli"
    code, out, _ = run(
        "model", "push", str(model_dir), ref, "--format", "safetensors", "--quantization", "bf16"
    )
    assert code == 0 and out.startswith(f"pushed {ref}@sha256:")
    digest = out.strip().rsplit("@", 1)[1]

    code, out, _ = run("model", "inspect", ref, "-o", "json")
    info = json.loads(out)
    assert code == 0 and info["digest"] == digest
    assert info["config"]["config"] == {"format": "safetensors", "quantization": "bf16"}
    code, out, _ = run("model", "inspect", ref)
    assert code == 0 and "model.safetensors" in out and "application/vnd.cncf.model.weight.v1.raw" in out

    args = ["model", "pull", ref, str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    code, out, _ = run(*args, "-o", "json")
    pulled = json.loads(out)
    assert code == 0 and pulled["digest"] == digest and pulled["bytesFromCache"] == 0
    code, out, _ = run(*args)  # the same DEST: its pull record says it holds the artifact, verified
    assert code == 0 and "verified: nothing to pull" in out
    code, out, _ = run(*args[:3], str(tmp_path / "out2"), *args[4:])  # elsewhere: the cache serves it
    assert code == 0 and "0 B downloaded" in out


def test_username_and_password_stdin(registry_factory, model_dir: Path, tmp_path: Path) -> None:
    server = registry_factory(auth="htpasswd")
    ref = f"{server.host}/cli/auth:v1"
    code, _, err = run(
        "model",
        "push",
        str(model_dir),
        ref,
        "-u",
        server.username,
        "--password-stdin",
        input=f"{server.password}\n",
    )
    assert code == 0, err
    code, _, err = run("model", "inspect", ref, "-u", server.username, "--password-stdin", input="wrong-pw\n")
    assert code == 1 and "rejected the credentials" in err and "wrong-pw" not in err
    code, _, err = run("model", "inspect", ref, "-u", server.username)
    assert code == 1 and "--password-stdin" in err


def test_pack_unknown_preset_and_bad_reference(tmp_path: Path) -> None:
    code, _, err = run("model", "pack", "no-such-preset", "--store", str(tmp_path / "store"))
    assert code == 1 and "unknown preset 'no-such-preset'" in err
    code, _, err = run("model", "pull", "reg.io/UPPER/x:1", str(tmp_path / "out"))
    assert code == 1 and err.startswith("error: invalid repository")


def test_plain_http_only_for_loopback_or_when_asked() -> None:
    assert RegistryClient(Reference.parse("127.0.0.1:5000/a/b:1")).base == "http://127.0.0.1:5000"
    assert RegistryClient(Reference.parse("localhost:5000/a/b:1")).base == "http://localhost:5000"
    assert RegistryClient(Reference.parse("10.0.0.5:5000/a/b:1")).base == "https://10.0.0.5:5000"
    assert (
        RegistryClient(Reference.parse("10.0.0.5:5000/a/b:1"), plain_http=True).base == "http://10.0.0.5:5000"
    )
    assert RegistryClient(Reference.parse("ubuntu")).base == "https://registry-1.docker.io"


def test_unknown_host_is_named(tmp_path: Path) -> None:
    from kaito_core.artifacts import ArtifactError, pull

    with pytest.raises(ArtifactError, match=r"cannot reach registry no-such-registry\.invalid:5000") as info:
        pull("no-such-registry.invalid:5000/a/b:1", tmp_path / "o", cache_dir=tmp_path / "c", progress=False)
    assert "\n" not in str(info.value) and "a/b:1" in str(info.value)


def test_copy_from_the_store_to_a_registry_keeps_the_digest(
    registry, model_dir: Path, repo: str, tmp_path: Path
) -> None:
    """Pack on a connected machine, push the stored artifact to (an air-gapped) registry: same digest."""
    store = tmp_path / "store"
    code, out, err = run("model", "push", str(model_dir), f"oci:{store}:tiny")
    assert code == 0, err
    digest = out.strip().rsplit("@", 1)[1]
    code, out, err = run("model", "push", f"oci:{store}:tiny", f"{registry.host}/{repo}:copied")
    assert code == 0, err
    assert out.strip().endswith(f"@{digest}")
    code, out, _ = run(
        "model",
        "pull",
        f"{registry.host}/{repo}@{digest}",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "c"),
    )
    assert (
        code == 0
        and (tmp_path / "out" / "model.safetensors").read_bytes()
        == (model_dir / "model.safetensors").read_bytes()
    )
    code, _, err = run("model", "push", f"oci:{store}:nope", f"{registry.host}/{repo}:x")
    assert code == 1 and "has no tag nope" in err
    code, _, err = run("model", "push", str(tmp_path / "missing"), f"{registry.host}/{repo}:x")
    assert code == 1 and "does not exist" in err
