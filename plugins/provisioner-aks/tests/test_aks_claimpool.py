"""The agent pool a NodeClaim asks for (pure), as Azure's gpu-provisioner builds it."""

from __future__ import annotations

from typing import Any

import pytest
from kaito_provisioner_aks.claimpool import ClaimError, conditions_with, owned_by_kaito, pool_spec


def claim(name: str = "ws0a1b2c3d4", **spec: Any) -> dict[str, Any]:
    body = {
        "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
        "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                          "values": ["Standard_NC6s_v3"]}],
        "resources": {"requests": {"storage": "300Gi"}},
    }  # fmt: skip
    body.update(spec)
    return {"metadata": {"name": name, "labels": {"kaito.sh/workspace": "phi"},
                         "creationTimestamp": "2026-12-02T10:11:12Z"}, "spec": body}  # fmt: skip


def test_one_claim_one_pool_with_gpu_provisioners_properties() -> None:
    spec = pool_spec(claim())
    assert (spec.name, spec.vm_size, spec.os_disk_gb, spec.os_sku) == (
        "ws0a1b2c3d4",
        "Standard_NC6s_v3",
        300,
        "Ubuntu",
    )
    assert spec.node_taints == ["sku=gpu:NoSchedule"]
    assert spec.node_labels == {"karpenter.sh/nodepool": "kaito", "kaito.sh/workspace": "phi",
                                "kaito.sh/machine-type": "gpu",
                                "kaito.sh/creation-timestamp": "2026-12-02T10-11-12Z"}  # fmt: skip
    assert owned_by_kaito(spec.node_labels) and not owned_by_kaito({"kaito.sh/workspace": "phi"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (claim("ws-bad-name"), "agentpool name(ws-bad-name) is invalid"),
        (claim(requirements=[]), "nodeClaim spec has no requirement for instance type"),
        (claim(resources={}), "storage request of nodeclaim(ws0a1b2c3d4) should be more than 0"),
        (claim(resources={"requests": {"storage": "lots"}}), "is not a Kubernetes quantity"),
    ],
)
def test_claims_that_cannot_be_pools_say_why(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ClaimError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pool_spec(body)


def test_ready_follows_the_three_lifecycle_conditions() -> None:
    body = claim()
    first = {t: ("True", t, "") for t in ("Launched", "Registered")}
    body["status"] = {"conditions": conditions_with(body, first, "2026-12-02T10:00:00Z")}
    ready = {c["type"]: c["status"] for c in body["status"]["conditions"]}
    assert ready == {"Launched": "True", "Registered": "True", "Ready": "Unknown"}
    done = conditions_with(body, {"Initialized": ("True", "Initialized", "")}, "2026-12-02T10:01:00Z")
    assert {c["type"]: c["status"] for c in done}["Ready"] == "True"
    assert next(c for c in done if c["type"] == "Launched")["lastTransitionTime"] == "2026-12-02T10:00:00Z"
