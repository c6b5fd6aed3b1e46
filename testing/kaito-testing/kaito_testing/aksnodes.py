"""What AKS does in the cluster under the ARM emulator: a pool's VMs join as Nodes (tests only).

``join()`` registers a Node for every machine of every pool whose create has finished, as AKS's
bootstrap does: named like the machine, ``spec.providerID`` the VMSS instance's
(``azure:///subscriptions/.../virtualMachineScaleSets/<vmss>/virtualMachines/<i>``), the pool's
``nodeLabels`` and taints plus what AKS adds (``agentpool``, ``kubernetes.azure.com/agentpool``, the
instance type, ``kubernetes.io/os``); NotReady until the test's kubelet says otherwise. ``reap()``
removes the Nodes of pools that are gone, as deleting the VMSS does.
"""

from __future__ import annotations

from kaito_testing.apiserver import ApiServer
from kaito_testing.arm import FakeARM


class AKSNodes:
    def __init__(self, arm: FakeARM, server: ApiServer) -> None:
        self.arm, self.server = arm, server

    def join(self) -> list[str]:
        joined = []
        existing = {n["metadata"]["name"] for n in self.server.list("v1", "Node")}
        for name in self.arm.pool_names():
            pool = self.arm.pool(name) or {}
            props = pool.get("properties") or {}
            if props.get("provisioningState") != "Succeeded":
                continue
            for machine in self.arm.machines(name):
                if machine["name"] in existing:
                    continue
                labels = {
                    **(props.get("nodeLabels") or {}),
                    "agentpool": name,
                    "kubernetes.azure.com/agentpool": name,
                    "node.kubernetes.io/instance-type": props["vmSize"],
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/hostname": machine["name"],
                }
                taints = []
                for text in props.get("nodeTaints") or []:
                    key_value, _, effect = text.partition(":")
                    key, _, value = key_value.partition("=")
                    taints.append({"key": key, "value": value, "effect": effect})
                self.server.apply(
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "metadata": {"name": machine["name"], "labels": labels},
                        "spec": {
                            "providerID": "azure://" + machine["properties"]["resourceId"],
                            "taints": taints,
                        },
                    }
                )
                joined.append(machine["name"])
        return joined

    def reap(self) -> list[str]:
        pools = set(self.arm.pool_names())
        gone = []
        for node in self.server.list("v1", "Node"):
            pool = node["metadata"].get("labels", {}).get("kubernetes.azure.com/agentpool")
            if pool and pool not in pools:
                self.server.delete("v1", "Node", node["metadata"]["name"])
                gone.append(node["metadata"]["name"])
        return gone
