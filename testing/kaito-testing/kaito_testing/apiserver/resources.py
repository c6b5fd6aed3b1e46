"""The resource types the emulator serves: a built-in catalog plus whatever CRDs are created."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ResourceType:
    group: str  # "" for the core group
    versions: tuple[str, ...]  # served versions, the first is the storage version
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    status_subresource: bool = False
    scale_subresource: bool = False
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    printer_columns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by version
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)  # openAPIV3Schema by version
    categories: tuple[str, ...] = ()
    conversion: dict[str, Any] = field(default_factory=dict)  # a CRD's spec.conversion

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def discovery_entries(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = [
            {
                "name": self.plural,
                "singularName": self.singular or self.kind.lower(),
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": list(self.verbs),
                **({"shortNames": list(self.short_names)} if self.short_names else {}),
                **({"categories": list(self.categories)} if self.categories else {}),
            }
        ]
        if self.status_subresource:
            entries.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        if self.scale_subresource:
            entries.append(
                {
                    "name": f"{self.plural}/scale",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": ["get", "patch", "update"],
                }
            )
        return entries


def _core(
    plural: str,
    kind: str,
    namespaced: bool = True,
    status: bool = False,
    short: tuple[str, ...] = (),
    verbs: tuple[str, ...] | None = None,
) -> ResourceType:
    resource = ResourceType(
        "", ("v1",), plural, kind, namespaced, status_subresource=status, short_names=short
    )
    if verbs is not None:
        resource.verbs = verbs
    return resource


def builtin_resources() -> list[ResourceType]:
    """The built-in types an operator of this kind reads or writes."""
    return [
        _core("namespaces", "Namespace", namespaced=False, status=True, short=("ns",)),
        _core("nodes", "Node", namespaced=False, status=True, short=("no",)),
        _core("pods", "Pod", status=True, short=("po",)),
        _core("services", "Service", status=True, short=("svc",)),
        _core("configmaps", "ConfigMap", short=("cm",)),
        _core("secrets", "Secret"),
        _core("serviceaccounts", "ServiceAccount", short=("sa",)),
        _core("events", "Event", short=("ev",)),
        _core("persistentvolumeclaims", "PersistentVolumeClaim", status=True, short=("pvc",)),
        ResourceType(
            "apps",
            ("v1",),
            "deployments",
            "Deployment",
            True,
            status_subresource=True,
            scale_subresource=True,
            short_names=("deploy",),
            categories=("all",),
        ),
        ResourceType(
            "apps",
            ("v1",),
            "statefulsets",
            "StatefulSet",
            True,
            status_subresource=True,
            scale_subresource=True,
            short_names=("sts",),
            categories=("all",),
        ),
        ResourceType("apps", ("v1",), "controllerrevisions", "ControllerRevision", True),
        ResourceType("batch", ("v1",), "jobs", "Job", True, status_subresource=True),
        ResourceType("events.k8s.io", ("v1",), "events", "Event", True, short_names=("ev",)),
        ResourceType("coordination.k8s.io", ("v1",), "leases", "Lease", True),
        ResourceType("rbac.authorization.k8s.io", ("v1",), "clusterroles", "ClusterRole", False),
        ResourceType(
            "rbac.authorization.k8s.io", ("v1",), "clusterrolebindings", "ClusterRoleBinding", False
        ),
        ResourceType(
            "admissionregistration.k8s.io",
            ("v1",),
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            False,
        ),
        ResourceType(
            "apiextensions.k8s.io",
            ("v1",),
            "customresourcedefinitions",
            "CustomResourceDefinition",
            False,
            status_subresource=True,
            short_names=("crd", "crds"),
        ),
    ]


def from_crd(crd: dict[str, Any]) -> ResourceType:
    """The ResourceType a CustomResourceDefinition declares."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    versions = [v for v in spec.get("versions", []) if v.get("served", True)]
    storage = [v["name"] for v in versions if v.get("storage")]
    ordered = storage + [v["name"] for v in versions if v["name"] not in storage]
    if not ordered or not names.get("plural") or not names.get("kind") or not spec.get("group"):
        raise ValueError("a CRD needs spec.group, spec.names.plural/kind and at least one served version")
    return ResourceType(
        group=spec["group"],
        versions=tuple(ordered),
        plural=names["plural"],
        kind=names["kind"],
        singular=names.get("singular", ""),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames", ())),
        categories=tuple(names.get("categories", ())),
        status_subresource=any("status" in (v.get("subresources") or {}) for v in versions),
        scale_subresource=any("scale" in (v.get("subresources") or {}) for v in versions),
        printer_columns={v["name"]: list(v.get("additionalPrinterColumns", [])) for v in versions},
        schemas={v["name"]: (v.get("schema") or {}).get("openAPIV3Schema", {}) for v in versions},
        conversion=dict(spec.get("conversion") or {}),
    )
