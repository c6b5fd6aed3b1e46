"""The API emulator behaves like the API server where an operator can tell the difference."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from kaito_testing.apiserver import ApiServer, Fault
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wg"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {
                        "name": "Ready",
                        "type": "string",
                        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                    },
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "color": {"type": "string", "default": "blue"},
                                },
                            },
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            },
        ],
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    with ApiServer(bookmark_interval=0.5) as srv:
        srv.apply(WIDGET_CRD)
        yield srv


@pytest.fixture(scope="module")
def api(server: ApiServer) -> client.ApiClient:
    return config.new_client_from_config(str(server.kubeconfig("tester")))


def widget(name: str, size: int = 1, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name, **meta},
        "spec": {"size": size},
    }


def test_discovery_lists_core_groups_and_crds(server: ApiServer) -> None:
    assert requests.get(f"{server.url}/api", timeout=5).json()["versions"] == ["v1"]
    groups = {g["name"] for g in requests.get(f"{server.url}/apis", timeout=5).json()["groups"]}
    assert {"apps", "example.com", "apiextensions.k8s.io"} <= groups
    resources = requests.get(f"{server.url}/apis/example.com/v1", timeout=5).json()["resources"]
    assert {r["name"] for r in resources} == {"widgets", "widgets/status"}
    assert requests.get(f"{server.url}/apis/nope.io/v1", timeout=5).status_code == 404


def test_create_assigns_identity_and_answers_201(server: ApiServer, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    data, code, _ = custom.create_namespaced_custom_object_with_http_info(
        "example.com", "v1", "default", "widgets", widget("w-create", 2)
    )
    assert code == 201
    meta = data["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["generation"] == 1 and meta["creationTimestamp"]
    assert data["spec"]["color"] == "blue"  # the schema default is applied
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object("example.com", "v1", "default", "widgets", widget("w-create"))
    assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "AlreadyExists"
    generated = client.CoreV1Api(api).create_namespaced_config_map(
        "default", {"metadata": {"generateName": "cm-"}, "data": {"a": "b"}}
    )
    assert generated.metadata.name.startswith("cm-") and len(generated.metadata.name) == 8
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(api).create_namespaced_config_map("missing-ns", {"metadata": {"name": "x"}})
    assert exc.value.status == 404


def test_schema_violations_are_422(api: client.ApiClient) -> None:
    with pytest.raises(ApiException) as exc:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", widget("w-bad", 0)
        )
    assert exc.value.status == 422 and "spec.size" in json.loads(exc.value.body)["message"]


def test_stale_put_conflicts_and_generation_counts_spec_changes(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    first = custom.create_namespaced_custom_object("example.com", "v1", "default", "widgets", widget("w-rv"))
    second = custom.replace_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", "w-rv", {**first, "spec": {"size": 3}}
    )
    assert second["metadata"]["generation"] == 2
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    with pytest.raises(ApiException) as exc:
        custom.replace_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", "w-rv", {**first, "spec": {"size": 4}}
        )
    assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "Conflict"
    labelled = custom.patch_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", "w-rv", {"metadata": {"labels": {"a": "b"}}}
    )
    assert labelled["metadata"]["generation"] == 2  # metadata is not spec
    unchanged = custom.patch_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", "w-rv", {"metadata": {"labels": {"a": "b"}}}
    )
    assert unchanged["metadata"]["resourceVersion"] == labelled["metadata"]["resourceVersion"]


def test_status_subresource_is_isolated(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        "example.com",
        "v1",
        "default",
        "widgets",
        {**widget("w-status"), "status": {"phase": "ignored on create"}},
    )
    after_main = custom.patch_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", "w-status", {"status": {"phase": "x"}, "spec": {"size": 5}}
    )
    assert "status" not in after_main and after_main["spec"]["size"] == 5
    after_status = custom.patch_namespaced_custom_object_status(
        "example.com",
        "v1",
        "default",
        "widgets",
        "w-status",
        {"status": {"phase": "ok"}, "spec": {"size": 9}},
    )
    assert after_status["status"] == {"phase": "ok"} and after_status["spec"]["size"] == 5
    assert after_status["metadata"]["generation"] == after_main["metadata"]["generation"]


def test_label_and_field_selectors(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for name, labels in (("sel-a", {"app": "x", "tier": "web"}), ("sel-b", {"app": "y"}), ("sel-c", {})):
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})

    def names(**kwargs: Any) -> set[str]:
        return {
            i.metadata.name
            for i in core.list_namespaced_config_map("default", **kwargs).items
            if i.metadata.name.startswith("sel-")
        }

    assert names(label_selector="app=x") == {"sel-a"}
    assert names(label_selector="app in (x,y),tier!=db") == {"sel-a", "sel-b"}
    assert names(label_selector="!app") == {"sel-c"}
    assert names(label_selector="app,tier") == {"sel-a"}
    assert names(field_selector="metadata.name=sel-b") == {"sel-b"}
    page = core.list_namespaced_config_map("default", limit=1)
    assert len(page.items) == 1 and page.metadata._continue


def test_patch_formats(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    body = {
        "metadata": {"name": "d-patch"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {
                    "containers": [{"name": "one", "image": "img:1"}, {"name": "two", "image": "img:2"}]
                },
            },
        },
    }
    apps.create_namespaced_deployment("default", body)
    # The official client sends strategic merge for a dict body: containers merge by name.
    patched = apps.patch_namespaced_deployment(
        "d-patch",
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "two", "image": "img:3"}]}}}},
    )
    images = [(c.name, c.image) for c in patched.spec.template.spec.containers]
    assert images == [("one", "img:1"), ("two", "img:3")]
    patched = apps.patch_namespaced_deployment(
        "d-patch", "default", [{"op": "add", "path": "/spec/replicas", "value": 3}]
    )
    assert patched.spec.replicas == 3


def test_finalizers_and_owner_cascade(server: ApiServer, api: client.ApiClient) -> None:
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    owner = custom.create_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", widget("w-owner", finalizers=["example.com/keep"])
    )
    ref = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "name": "w-owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    core.create_namespaced_config_map("default", {"metadata": {"name": "child", "ownerReferences": [ref]}})
    deleting = custom.delete_namespaced_custom_object("example.com", "v1", "default", "widgets", "w-owner")
    assert deleting["metadata"]["deletionTimestamp"]
    assert core.read_namespaced_config_map("child", "default")  # still there: the owner is not gone yet
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(
            "example.com",
            "v1",
            "default",
            "widgets",
            "w-owner",
            {"metadata": {"finalizers": ["example.com/keep", "new"]}},
        )
    assert exc.value.status == 422
    custom.patch_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", "w-owner", {"metadata": {"finalizers": None}}
    )
    assert server.get("example.com/v1", "Widget", "w-owner", "default") is None
    assert server.get("v1", "ConfigMap", "child", "default") is None


def test_watch_resumes_from_a_resource_version_and_410_after_compaction(
    server: ApiServer, api: client.ApiClient
) -> None:
    core = client.CoreV1Api(api)
    listed = core.list_namespaced_config_map("default")
    since = listed.metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "watched", "labels": {"w": "1"}}})
    core.patch_namespaced_config_map("watched", "default", {"data": {"k": "v"}})
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=since,
            label_selector="w=1",
            timeout_seconds=1,
        )
    ]
    assert events == [("ADDED", "watched"), ("MODIFIED", "watched")]
    server.compact()
    raw = requests.get(
        f"{server.url}/api/v1/namespaces/default/configmaps",
        params={"watch": "true", "resourceVersion": since, "timeoutSeconds": "1"},
        timeout=5,
    )
    first = json.loads(raw.text.splitlines()[0])
    assert first["type"] == "ERROR" and first["object"]["code"] == 410


def test_live_watch_sees_changes_and_label_transitions(server: ApiServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "live", "labels": {"team": "a"}}})
    seen: list[tuple[str, str]] = []

    def consume() -> None:
        for event in watch.Watch().stream(
            core.list_namespaced_config_map, "default", label_selector="team=a", timeout_seconds=5
        ):
            seen.append((event["type"], event["object"].metadata.name))

    thread = threading.Thread(target=consume)
    thread.start()
    deadline = time.monotonic() + 60
    while not seen:  # the watch is running: its first event came
        assert time.monotonic() < deadline, "the watch never started"
        time.sleep(0.02)
    core.patch_namespaced_config_map("live", "default", {"metadata": {"labels": {"team": "b"}}})
    thread.join()
    assert seen == [("ADDED", "live"), ("DELETED", "live")]


def test_table_format_uses_printer_columns(server: ApiServer, api: client.ApiClient) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", widget("w-table", 7)
    )
    server.patch_status(
        "example.com/v1",
        "Widget",
        "w-table",
        "default",
        {"conditions": [{"type": "Ready", "status": "True"}]},
    )
    reply = requests.get(
        f"{server.url}/apis/example.com/v1/namespaces/default/widgets/w-table",
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        timeout=5,
    ).json()
    assert reply["kind"] == "Table"
    assert [c["name"] for c in reply["columnDefinitions"]] == ["Name", "Size", "Ready", "Age"]
    name, size, ready, age = reply["rows"][0]["cells"]
    assert (name, size, ready) == ("w-table", 7, "True") and age.endswith("s")


def test_injected_faults_and_recorded_calls(server: ApiServer, api: client.ApiClient) -> None:
    server.inject(Fault(verb="create", resource="configmaps", code=409, user="tester"))
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": "faulty"}})
    assert exc.value.status == 409
    core.create_namespaced_config_map("default", {"metadata": {"name": "faulty"}})
    calls = [
        (c.verb, c.resource, c.code)
        for c in server.emulator.calls_by("tester")
        if c.name == "faulty" or (c.verb == "create" and c.resource == "configmaps")
    ]
    assert ("create", "configmaps", 409) in calls and ("create", "configmaps", 201) in calls
