"""Operator configuration (``kaito operator`` fills it from its flags and ``KAITO_*`` variables)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kaito_core.planning.images import ImageSettings

#: The provisioner name meaning "the user brings the nodes" (KAITO's BYO mode).
NO_PROVISIONER = "none"
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
