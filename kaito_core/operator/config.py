"""Operator configuration (``kaito operator`` fills it from its flags and ``KAITO_*`` variables)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kaito_core.planning.images import ImageSettings
from kaito_core.planning.nodeclaims import CLOUD_NODE_CLASSES, NodeClass

#: The provisioner name meaning "the user brings the nodes" (KAITO's BYO mode); "none" is its old name.
NO_PROVISIONER = "byo"
BYO_ALIASES = ("byo", "none")
#: Modes in which the operator writes Karpenter NodeClaims and a node-provisioner controller (Azure's
#: gpu-provisioner, ``kaito gpu-provisioner``, or Karpenter itself) turns them into nodes. Any other
#: name is a provisioner plugin called in-process.
GPU_PROVISIONER = "gpu-provisioner"
KARPENTER = "karpenter"
NODECLAIM_MODES = (GPU_PROVISIONER, KARPENTER)
FINALIZER = "workspace.finalizer.kaito.sh"


@dataclass(frozen=True)
class OperatorConfig:
    provisioner: str = NO_PROVISIONER
    images: ImageSettings = field(default_factory=ImageSettings)
    kubeconfig: str | None = None  # None: in-cluster, else $KUBECONFIG / ~/.kube/config
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    #: seconds between checks while waiting for nodes or a workload (events also wake the operator)
    requeue_seconds: float = 2.0
    #: seconds between full re-checks of a settled Workspace (level-triggered resync)
    resync_seconds: float = 300.0
    #: at most this many reconciles talk to the API server at once
    concurrency: int = 8
    peering: str | None = None  # a kopf peering name; None runs standalone
    webhook_port: int | None = None  # serve the validating webhook on this port
    webhook_host: str | None = None  # the name the API server reaches the webhook by
    webhook_cert: str | None = None  # PEM certificate file (with webhook_key); None: kopf self-signs
    webhook_key: str | None = None
    webhook_url: str | None = None  # the URL the API server calls (when not derived from host/port)
    manage_webhook_configuration: bool = False  # kopf creates/updates the ValidatingWebhookConfiguration
    liveness: str | None = None  # e.g. http://0.0.0.0:8080/healthz
    #: the cloud of the NodeClaims (KAITO's CLOUD_PROVIDER): picks the requirements and node class
    cloud: str = "azure"
    #: the claims' nodeClassRef; None: the cloud's (KaitoNodeClass on Azure, EC2NodeClass on AWS)
    node_class: NodeClass | None = None
    #: node image family written on claims when the Workspace's annotation names none
    node_image_family: str = ""

    @property
    def writes_nodeclaims(self) -> bool:
        return self.provisioner in NODECLAIM_MODES

    @property
    def brings_nodes(self) -> bool:
        return self.provisioner in BYO_ALIASES

    def claim_node_class(self) -> NodeClass:
        return self.node_class or CLOUD_NODE_CLASSES[self.cloud]
