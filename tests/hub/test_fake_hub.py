"""The FakeHub speaks the Hub's API as huggingface_hub expects it: proved with huggingface_hub itself,
unmodified, in a process of its own that only has HF_ENDPOINT (it reads it at import)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from kaito_testing.hub import FakeHub, git_blob_id
from kaito_testing.hub_models import LLAMA_3_1_8B, tiny_safetensors

from .conftest import TOKEN

WEIGHTS = bytes(range(256)) * 64  # 16 KiB
CONFIG = '{"model_type": "llama"}'


def _publish(hub: FakeHub) -> str:
    return hub.add_repo("org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS})


def test_huggingface_hub_in_its_own_process_downloads_through_hf_endpoint(
    hub: FakeHub, tmp_path: Path
) -> None:
    commit = _publish(hub)
    script = (
        "import json, huggingface_hub as h\n"
        "info = h.HfApi().model_info('org/tiny', files_metadata=True)\n"
        "path = h.hf_hub_download('org/tiny', 'model.safetensors')\n"
        "print(json.dumps({'sha': info.sha, 'path': path,"
        " 'sizes': {s.rfilename: s.size for s in info.siblings},"
        " 'lfs': {s.rfilename: s.lfs.sha256 for s in info.siblings if s.lfs}}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["sha"] == commit
    assert result["sizes"] == {"config.json": 23, "model.safetensors": len(WEIGHTS)}
    assert result["lfs"] == {"model.safetensors": hashlib.sha256(WEIGHTS).hexdigest()}
    assert Path(result["path"]).read_bytes() == WEIGHTS
    assert f"/snapshots/{commit}/" in result["path"]


def test_resolve_headers_for_small_and_lfs_files(hub: FakeHub) -> None:
    commit = _publish(hub)
    small = httpx.head(f"{hub.endpoint}/org/tiny/resolve/main/config.json")
    assert small.status_code == 200
    assert small.headers["X-Repo-Commit"] == commit
    assert small.headers["ETag"] == f'"{git_blob_id(CONFIG.encode())}"'
    assert small.headers["Content-Length"] == "23"
    big = httpx.head(f"{hub.endpoint}/org/tiny/resolve/{commit}/model.safetensors")
    assert big.status_code == 302
    assert big.headers["X-Linked-Size"] == str(len(WEIGHTS))
    assert big.headers["X-Repo-Commit"] == commit
    assert big.headers["X-Linked-Etag"] == f'"{hashlib.sha256(WEIGHTS).hexdigest()}"'
    cdn = httpx.get(big.headers["Location"], headers={"Range": "bytes=100-199"})
    assert cdn.status_code == 206
    assert cdn.headers["Content-Range"] == f"bytes 100-199/{len(WEIGHTS)}"
    assert cdn.content == WEIGHTS[100:200]
    tail = httpx.get(big.headers["Location"], headers={"Range": f"bytes={len(WEIGHTS) - 10}-"})
    assert tail.content == WEIGHTS[-10:]
    past = httpx.get(big.headers["Location"], headers={"Range": f"bytes={len(WEIGHTS)}-"})
    assert past.status_code == 416
    assert past.headers["Content-Range"] == f"bytes */{len(WEIGHTS)}"


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/nobody/none/resolve/main/config.json", {}, 401, "RepoNotFound"),
        ("/nobody/none/resolve/main/config.json", {"Authorization": f"Bearer {TOKEN}"}, 404, "RepoNotFound"),
        ("/api/models/nobody/none", {}, 401, "RepoNotFound"),
        ("/org/tiny/resolve/v9/config.json", {}, 404, "RevisionNotFound"),
        ("/api/models/org/tiny/revision/v9", {}, 404, "RevisionNotFound"),
        ("/org/tiny/resolve/main/missing.json", {}, 404, "EntryNotFound"),
        ("/org/gated/resolve/main/config.json", {}, 401, "GatedRepo"),
        ("/org/gated/resolve/main/config.json", {"Authorization": f"Bearer {TOKEN}"}, 403, "GatedRepo"),
        ("/org/tiny/resolve/main/config.json", {"Authorization": "Bearer hf_unknown"}, 401, None),
    ],
)
def test_errors_carry_the_hubs_error_codes(
    hub: FakeHub, path: str, headers: dict[str, str], status: int, code: str | None
) -> None:
    _publish(hub)
    hub.add_repo("org/gated", {"config.json": "{}"}, gated="manual")
    response = httpx.get(hub.endpoint + path, headers=headers)
    assert response.status_code == status
    assert response.headers.get("X-Error-Code") == code
    if code is None:
        assert response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"


def test_gated_model_info_is_public_and_says_gated(hub: FakeHub) -> None:
    hub.add_repo("org/gated", {"config.json": "{}"}, gated="manual")
    info = httpx.get(f"{hub.endpoint}/api/models/org/gated").json()
    assert info["gated"] == "manual"
    assert info["siblings"] == [{"rfilename": "config.json"}]  # sizes only with ?blobs=true


def test_private_repo_is_hidden_until_granted(hub: FakeHub) -> None:
    hub.add_repo("org/private", {"config.json": "{}"}, private=True)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{hub.endpoint}/api/models/org/private", headers=auth).status_code == 404
    hub.grant("org/private", TOKEN)
    assert httpx.get(f"{hub.endpoint}/api/models/org/private", headers=auth).json()["private"] is True


def test_commits_tags_and_a_moving_branch(hub: FakeHub) -> None:
    first = hub.add_repo("org/tiny", {"config.json": "{}"})
    hub.tag("org/tiny", "v1", first)
    second = hub.commit("org/tiny", {"config.json": '{"v": 2}'})
    assert first != second
    get = lambda rev: httpx.get(f"{hub.endpoint}/org/tiny/resolve/{rev}/config.json")  # noqa: E731
    assert get("main").text == '{"v": 2}'
    assert get("v1").text == "{}"
    assert get(first).text == "{}"
    assert get(first).headers["X-Repo-Commit"] == first


def test_generated_shards_are_valid_safetensors() -> None:
    data = tiny_safetensors()
    length = int.from_bytes(data[:8], "little")
    assert length % 8 == 0 and len(data) == 8 + length
    assert json.loads(data[8:]) == {"__metadata__": {"format": "pt"}}
    index = LLAMA_3_1_8B.index()
    assert set(index["weight_map"].values()) == set(LLAMA_3_1_8B.shards)
    assert index["weight_map"]["model.layers.31.mlp.down_proj.weight"] in LLAMA_3_1_8B.shards
