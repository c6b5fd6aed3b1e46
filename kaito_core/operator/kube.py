"""Blocking calls to the API server through the official ``kubernetes`` client, as plain dicts.

Responses are read raw (``_preload_content=False``) and parsed as JSON: no model objects, which keeps
memory and CPU low with many Workspaces. Callers run these in threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "kaito.sh", "v1beta1", "workspaces"
NC_GROUP, NC_VERSION, NC_PLURAL = "karpenter.sh", "v1", "nodeclaims"

#: kind -> (API class, method suffix) of the official client
_KINDS: Mapping[str, tuple[type, str]] = {
    "ConfigMap": (client.CoreV1Api, "config_map"),
    "Service": (client.CoreV1Api, "service"),
    "Pod": (client.CoreV1Api, "pod"),
    "Secret": (client.CoreV1Api, "secret"),
    "Deployment": (client.AppsV1Api, "deployment"),
    "StatefulSet": (client.AppsV1Api, "stateful_set"),
    "Job": (client.BatchV1Api, "job"),
}
#: fields the API server assigns to a Service that a replace must carry over
_SERVICE_ASSIGNED = ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "healthCheckNodePort")


def load_api_client(kubeconfig: str | None, pool: int = 8) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig file."""
    configuration = client.Configuration()
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    else:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)


def _body(response: Any) -> dict[str, Any]:
    return json.loads(response.data) if response.data else {}


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._apis: dict[type, Any] = {}

    def _call(self, kind: str, verb: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        api_class, suffix = _KINDS[kind]
        api = self._apis.get(api_class)
        if api is None:
            api = self._apis[api_class] = api_class(self.api)
        return _body(getattr(api, f"{verb}_{suffix}")(*args, _preload_content=False, **kwargs))

    # ------------------------------------------------------------------ namespaced children

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call(kind, "read_namespaced", name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_children(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self._call(kind, "list_namespaced", namespace, label_selector=selector).get("items", [])

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(obj["kind"], "create_namespaced", obj["metadata"]["namespace"], obj)

    def replace(self, obj: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the desired object over ``current`` (its resourceVersion: a stale one is a 409)."""
        body = json.loads(json.dumps(obj))
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if obj["kind"] == "Service":
            for key in _SERVICE_ASSIGNED:
                if key in current.get("spec", {}):
                    body["spec"][key] = current["spec"][key]
        return self._call(
            obj["kind"], "replace_namespaced", obj["metadata"]["name"], obj["metadata"]["namespace"], body
        )

    def delete(self, kind: str, namespace: str, name: str, propagation: str | None = None) -> None:
        """``propagation`` "Background" deletes a Job's pods too (the API's default orphans them)."""
        extra = {"propagation_policy": propagation} if propagation else {}
        try:
            self._call(kind, "delete_namespaced", name, namespace, **extra)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # ------------------------------------------------------------------ cluster objects

    def patch_crd(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        api = client.ApiextensionsV1Api(self.api)
        return _body(api.patch_custom_resource_definition(
            name, dict(patch), _preload_content=False, _content_type="application/merge-patch+json"))

    def list_nodes(self, selector: str) -> list[dict[str, Any]]:
        api = client.CoreV1Api(self.api)
        return _body(api.list_node(label_selector=selector, _preload_content=False)).get("items", [])

    def list_nodeclaims(self, selector: str) -> list[dict[str, Any]]:
        api = client.CustomObjectsApi(self.api)
        return _body(
            api.list_cluster_custom_object(
                NC_GROUP, NC_VERSION, NC_PLURAL, label_selector=selector, _preload_content=False
            )
        ).get("items", [])

    def create_nodeclaim(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        api = client.CustomObjectsApi(self.api)
        return _body(
            api.create_cluster_custom_object(
                NC_GROUP, NC_VERSION, NC_PLURAL, dict(obj), _preload_content=False
            )
        )

    def delete_nodeclaim(self, name: str) -> None:
        api = client.CustomObjectsApi(self.api)
        try:
            api.delete_cluster_custom_object(NC_GROUP, NC_VERSION, NC_PLURAL, name, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def serves(self, group: str, version: str, plural: str) -> bool:
        """Whether the API server serves ``plural`` in ``group/version`` (discovery: needs no RBAC)."""
        try:
            response = client.CustomObjectsApi(self.api).get_api_resources(
                group, version, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return any(r.get("name") == plural for r in _body(response).get("resources", []))

    def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get("ConfigMap", namespace, name)

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One named Secret (a modelAccessSecret): ``get`` only, never a list of Secrets."""
        return self.get("Secret", namespace, name)

    # ------------------------------------------------------------------ the Workspace

    def patch_workspace_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> dict[str, Any]:
        api = client.CustomObjectsApi(self.api)
        body = {"metadata": {"annotations": dict(annotations)}}
        return _body(
            api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body, _preload_content=False
            )
        )

    def patch_workspace_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        api = client.CustomObjectsApi(self.api)
        return _body(
            api.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)}, _preload_content=False
            )
        )
