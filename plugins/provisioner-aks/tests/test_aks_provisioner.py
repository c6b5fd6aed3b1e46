"""AKSProvisioner against the ARM emulator, through the real ContainerServiceClient and its poller."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

import pytest
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.containerservice.models import AgentPool
from azure.mgmt.containerservice.models import (
    AgentPoolManagedClusterAgentPoolProfileProperties as PoolProperties,
)
from kaito_provisioner_aks import AGENTPOOL_LABEL, AKSError, AKSProvisioner, pool_name
from kaito_testing.arm import ALLOCATION_FAILED, POOL_WRITE, FakeARM, FakeCredential

from kaito_core.plugins import GiB, NodeRequest, ProvisionResult


def make_provisioner(arm: FakeARM, **overrides: object) -> AKSProvisioner:
    options: dict[str, object] = {
        "subscription_id": arm.subscription_id,
        "resource_group": arm.resource_group,
        "cluster_name": arm.cluster_name,
        "credential": arm.credential,
        "base_url": arm.base_url,
        "client_options": arm.client_kwargs(),
        "environ": {},
        "retry_interval_s": 0.0,
    }
    options.update(overrides)
    return AKSProvisioner(**options)  # type: ignore[arg-type]


def request_for(
    workspace: str = "workspace-phi-3",
    namespace: str = "default",
    instance_type: str = "Standard_NC12s_v3",
    count: int = 2,
    disk_bytes: int = 300 * GiB + 1,
) -> NodeRequest:
    return NodeRequest(
        workspace=workspace,
        namespace=namespace,
        instance_type=instance_type,
        count=count,
        labels={"apps": "phi-3"},
        disk_bytes=disk_bytes,
    )


def poll_until(
    provisioner: AKSProvisioner,
    request: NodeRequest,
    done: Callable[[ProvisionResult], bool],
    timeout: float = 10.0,
) -> list[ProvisionResult]:
    """Call ensure_nodes as the operator does until ``done(result)``; return every result seen."""
    results = []
    deadline = time.monotonic() + timeout
    while True:
        result = provisioner.ensure_nodes(request)
        results.append(result)
        if done(result):
            return results
        if time.monotonic() > deadline:
            raise AssertionError(f"not done after {timeout}s; last result {result}")
        time.sleep(0.05)


def ready(result: ProvisionResult) -> bool:
    return result.error is None and result.pending == 0 and bool(result.ready_nodes)


def pool_path(arm: FakeARM, pool: str) -> str:
    return (
        f"/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}/providers/"
        f"Microsoft.ContainerService/managedClusters/{arm.cluster_name}/agentPools/{pool}"
    )


# ---------------------------------------------------------------------------------------------- create


def test_create_then_ready_with_the_pool_kaito_asked_for(arm: FakeARM) -> None:
    provisioner = make_provisioner(arm)
    request = request_for()
    pool = pool_name("default", "workspace-phi-3")

    first = provisioner.ensure_nodes(request)
    assert first == ProvisionResult(
        pending=2, reason="NodePoolCreating", node_selector={AGENTPOOL_LABEL: pool}
    )
    assert arm.pool(pool)["properties"]["provisioningState"] == "Creating"

    method, path, body = arm.bodies[-1]
    assert (method, path) == ("PUT", pool_path(arm, pool))
    props = body["properties"]
    assert props["vmSize"] == "Standard_NC12s_v3"
    assert props["count"] == 2
    assert props["mode"] == "User"
    assert props["osType"] == "Linux"
    assert props["nodeLabels"] == {
        "apps": "phi-3",
        "kaito.sh/workspace": "workspace-phi-3",
        "kaito.sh/workspacenamespace": "default",
    }
    assert props["nodeTaints"] == ["sku=gpu:NoSchedule"]
    assert props["osDiskSizeGB"] == 301  # 300 GiB + 1 byte, rounded up to whole GiB
    assert props["tags"] == {
        "kaito-managed": "true",
        "kaito-workspace": "workspace-phi-3",
        "kaito-workspace-namespace": "default",
    }

    results = poll_until(provisioner, request, ready)
    final = results[-1]
    assert final.reason == "NodePoolReady"
    assert len(final.ready_nodes) == 2
    assert all(name.startswith(f"aks-{pool}-") and "-vmss" in name for name in final.ready_nodes)
    assert final.node_selector == {AGENTPOOL_LABEL: pool}
    # Every call in between said "pending", never an error.
    assert all(r.error is None for r in results)
    assert all(r.pending == 2 for r in results[:-1])
    # Idempotent: one PUT for all those calls; and the SDK's poller followed Azure-AsyncOperation.
    assert arm.count("PUT") == 1
    assert any("/operations/" in path for _, path, _ in arm.requests)


def test_second_ensure_while_creating_does_not_put_again(arm: FakeARM) -> None:
    arm.operation_seconds = 5.0
    provisioner = make_provisioner(arm)
    request = request_for()
    provisioner.ensure_nodes(request)
    second = provisioner.ensure_nodes(request)
    third = provisioner.ensure_nodes(request)
    assert second.reason == third.reason == "NodePoolCreating"
    assert second.pending == 2 and second.error is None
    assert arm.count("PUT") == 1


def test_a_new_provisioner_finds_the_pool_an_earlier_one_created(arm: FakeARM) -> None:
    # The operator restarted: ARM's state, not memory, says where the nodes stand.
    request = request_for()
    make_provisioner(arm).ensure_nodes(request)
    arm.finish_operations()
    result = make_provisioner(arm).ensure_nodes(request)
    assert ready(result)
    assert arm.count("PUT") == 1


def test_different_workspaces_get_different_pools_concurrently(arm: FakeARM) -> None:
    provisioner = make_provisioner(arm)
    requests = [request_for(workspace=f"ws-{i}", namespace="team-a", count=1) for i in range(5)]
    results: list[ProvisionResult] = []
    threads = [
        threading.Thread(target=lambda r=r: results.append(provisioner.ensure_nodes(r))) for r in requests
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.error is None and r.reason == "NodePoolCreating" for r in results)
    assert sorted(arm.pool_names()) == sorted(pool_name("team-a", f"ws-{i}") for i in range(5))


def test_count_change_scales_the_pool(arm: FakeARM) -> None:
    provisioner = make_provisioner(arm)
    poll_until(provisioner, request_for(count=1), ready)
    scaled = provisioner.ensure_nodes(request_for(count=3))
    assert scaled.reason == "NodePoolScaling" and scaled.pending == 3
    final = poll_until(provisioner, request_for(count=3), ready)[-1]
    assert len(final.ready_nodes) == 3
    assert arm.count("PUT") == 2


def test_without_the_machines_api_the_node_selector_finds_the_nodes(arm: FakeARM) -> None:
    arm.serve_machines = False
    provisioner = make_provisioner(arm)
    provisioner.ensure_nodes(request_for())
    arm.finish_operations()
    result = provisioner.ensure_nodes(request_for())
    assert result == ProvisionResult(
        pending=0,
        reason="NodePoolReady",
        node_selector={AGENTPOOL_LABEL: pool_name("default", "workspace-phi-3")},
    )
    assert arm.errors[-1]["code"] == "InvalidResourceType"


def test_small_models_still_get_the_aks_default_os_disk(arm: FakeARM) -> None:
    make_provisioner(arm).ensure_nodes(request_for(disk_bytes=10 * GiB))
    assert arm.bodies[-1][2]["properties"]["osDiskSizeGB"] == 128


# ---------------------------------------------------------------------------------------------- errors


def test_quota_error_reaches_the_result_verbatim(arm: FakeARM) -> None:
    arm.quota["standardNCSv3Family"] = 0
    result = make_provisioner(arm).ensure_nodes(request_for())
    sent = arm.errors[-1]
    assert sent["code"] == "QuotaExceeded"
    assert result.error == sent["message"]  # byte for byte what ARM said
    assert result.reason == "QuotaExceeded"
    assert result.pending == 2 and not result.ready_nodes
    assert (
        "Operation could not be completed as it results in exceeding approved standardNCSv3Family Cores "
        "quota. Additional details - Deployment Model: Resource Manager, Location: eastus, Current Limit: 0, "
        "Current Usage: 0, Additional Required: 24, (Minimum) New Limit Required: 24." in result.error
    )
    assert arm.pool_names() == []


def test_after_a_quota_error_azure_is_asked_again_only_after_the_retry_interval(arm: FakeARM) -> None:
    arm.quota["standardNCSv3Family"] = 0
    now = [1000.0]
    provisioner = make_provisioner(arm, retry_interval_s=60.0, clock=lambda: now[0])
    first = provisioner.ensure_nodes(request_for())
    now[0] += 59
    again = provisioner.ensure_nodes(request_for())
    assert again == first
    assert arm.count("PUT") == 1  # the held answer, no second write to ARM
    arm.quota["standardNCSv3Family"] = 100  # the user got the quota raised
    now[0] += 2
    recovered = provisioner.ensure_nodes(request_for())
    assert recovered.error is None and recovered.reason == "NodePoolCreating"
    assert arm.count("PUT") == 2


def test_asynchronous_failure_reaches_the_result_then_a_retry_recovers(arm: FakeARM) -> None:
    arm.fail_next_create = ALLOCATION_FAILED
    provisioner = make_provisioner(arm)
    request = request_for()
    assert provisioner.ensure_nodes(request).reason == "NodePoolCreating"
    failed = poll_until(provisioner, request, lambda r: r.error is not None)[-1]
    assert failed.error == ALLOCATION_FAILED[1]
    assert failed.reason == "AllocationFailed"
    assert arm.pool(pool_name("default", "workspace-phi-3"))["properties"]["provisioningState"] == "Failed"
    # Capacity came back: after the retry interval (0 here) a PUT reconciles the failed pool.
    final = poll_until(provisioner, request, ready)[-1]
    assert len(final.ready_nodes) == 2
    assert arm.count("PUT") == 2


def test_failure_reason_from_the_operation_the_poller_followed(arm: FakeARM) -> None:
    # Without status.provisioningError on the pool, Azure's words are in the failed async operation,
    # which the SDK's poller read from the Azure-AsyncOperation URL.
    arm.report_provisioning_error = False
    arm.fail_next_create = ALLOCATION_FAILED
    provisioner = make_provisioner(arm, retry_interval_s=30.0)
    request = request_for()
    provisioner.ensure_nodes(request)
    failed = poll_until(provisioner, request, lambda r: r.reason == "AllocationFailed")[-1]
    assert failed.error == ALLOCATION_FAILED[1]
    assert arm.count("PUT") == 1


def test_unknown_sku_is_refused_before_azure_is_called(arm: FakeARM) -> None:
    provisioner = make_provisioner(arm)
    result = provisioner.ensure_nodes(request_for(instance_type="Standard_NC6_Promo"))
    assert result.error is not None
    assert result.error.startswith("Unsupported instance type Standard_NC6_Promo. Supported SKUs: ")
    assert "Standard_NC12s_v3" in result.error and "Standard_NC24ads_A100_v4" in result.error
    assert result.reason == "UnsupportedInstanceType"
    assert arm.requests == []


def test_sku_the_region_does_not_offer_is_azures_invalid_parameter(arm: FakeARM) -> None:
    del arm.skus["standard_nc24ads_a100_v4"]
    result = make_provisioner(arm).ensure_nodes(request_for(instance_type="Standard_NC24ads_A100_v4"))
    assert result.reason == "InvalidParameter"
    assert result.error == arm.errors[-1]["message"]
    assert "Standard_NC24ads_A100_v4 is not allowed in your subscription in location 'eastus'" in result.error


def test_authorization_failed_is_reported_verbatim(arm: FakeARM) -> None:
    arm.denied_actions.add(POOL_WRITE)
    result = make_provisioner(arm).ensure_nodes(request_for())
    assert result.reason == "AuthorizationFailed"
    assert result.error == arm.errors[-1]["message"]
    assert f"does not have authorization to perform action '{POOL_WRITE}'" in result.error


def test_missing_cluster_is_azures_not_found(arm: FakeARM) -> None:
    result = make_provisioner(arm, cluster_name="no-such-cluster").ensure_nodes(request_for())
    assert result.reason == "ResourceNotFound"
    assert result.error == (
        "The Resource 'Microsoft.ContainerService/managedClusters/no-such-cluster' under resource group "
        "'kaito-rg' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
    )


def test_stopped_cluster_is_operation_not_allowed(arm: FakeARM) -> None:
    arm.cluster_stopped = True
    result = make_provisioner(arm).ensure_nodes(request_for())
    assert result.reason == "OperationNotAllowed"
    assert result.error == arm.errors[-1]["message"]


def test_stopped_pool_says_how_to_start_it(arm: FakeARM) -> None:
    provisioner = make_provisioner(arm)
    poll_until(provisioner, request_for(), ready)
    pool = pool_name("default", "workspace-phi-3")
    arm.set_power_state(pool, "Stopped")
    result = provisioner.ensure_nodes(request_for())
    assert result.reason == "NodePoolStopped"
    command = (
        f"az aks nodepool start --resource-group kaito-rg --cluster-name kaito-aks --nodepool-name {pool}"
    )
    assert command in (result.error or "")


def test_invalid_token_is_reported(arm: FakeARM) -> None:
    provisioner = make_provisioner(arm, credential=FakeCredential("not-the-right-token"))
    result = provisioner.ensure_nodes(request_for())
    assert result.reason == "InvalidAuthenticationToken"
    assert result.error == "The access token is invalid."


def test_unreachable_arm_is_reported_not_raised(arm: FakeARM) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = make_provisioner(arm, base_url=f"https://127.0.0.1:{port}").ensure_nodes(request_for())
    assert result.reason == "AzureUnreachable"
    assert result.error


def test_a_pool_kaito_did_not_create_is_never_modified_or_deleted(arm: FakeARM) -> None:
    pool = pool_name("default", "workspace-phi-3")
    client = ContainerServiceClient(
        arm.credential, arm.subscription_id, base_url=arm.base_url, **arm.client_kwargs()
    )
    client.agent_pools.begin_create_or_update(
        arm.resource_group,
        arm.cluster_name,
        pool,
        AgentPool(properties=PoolProperties(count=1, vm_size="Standard_NC12s_v3", tags={"owner": "someone"})),
    ).result(timeout=60)
    provisioner = make_provisioner(arm)
    result = provisioner.ensure_nodes(request_for())
    assert result.reason == "NodePoolConflict"
    assert pool in (result.error or "")
    provisioner.delete_nodes("workspace-phi-3", "default")
    assert arm.count("PUT") == 1 and arm.count("DELETE") == 0
    assert arm.pool(pool) is not None


# ---------------------------------------------------------------------------------------------- config


def test_missing_configuration_names_the_variables_and_the_fix() -> None:
    provisioner = AKSProvisioner(environ={})
    result = provisioner.ensure_nodes(request_for())
    assert result.reason == "ProvisionerNotConfigured"
    assert "AZURE_SUBSCRIPTION_ID, AKS_RESOURCE_GROUP, AKS_CLUSTER_NAME are not set" in (result.error or "")
    assert "operator's environment" in (result.error or "")
    partial = AKSProvisioner(environ={"AZURE_SUBSCRIPTION_ID": "sub", "AKS_RESOURCE_GROUP": "rg"})
    assert "AKS_CLUSTER_NAME is not set" in (partial.ensure_nodes(request_for()).error or "")
    with pytest.raises(AKSError) as raised:
        provisioner.delete_nodes("workspace-phi-3", "default")
    assert raised.value.reason == "ProvisionerNotConfigured"


def test_configuration_from_the_environment(arm: FakeARM) -> None:
    provisioner = AKSProvisioner(
        credential=arm.credential,
        base_url=arm.base_url,
        client_options=arm.client_kwargs(),
        environ={
            "AZURE_SUBSCRIPTION_ID": arm.subscription_id,
            "AKS_RESOURCE_GROUP": arm.resource_group,
            "AKS_CLUSTER_NAME": arm.cluster_name,
        },
    )
    assert provisioner.ensure_nodes(request_for()).reason == "NodePoolCreating"
    assert arm.count("PUT") == 1


def test_zero_count_is_refused() -> None:
    result = AKSProvisioner(environ={}).ensure_nodes(request_for(count=0))
    assert result.reason == "InvalidNodeCount"
    assert "resource.count" in (result.error or "")


# ---------------------------------------------------------------------------------------------- delete


def test_delete_then_delete_again(arm: FakeARM) -> None:
    provisioner = make_provisioner(arm)
    request = request_for()
    poll_until(provisioner, request, ready)
    pool = pool_name("default", "workspace-phi-3")

    provisioner.delete_nodes("workspace-phi-3", "default")
    assert arm.count("DELETE") == 1
    assert arm.pool(pool)["properties"]["provisioningState"] == "Deleting"
    # Deleting while it is already going: no second DELETE; and an ensure meanwhile waits for it.
    provisioner.delete_nodes("workspace-phi-3", "default")
    assert arm.count("DELETE") == 1
    assert provisioner.ensure_nodes(request).reason == "NodePoolDeleting"
    arm.operation_seconds = 0.0
    arm.finish_operations()
    assert arm.pool(pool) is None

    provisioner.delete_nodes("workspace-phi-3", "default")  # gone: a 404 from ARM, and success
    assert arm.count("DELETE") == 1
    to_pool = [(m, status) for m, path, status in arm.requests if path == pool_path(arm, pool)]
    assert to_pool[-1] == ("GET", 404)
    provisioner.delete_nodes("never-existed", "default")


def test_delete_errors_raise_with_azures_words(arm: FakeARM) -> None:
    provisioner = make_provisioner(arm)
    poll_until(provisioner, request_for(), ready)
    arm.denied_actions.add("Microsoft.ContainerService/managedClusters/agentPools/delete")
    with pytest.raises(AKSError) as raised:
        provisioner.delete_nodes("workspace-phi-3", "default")
    assert raised.value.reason == "AuthorizationFailed"
    assert str(raised.value) == arm.errors[-1]["message"]


# ---------------------------------------------------------------------------------------------- secrets


def test_no_credential_in_any_log_or_result(arm: FakeARM, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = arm.credential.token
    # logging_enable would make azure-core print the bearer token; the provisioner drops it.
    provisioner = make_provisioner(arm, client_options={**arm.client_kwargs(), "logging_enable": True})
    results = poll_until(provisioner, request_for(), ready)
    arm.quota["standardNCSv3Family"] = 0
    results.append(provisioner.ensure_nodes(request_for(workspace="other")))
    wrong = make_provisioner(arm, credential=FakeCredential("wrong-" + token))
    results.append(wrong.ensure_nodes(request_for()))
    provisioner.delete_nodes("workspace-phi-3", "default")
    assert arm.credential.calls >= 1  # the token was really used
    assert caplog.records  # and the SDK and the provisioner really logged
    assert "'Authorization': 'REDACTED'" in caplog.text  # headers were logged, redacted
    assert token not in caplog.text
    for result in results:
        assert token not in repr(result)
