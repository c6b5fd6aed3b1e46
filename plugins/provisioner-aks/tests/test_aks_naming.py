"""Pool names, labels, disk sizes and reasons: the pure parts."""

from __future__ import annotations

import itertools
import random
import string

import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from kaito_provisioner_aks import node_labels_for, node_selector_for, pool_name
from kaito_provisioner_aks.errors import camel_reason, describe
from kaito_provisioner_aks.naming import POOL_NAME_RULE, os_disk_gb, owned_by, tags_for
from kaito_testing.arm import POOL_NAME_RULE as FAKE_RULE

from kaito_core.plugins import GiB, NodeRequest

DNS_CHARS = string.ascii_lowercase + string.digits + "-"


@pytest.mark.parametrize(
    ("namespace", "workspace"),
    [
        ("default", "workspace-phi-3"),
        ("a", "b"),
        ("kube-system", "x" * 63),
        ("team-0", "0"),
        ("default", "workspace-phi-3-mini-4k-instruct-with-a-very-long-name-indeed"),
    ],
)
def test_pool_name_follows_the_aks_linux_rule(namespace: str, workspace: str) -> None:
    name = pool_name(namespace, workspace)
    assert POOL_NAME_RULE.fullmatch(name)
    assert FAKE_RULE.fullmatch(name)
    assert len(name) == 12 and name.startswith("ws")
    assert pool_name(namespace, workspace) == name  # deterministic


def test_pool_names_of_many_workspaces_are_valid_and_distinct() -> None:
    rng = random.Random(1234)
    seen: dict[str, tuple[str, str]] = {}
    for _ in range(20000):
        namespace = "".join(rng.choice(DNS_CHARS) for _ in range(rng.randint(1, 20))).strip("-") or "ns"
        workspace = "".join(rng.choice(DNS_CHARS) for _ in range(rng.randint(1, 63))).strip("-") or "ws"
        name = pool_name(namespace, workspace)
        assert POOL_NAME_RULE.fullmatch(name), name
        key = (namespace, workspace)
        assert seen.setdefault(name, key) == key, f"{key} and {seen[name]} collide on {name}"


def test_splitting_namespace_and_name_differently_gives_different_pools() -> None:
    names = {pool_name(ns, ws) for ns, ws in [("ab", "c"), ("a", "bc"), ("a-b", "c"), ("a", "b-c")]}
    assert len(names) == 4
    pairs = [(f"ns{i}", "same") for i in range(50)] + [("same", f"ws{i}") for i in range(50)]
    assert len({pool_name(*pair) for pair in pairs}) == len(pairs)
    assert all(pool_name(*a) != pool_name(*b) for a, b in itertools.combinations(pairs[:10], 2))


def test_labels_selector_and_tags() -> None:
    request = NodeRequest(
        workspace="ws1",
        namespace="team",
        instance_type="Standard_NC6s_v3",
        count=1,
        labels={"apps": "phi", "kaito.sh/workspace": "spoofed"},
    )
    assert node_labels_for(request) == {
        "apps": "phi",
        "kaito.sh/workspace": "ws1",  # kaito's label wins over a clashing matchLabel
        "kaito.sh/workspacenamespace": "team",
    }
    assert node_selector_for(request) == {"kubernetes.azure.com/agentpool": pool_name("team", "ws1")}
    tags = tags_for(request)
    assert all("/" not in key for key in tags)  # Azure tag names may not contain '/'
    assert owned_by(tags, "ws1", "team")
    assert not owned_by(tags, "ws1", "other")
    assert not owned_by({"owner": "someone"}, "ws1", "team")
    assert not owned_by(None, "ws1", "team")


@pytest.mark.parametrize(
    ("disk_bytes", "gb"), [(0, 128), (1, 128), (128 * GiB, 128), (128 * GiB + 1, 129), (1024 * GiB, 1024)]
)
def test_os_disk_size(disk_bytes: int, gb: int) -> None:
    assert os_disk_gb(disk_bytes) == gb


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("QuotaExceeded", "QuotaExceeded"),
        ("ErrCode_InsufficientVCPUQuota", "ErrCodeInsufficientVCPUQuota"),
        ("invalidParameter", "InvalidParameter"),
        ("Creating", "Creating"),
    ],
)
def test_camel_reason(code: str, reason: str) -> None:
    assert camel_reason(code) == reason


def test_describe_errors_without_an_arm_body() -> None:
    error = ClientAuthenticationError(message="DefaultAzureCredential failed to retrieve a token")
    message, reason = describe(error)
    assert (message, reason) == ("DefaultAzureCredential failed to retrieve a token", "AuthenticationFailed")
    assert describe(ServiceRequestError("connection refused"))[1] == "AzureUnreachable"
    assert describe(ValueError("boom")) == ("ValueError: boom", "ProvisionerError")
