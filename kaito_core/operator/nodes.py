"""The resource step of a reconcile pass: the nodes a Workspace runs on, and the Plan for them.

Nodes the user brings (found by ``resource.labelSelector``, planned for by their GPU labels), nodes
claimed through Karpenter NodeClaims (``kaito_core.operator.claims``), or nodes a provisioner plugin
creates in-process for ``resource.instanceType``. The Plan is made here because it
depends on the nodes: the hardware they offer decides the runtime, GPU split and node count.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from kaito_core.api import LabelSelector, Workspace
from kaito_core.operator.claims import ClaimRequest, ClaimStep
from kaito_core.operator.config import OperatorConfig
from kaito_core.operator.hub_models import HubModelStep
from kaito_core.operator.kube import Kube
from kaito_core.operator.status import Check, node_is_ready
from kaito_core.planning import Hardware, PlanError, plan_workspace
from kaito_core.planning.labels import CONFIG_FILE
from kaito_core.plugins import InstanceType, NodeRequest, Plan, PluginError, Registry

T = TypeVar("T")
#: Runs a blocking API call off the event loop (the reconciler's bounded worker threads).
Io = Callable[..., Awaitable[Any]]


def selector_string(selector: LabelSelector) -> str:
    """A LabelSelector in the API server's query syntax."""
    terms = [f"{k}={v}" for k, v in sorted(selector.match_labels.items())]
    for req in selector.match_expressions:
        values = ",".join(req.values)
        terms.append(
            {
                "In": f"{req.key} in ({values})",
                "NotIn": f"{req.key} notin ({values})",
                "Exists": req.key,
                "DoesNotExist": f"!{req.key}",
            }[req.operator]
        )
    return ",".join(terms)


@dataclass
class NodesOutcome:
    """Where the Workspace's nodes stand after the resource step: the ResourceReady check, the Plan
    when one could be made, and the nodes ready for it."""

    check: Check
    plan: Plan | None = None
    plan_error: Check | None = None
    ready_nodes: list[str] = field(default_factory=list)
    target: int | None = None
    model_revision: str | None = None  # the commit a Hugging Face model by repository id is pinned to


class NodeStep:
    def __init__(self, kube: Kube, registry: Registry, config: OperatorConfig, io: Io) -> None:
        self.kube = kube
        self.registry = registry
        self.config = config
        self.io = io
        self.claims = ClaimStep(kube, config, io)
        self.hub = HubModelStep(kube, registry, io)
        self._hub_presets: dict[tuple[str, str], Any] = {}  # (namespace, name) -> Preset for this pass

    async def _inference_config(self, ws: Workspace) -> dict[str, Any] | None:
        if ws.inference is None or not ws.inference.config:
            return None
        config_map = await self.io(self.kube.read_config_map, ws.namespace, ws.inference.config)
        if config_map is None:
            raise PlanError(
                f"inference.config: ConfigMap {ws.inference.config!r} not found in namespace "
                f"{ws.namespace!r}; create it with an {CONFIG_FILE} key"
            )
        text = (config_map.get("data") or {}).get(CONFIG_FILE)
        if text is None:
            raise PlanError(f"inference.config: ConfigMap {ws.inference.config!r} has no {CONFIG_FILE} key")
        try:
            parsed = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise PlanError(
                f"inference.config: {CONFIG_FILE} in ConfigMap {ws.inference.config!r} is not "
                f"valid YAML: {exc}"
            ) from None
        if not isinstance(parsed, dict):
            raise PlanError(f"inference.config: {CONFIG_FILE} must hold a mapping")
        return parsed

    def _plan(self, ws: Workspace, hardware: Hardware, config: dict[str, Any] | None) -> Plan | None:
        if ws.inference is None or ws.inference.preset is None:
            return None  # a custom template or a tuning Workspace
        preset = self._hub_presets.get((ws.namespace, ws.name))
        if preset is not None:
            self.hub.use(preset)  # no await from here to the plan: this Workspace's commit is the one used
        return plan_workspace(ws, self.registry, hardware, config)

    async def resources(self, ws: Workspace) -> NodesOutcome:
        """Where the Workspace's nodes stand, and the Plan for them."""
        revision = None
        self._hub_presets.pop((ws.namespace, ws.name), None)
        if self.hub.applies(ws):
            model = await self.hub.resolve(ws)
            if model.problem is not None:
                return NodesOutcome(model.problem, plan_error=model.problem)
            self._hub_presets[(ws.namespace, ws.name)] = model.preset
            revision = model.revision
        outcome = await self._resources(ws)
        outcome.model_revision = revision
        return outcome

    async def _resources(self, ws: Workspace) -> NodesOutcome:
        try:
            config = await self._inference_config(ws)
        except PlanError as exc:
            config = None
            config_error: Check | None = Check("False", "InvalidInferenceConfig", str(exc), failed=True)
        else:
            config_error = None
        selector = selector_string(ws.resource.label_selector)
        if self.config.brings_nodes:
            resources = await self._nodes_brought(ws, selector, config)
        elif self.config.writes_nodeclaims:
            resources = await self._nodes_claimed(ws, config)
        else:
            resources = await self._nodes_provisioned(ws, selector, config)
        if config_error is not None:
            resources.plan_error = config_error
        return resources

    async def _nodes_brought(
        self, ws: Workspace, selector: str, config: dict[str, Any] | None
    ) -> NodesOutcome:
        """Nodes the user brings: found by the label selector, planned for by their GPU labels."""
        nodes = await self.io(self.kube.list_nodes, selector)
        target = ws.resource.count
        if not nodes:
            message = f"No nodes found matching the specified label selector ({selector})"
            return NodesOutcome(Check("False", "NodesNotFound", message), target=target)
        if not any(node_is_ready(n, need_gpu=False) for n in nodes):
            return NodesOutcome(
                Check("False", "NodesNotReady", f"0/{len(nodes)} nodes matching {selector} are Ready"),
                target=target,
            )
        plan: Plan | None = None
        try:
            plan = self._plan(ws, Hardware.from_nodes(nodes), config)
        except PlanError as exc:
            failure = Check("False", "PlanFailed", str(exc), failed=True)
            return NodesOutcome(failure, plan_error=failure, target=target)
        if plan is not None:
            target = plan.node_count
        need_gpu = plan is not None and plan.gpus_per_node > 0
        usable = {n["metadata"]["name"] for n in nodes if node_is_ready(n, need_gpu)}
        # resource.preferredNodes first (KAITO's order), then the rest; the pods prefer them too.
        preferred = list(dict.fromkeys(ws.resource.preferred_nodes))
        ready = [p for p in preferred if p in usable] + sorted(usable - set(preferred))
        ignored = [p for p in preferred if p not in {n["metadata"]["name"] for n in nodes}]
        note = (
            f"; resource.preferredNodes {', '.join(ignored)} ignored: not among the nodes matching {selector}"
            if ignored
            else ""
        )
        if len(ready) >= target:
            check = Check("True", "NodesReady", f"{len(ready)} node(s) ready{note}")
        else:
            gpu = " with nvidia.com/gpu capacity" if need_gpu else ""
            check = Check(
                "False",
                "NodesNotReady",
                f"{len(ready)}/{target} nodes matching {selector} are ready{gpu}{note}",
            )
        return NodesOutcome(check, plan, None, ready, target)

    def _sized(
        self, ws: Workspace, catalog: dict[str, InstanceType], config: dict[str, Any] | None
    ) -> tuple[InstanceType, Plan | None, int, int] | NodesOutcome:
        """The SKU, the Plan, the node count and the preset's disk need; or why there are none."""
        instance_type = ws.resource.instance_type or ""
        sku = catalog.get(instance_type)
        if sku is None:
            message = (
                f"Unsupported instance type {instance_type or '(empty)'}. Supported SKUs: "
                f"{', '.join(sorted(catalog)) or 'none (install a provisioner plugin with a catalog)'}"
            )
            return NodesOutcome(Check("False", "UnknownInstanceType", message, failed=True))
        try:
            plan = self._plan(ws, Hardware.from_instance_type(sku, ws.resource.count), config)
        except PlanError as exc:
            failure = Check("False", "PlanFailed", str(exc), failed=True)
            return NodesOutcome(failure, plan_error=failure)
        target = plan.node_count if plan is not None else ws.resource.count
        disk = 0
        if plan is not None:
            try:
                disk = self.registry.preset(plan.preset).requirements.disk
            except PluginError:
                disk = 0
        return sku, plan, target, disk

    async def _nodes_claimed(self, ws: Workspace, config: dict[str, Any] | None) -> NodesOutcome:
        """NodeClaims for a node-provisioner controller; instance types sized by every installed catalog."""
        sized = self._sized(ws, self.registry.instance_types(), config)
        if isinstance(sized, NodesOutcome):
            return sized
        sku, plan, target, disk = sized
        need_gpu = plan.gpus_per_node > 0 if plan is not None else sku.gpu_count > 0
        check, ready = await self.claims.ensure(ws, ClaimRequest(sku.name, target, disk, need_gpu))
        return NodesOutcome(check, plan, None, ready, target)

    async def _nodes_provisioned(
        self, ws: Workspace, selector: str, config: dict[str, Any] | None
    ) -> NodesOutcome:
        try:
            provisioner = self.registry.provisioner(self.config.provisioner)
        except PluginError as exc:
            return NodesOutcome(Check("False", "ProvisionerUnavailable", str(exc), failed=True))
        sized = self._sized(ws, dict(provisioner.catalog()), config)
        if isinstance(sized, NodesOutcome):
            return sized
        sku, plan, target, disk = sized
        request = NodeRequest(
            workspace=ws.name,
            namespace=ws.namespace,
            instance_type=sku.name,
            count=target,
            labels=dict(ws.resource.label_selector.match_labels),
            disk_bytes=disk,
        )
        try:
            result = await self.io(provisioner.ensure_nodes, request)
        except Exception as exc:  # a plugin's bug or an unreachable cloud: shown, then retried
            message = f"provisioner {provisioner.name} failed: {type(exc).__name__}: {exc}"
            return NodesOutcome(
                Check("False", "ProvisioningFailed", message, failed=True), plan, target=target
            )
        if result.error:
            return NodesOutcome(
                Check("False", result.reason or "ProvisioningFailed", result.error, failed=True),
                plan,
                target=target,
            )
        if result.node_selector:
            selector = ",".join([selector, *(f"{k}={v}" for k, v in sorted(result.node_selector.items()))])
        nodes = await self.io(self.kube.list_nodes, selector)
        need_gpu = plan.gpus_per_node > 0 if plan is not None else sku.gpu_count > 0
        ready = sorted(n["metadata"]["name"] for n in nodes if node_is_ready(n, need_gpu))
        if len(ready) >= target:
            check = Check("True", "NodesReady", f"{len(ready)} node(s) of {sku.name} ready")
        else:
            check = Check(
                "False",
                "NodesNotReady",
                f"{len(ready)}/{target} {sku.name} node(s) ready"
                + (" with nvidia.com/gpu capacity" if need_gpu else "")
                + (f"; {result.pending} being provisioned" if result.pending else ""),
            )
        return NodesOutcome(check, plan, None, ready, target)
