"""The operator with Hugging Face models by repository id: the FakeHub serves config.json and the file
listing through huggingface_hub; a gated model's token comes from the modelAccessSecret (one Secret, get);
the commit is pinned in the kaito.sh/model-revision annotation and status.modelRevision."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kaito_testing.hub import FakeHub
from kaito_testing.hub_models import LLAMA_3_1_8B, QWEN2_5_CODER_7B
from kubernetes import client, config
from operator_support import Cluster, wait_for, workspace_manifest
from test_operator_scenarios import children, create

pytestmark = pytest.mark.timeout(120)
TOKEN = "hf_operator_test_token_42"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    monkeypatch = pytest.MonkeyPatch()
    with FakeHub(tokens={TOKEN: "operator-test"}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server
    monkeypatch.undo()


def hub_workspace(name: str, repo: str, secret: str | None = None) -> dict[str, Any]:
    preset: dict[str, Any] = {"name": repo}
    if secret:
        preset["presetOptions"] = {"modelAccessSecret": secret}
    return workspace_manifest(name, inference={"preset": preset})


def secret(cluster: Cluster, name: str, data: dict[str, str]) -> None:
    core = client.CoreV1Api(config.new_client_from_config(str(cluster.server.kubeconfig("tester"))))
    core.create_namespaced_secret("default", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    })


def reason(cluster: Cluster, name: str) -> tuple[str, str]:
    condition = cluster.condition(name, "ResourceReady") or {}
    return condition.get("reason", ""), condition.get("message", "")


def test_a_public_model_is_planned_pinned_and_served(cluster: Cluster, operator: Any, hub: FakeHub) -> None:
    commit = QWEN2_5_CODER_7B.publish(hub)
    create(cluster, hub_workspace("hub-public", QWEN2_5_CODER_7B.repo))
    wait_for(lambda: cluster.server.list("v1", "Node", selector="kaito.sh/workspace=hub-public"),
             what="a node")
    cluster.kubelet.nodes_ready("hub-public")
    wait_for(lambda: "Deployment/hub-public" in children(cluster, "hub-public"), what="the Deployment")
    ws = cluster.workspace("hub-public") or {}
    assert ws["metadata"]["annotations"]["kaito.sh/model-revision"] == commit
    wait_for(lambda: (cluster.workspace("hub-public") or {}).get("status", {}).get("modelRevision") == commit,
             what="status.modelRevision")
    hub.commit(QWEN2_5_CODER_7B.repo, {"README.md": "moved on"})  # main moves: the Workspace stays pinned
    annotations = (cluster.workspace("hub-public") or {})["metadata"]["annotations"]
    assert annotations["kaito.sh/model-revision"] == commit


def test_a_gated_model_reads_hf_token_from_the_model_access_secret(
    cluster: Cluster, operator: Any, hub: FakeHub
) -> None:
    commit = LLAMA_3_1_8B.publish(hub, gated="manual")
    hub.grant(LLAMA_3_1_8B.repo, TOKEN)
    secret(cluster, "hf-token", {"HF_TOKEN": TOKEN})
    create(cluster, hub_workspace("hub-gated", LLAMA_3_1_8B.repo, secret="hf-token"))
    wait_for(lambda: (cluster.workspace("hub-gated") or {}).get("status", {}).get("modelRevision") == commit,
             what="the gated model pinned")
    assert not any(TOKEN in str(v) for v in (cluster.workspace("hub-gated") or {}).values())
    cdn = [r for r in hub.requests if "/resolve/" in r.path and "Llama" in r.path]
    assert cdn and all(r.authorized for r in cdn)


@pytest.mark.parametrize(
    ("name", "repo", "secret_name", "expected", "words"),
    [
        ("hub-missing", "nobody/nothing", None, "ModelNotFound", "not found"),
        ("hub-no-secret", "org/gated-llama", None, "ModelAccessDenied", "modelAccessSecret"),
        ("hub-secret-gone", "org/gated-llama", "no-such-secret", "ModelAccessSecretNotFound",
         "Secret 'no-such-secret' not found"),
    ],
)
def test_what_cannot_be_served_is_the_status_message(
    cluster: Cluster, operator: Any, hub: FakeHub, name: str, repo: str, secret_name: str | None,
    expected: str, words: str,
) -> None:
    if repo == "org/gated-llama" and repo not in hub.repos:
        hub.add_repo(repo, LLAMA_3_1_8B.files(), gated="auto")
    create(cluster, hub_workspace(name, repo, secret=secret_name))
    wait_for(lambda: reason(cluster, name)[0] == expected, what=f"reason {expected}")
    assert words in reason(cluster, name)[1]
    assert (cluster.condition(name, "WorkspaceSucceeded") or {}).get("status") == "False"


def test_the_cache_dir_is_the_tests(hub: FakeHub) -> None:
    import os

    assert Path(os.environ["HF_HUB_CACHE"]).is_dir()
