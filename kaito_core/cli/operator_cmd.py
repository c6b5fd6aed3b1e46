"""`kaito operator`: run the Kubernetes operator (kopf) with the installed plugins."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from kaito_core.planning.nodeclaims import NodeClass


@click.command("operator")
@click.option(
    "--provisioner",
    envvar="KAITO_PROVISIONER",
    default="byo",
    show_default=True,
    help="gpu-provisioner or karpenter: write Karpenter NodeClaims for that controller; byo (or none): "
    "nodes the user brings (labelSelector); any other name: a provisioner plugin called in-process.",
)
@click.option(
    "--cloud",
    envvar="CLOUD_PROVIDER",
    type=click.Choice(["azure", "aws"]),
    default="azure",
    show_default=True,
    help="Cloud of the NodeClaims: their requirements and default node class (KaitoNodeClass, EC2NodeClass).",
)
@click.option(
    "--node-class",
    envvar="KAITO_NODE_CLASS",
    default=None,
    metavar="KIND.GROUP/VERSION/NAME",
    help="The NodeClaims' nodeClassRef, e.g. AKSNodeClass.karpenter.azure.com/v1beta1/default; "
    "default: the cloud's (KaitoNodeClass.kaito.sh/v1alpha1/default, "
    "EC2NodeClass.karpenter.k8s.aws/v1/default).",
)
@click.option(
    "--node-image-family",
    envvar="KAITO_NODE_IMAGE_FAMILY",
    type=click.Choice(["ubuntu", "azurelinux"]),
    default=None,
    help="Node image family on NodeClaims whose Workspace has no kaito.sh/node-image-family annotation.",
)
@click.option(
    "--registry-prefix",
    envvar="KAITO_REGISTRY_PREFIX",
    default="",
    help="Registry for preset weights: <prefix>/kaito-<preset>:<tag>.",
)
@click.option(
    "--weights-from",
    envvar="KAITO_WEIGHTS_FROM",
    type=click.Choice(["registry", "hub"]),
    default="registry",
    show_default=True,
    help="Where pods pull preset weights: the artifact registry (--registry-prefix), or the Hugging Face "
    "Hub directly (hf://REPO@REVISION; the Workspace's modelAccessSecret is its HF_TOKEN).",
)
@click.option(
    "--weights-tag",
    envvar="KAITO_WEIGHTS_TAG",
    default="",
    help="Tag of preset artifacts (default: the planned quantization, lower-cased).",
)
@click.option(
    "--image-registry",
    envvar="KAITO_IMAGE_REGISTRY",
    default="ghcr.io/kaito-python",
    show_default=True,
    help="Registry of the project's images (kaito, kaito-runtime-*): <registry>/<name>:<tag>.",
)
@click.option(
    "--image-tag",
    envvar="KAITO_IMAGE_TAG",
    default="",
    help="Tag of the project's images (default: this kaito-core's version).",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    envvar="KAITO_IMAGES",
    help="NAME=REF: use REF for the image NAME (e.g. kaito-runtime-llamacpp-cpu=reg.example.com/llama:1); "
    "repeatable, or comma-separated in KAITO_IMAGES.",
)
@click.option(
    "--puller-image",
    envvar="KAITO_PULLER_IMAGE",
    default=None,
    help="Image with the kaito command, for the init container that pulls weights "
    "(same as --image kaito=REF).",
)
@click.option(
    "--weights-volume",
    envvar="KAITO_WEIGHTS_VOLUME",
    type=click.Choice(["emptyDir", "pvc"]),
    default="emptyDir",
    show_default=True,
    help="The pod volume for weights: emptyDir (sized by the preset's disk requirement), or a PVC per pod "
    "that outlives it (a restarted pod does not download again).",
)
@click.option(
    "--weights-storage-class",
    envvar="KAITO_WEIGHTS_STORAGE_CLASS",
    default="",
    help="StorageClass of the weights PVCs (default: the cluster's default).",
)
@click.option(
    "--weights-volume-size",
    envvar="KAITO_WEIGHTS_VOLUME_SIZE",
    default="",
    help="Size of the weights volume, e.g. 100Gi (default: the preset's disk requirement).",
)
@click.option(
    "--plain-http",
    envvar="KAITO_REGISTRY_PLAIN_HTTP",
    is_flag=True,
    help="Pull weights over plain HTTP (a registry without TLS inside the cluster).",
)
@click.option(
    "--kubeconfig",
    envvar="KUBECONFIG",
    default=None,
    help="Kubeconfig file; default: in-cluster credentials, else ~/.kube/config.",
)
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch only this namespace (repeatable); default: all namespaces.",
)
@click.option("--peering", default=None, help="kopf peering name (several replicas); default: standalone.")
@click.option("--webhook-port", type=int, default=None, help="Serve the validating webhook on this port.")
@click.option(
    "--webhook-host",
    default=None,
    help="Name the API server reaches the webhook by; '<service>.<namespace>.svc' for a Service.",
)
@click.option(
    "--webhook-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TLS certificate (PEM) for the webhook; default: a self-signed one made at start-up.",
)
@click.option("--webhook-key", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option(
    "--manage-webhook-configuration",
    is_flag=True,
    help="Create/update the ValidatingWebhookConfiguration with the webhook's CA bundle.",
)
@click.option("--liveness", default=None, help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz.")
@click.option(
    "--requeue-seconds",
    type=float,
    default=2.0,
    show_default=True,
    help="Polling interval while waiting for nodes or a workload (events also wake it).",
)
@click.option(
    "--resync-seconds",
    type=float,
    default=300.0,
    show_default=True,
    help="Re-check interval of settled Workspaces.",
)
@click.option("--concurrency", type=int, default=8, show_default=True, help="API calls in flight at once.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def operator_command(
    provisioner: str,
    cloud: str,
    node_class: str | None,
    node_image_family: str | None,
    registry_prefix: str,
    weights_from: str,
    weights_tag: str,
    image_registry: str,
    image_tag: str,
    images: tuple[str, ...],
    puller_image: str | None,
    weights_volume: str,
    weights_storage_class: str,
    weights_volume_size: str,
    plain_http: bool,
    kubeconfig: str | None,
    namespaces: tuple[str, ...],
    peering: str | None,
    webhook_port: int | None,
    webhook_host: str | None,
    webhook_cert: str | None,
    webhook_key: str | None,
    manage_webhook_configuration: bool,
    liveness: str | None,
    requeue_seconds: float,
    resync_seconds: float,
    concurrency: int,
    verbose: bool,
) -> None:
    """Reconcile Workspaces into GPU nodes, inference workloads and status (Ctrl-C stops)."""
    from kaito_core.cli.output import fail
    from kaito_core.operator.config import BYO_ALIASES, NODECLAIM_MODES, OperatorConfig
    from kaito_core.operator.run import MissingCRD, run_operator
    from kaito_core.planning.images import ImageSettings, parse_overrides
    from kaito_core.planning.volumes import WeightsVolume
    from kaito_core.plugins import PluginError, default_registry

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    registry = default_registry()
    if provisioner not in BYO_ALIASES and provisioner not in NODECLAIM_MODES:
        try:
            registry.provisioner(provisioner)
        except PluginError as exc:
            fail(f"--provisioner: {exc}; or use {', '.join(NODECLAIM_MODES)} or byo")
    try:
        claim_class = parse_node_class(node_class) if node_class else None
    except ValueError as exc:
        fail(f"--node-class: {exc}")
    if (webhook_cert is None) != (webhook_key is None):
        fail("--webhook-cert and --webhook-key go together")
    try:
        overrides = parse_overrides(images)
        volume = WeightsVolume(weights_volume, weights_storage_class, weights_volume_size)
    except ValueError as exc:
        fail(str(exc))
    if puller_image:
        overrides["kaito"] = puller_image
    config = OperatorConfig(
        provisioner=provisioner,
        images=ImageSettings(
            image_registry=image_registry,
            image_tag=image_tag,
            overrides=overrides,
            registry_prefix=registry_prefix,
            weights_tag=weights_tag,
            weights_from=weights_from,
            plain_http=plain_http,
            weights_volume=volume,
        ),
        kubeconfig=kubeconfig,
        namespaces=namespaces,
        peering=peering,
        webhook_port=webhook_port,
        webhook_host=webhook_host,
        webhook_cert=webhook_cert,
        webhook_key=webhook_key,
        manage_webhook_configuration=manage_webhook_configuration,
        liveness=liveness,
        requeue_seconds=requeue_seconds,
        resync_seconds=resync_seconds,
        concurrency=concurrency,
        cloud=cloud,
        node_class=claim_class,
        node_image_family=node_image_family or "",
    )
    try:
        run_operator(config, registry)
    except MissingCRD as exc:
        fail(str(exc))


def parse_node_class(text: str) -> NodeClass:
    """``KIND.GROUP/VERSION/NAME`` -> NodeClass (the version is what the start-up check asks for)."""
    from kaito_core.planning.nodeclaims import NodeClass

    parts = text.split("/")
    kind, _, group = parts[0].partition(".")
    if len(parts) != 3 or not kind or not group or not all(parts[1:]):
        raise ValueError(
            f"{text!r} is not KIND.GROUP/VERSION/NAME, e.g. EC2NodeClass.karpenter.k8s.aws/v1/default"
        )
    return NodeClass(group=group, kind=kind, version=parts[1], name=parts[2])


def register(group: click.Group) -> None:
    """Add this module's commands to `group`."""
    group.add_command(operator_command)
