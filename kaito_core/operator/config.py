"""Operator configuration, from flags and environment variables (``KAITO_*``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from kaito_core.planning.manifests import ImageSettings

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

    @classmethod
    def from_env(cls, **overrides: object) -> OperatorConfig:
        """Values from ``KAITO_*`` environment variables, then the explicit overrides (flags)."""
        env = os.environ
        images = ImageSettings(
            puller_image=env.get("KAITO_PULLER_IMAGE", ImageSettings.puller_image),
            registry_prefix=env.get("KAITO_REGISTRY_PREFIX", ""),
            weights_tag=env.get("KAITO_WEIGHTS_TAG", ""),
            plain_http=env.get("KAITO_REGISTRY_PLAIN_HTTP", "").lower() in ("1", "true", "yes"),
        )
        values: dict[str, object] = {
            "provisioner": env.get("KAITO_PROVISIONER", NO_PROVISIONER),
            "images": images,
            "kubeconfig": env.get("KUBECONFIG") or None,
            "namespaces": tuple(n for n in env.get("KAITO_NAMESPACES", "").split(",") if n),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
