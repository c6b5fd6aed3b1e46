# ruff: noqa: E501 - a table of KAITO's cases: each expected message stays whole on its line, to be grepped
"""KAITO v0.12's own webhook tests, case by case: ``api/v1beta1/workspace_validation_test.go`` and
``api/v1alpha1/workspace_validation_test.go`` of kaito-project/kaito, ported as one table.

Each row names the KAITO test and case it comes from, the Workspace (and on update the stored one),
the mode KAITO's feature gate sets (node auto-provisioning on: ``nap``; off, nodes you bring: ``byo``),
and the exact errors we return. ``kaito`` is the text KAITO's test looks for (its ``errContent``):
it must appear in one of our messages. Where our verdict or text differs on purpose, ``differs``
names the row in docs/api.md ("Stricter than KAITO") that says why.

KAITO's fixtures become presets here: ``test-validation-static`` (16Gi, weights packaged, not
distributed), ``test-validation-download`` (32Gi, downloaded with an HF token, distributed), ``phi-2``
(deprecated); ``transformers-model`` stands in for KAITO's Transformers-runtime cases (the runtime
KAITO checks GPU memory for under node auto-provisioning), served by a non-vLLM runtime here.

Why this module is long: it is the table of every case of KAITO's two files, kept in one place so
that a reader can set it beside KAITO's and check it row by row.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from api_support import PresetPlugin, ProvisionerPlugin, RuntimePlugin, make_preset

from kaito_core.api import Workspace, errors_only, validate_workspace
from kaito_core.plugins import GiB, InstanceType, NodeRequest, ProvisionResult, Registry, hookimpl


class AzureLike:
    """A provisioner with part of KAITO's Azure SKU table, admitting unlisted N/D SKUs as KAITO does."""

    name = "azure"
    admitted_sku_prefixes = ("Standard_N", "Standard_D")

    def catalog(self) -> dict[str, InstanceType]:
        return {
            "Standard_NV36ads_A10_v5": InstanceType("Standard_NV36ads_A10_v5", "NVIDIA A10", 1, 24 * GiB),
            "Standard_ND96asr_v4": InstanceType("Standard_ND96asr_v4", "NVIDIA A100", 8, 40 * GiB),
            "Standard_NC6s_v3": InstanceType("Standard_NC6s_v3", "NVIDIA V100", 1, 16 * GiB),
        }

    def ensure_nodes(self, request: NodeRequest) -> ProvisionResult:
        return ProvisionResult(pending=request.count)

    def delete_nodes(self, workspace: str, namespace: str) -> None:
        return None


class OtherRuntime:
    name = "transformers-like"
    formats = ("safetensors",)
    needs_gpu = True
    image = "example/other:1"

    def overhead_bytes(self, plan_context_length: int) -> int:
        return 0

    def container(self, plan: Any) -> dict[str, Any]:
        return {"name": "other", "image": self.image}

    def engine(self, config: Any) -> Any:
        raise NotImplementedError("not served in these tests")


class OtherRuntimePlugin:
    @hookimpl
    def kaito_register_runtimes(self, register: Any) -> None:
        register(OtherRuntime())


@pytest.fixture(scope="module")
def kaito_registry() -> Registry:
    reg = Registry()
    reg.register(PresetPlugin(
        make_preset("test-validation-static", total_gpu_memory=16 * GiB),
        make_preset("test-validation-download", total_gpu_memory=32 * GiB, requires_auth=True,
                    distributed_inference=True),
        make_preset("phi-2", deprecated=True),
        make_preset("transformers-model", total_gpu_memory=16 * GiB, runtimes=("transformers-like",),
                    default_runtime="transformers-like"),
    ), distribution="kaito-fixtures")
    reg.register(ProvisionerPlugin(AzureLike()), distribution="azure-like")  # type: ignore[arg-type]
    reg.register(RuntimePlugin(), distribution="vllm-like")
    reg.register(OtherRuntimePlugin(), distribution="other-runtime")
    return reg


def ws(*, instance_type: str | None = "Standard_NV36ads_A10_v5", count: int | None = None,
       labels: dict[str, str] | None = None, selector: dict[str, Any] | None = None,
       inference: dict[str, Any] | None = None, tuning: dict[str, Any] | None = None,
       annotations: dict[str, str] | None = None, name: str = "ws", api: str = "v1beta1") -> dict[str, Any]:
    resource: dict[str, Any] = {"labelSelector": selector or {"matchLabels": labels or {"apps": "test"}}}
    if instance_type is not None:
        resource["instanceType"] = instance_type
    if count is not None:
        resource["count"] = count
    manifest: dict[str, Any] = {"apiVersion": f"kaito.sh/{api}", "kind": "Workspace",
                                "metadata": {"name": name, "namespace": "default"}, "resource": resource}
    if annotations:
        manifest["metadata"]["annotations"] = annotations
    if inference is not None:
        manifest["inference"] = inference
    if tuning is not None:
        manifest["tuning"] = tuning
    if inference is None and tuning is None and not name.startswith("neither"):
        manifest["inference"] = {"preset": {"name": "test-validation-static"}}
    return manifest


def preset(name: str = "test-validation-static", **options: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"preset": {"name": name}}
    if options:
        spec["preset"]["presetOptions"] = options
    return spec


def adapter(name: str, image: str = "fake.kaito.com/kaito-image:0.0.1", strength: str | None = None,
            **source: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": {"name": name, **({"image": image} if image else {}), **source}}
    if strength is not None:
        spec["strength"] = strength
    return spec


TUNING: dict[str, Any] = {
    "preset": {"name": "test-validation-static"},
    "method": "lora",
    "input": {"urls": ["http://example.com/data"]},
    "output": {"image": "aimodels.azurecr.io/adapter:1", "imagePushSecret": "push"},
}


def tuning(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(TUNING)
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return spec


def node(name: str, product: str | None, count: str | None, memory_mib: str | None,
         **labels: str) -> dict[str, Any]:
    all_labels = dict(labels)
    for key, value in (("nvidia.com/gpu.product", product), ("nvidia.com/gpu.count", count),
                       ("nvidia.com/gpu.memory", memory_mib)):
        if value is not None:
            all_labels[key] = value
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": all_labels}}


@dataclass
class Case:
    kaito: str  # "TestFunction/case name" in KAITO's test file
    manifest: dict[str, Any]
    errors: list[tuple[str, str]]  # exactly what we return
    contains: str = ""  # KAITO's errContent
    mode: str | None = "nap"  # "nap", "byo" or None (no mode: plain `kaito validate`)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    old: dict[str, Any] | None = None
    differs: str = ""  # the docs/api.md row explaining a deliberate difference

    @property
    def id(self) -> str:
        return self.kaito


NAP_REQUIRED = "instanceType is required when node auto-provisioning is enabled"
BYO_EMPTY = "instanceType must be empty when node auto-provisioning is disabled (BYO scenario)"
SUPPORTED = "Standard_NC6s_v3, Standard_ND96asr_v4, Standard_NV36ads_A10_v5"
A100 = {"gpu": "a100"}
STATIC_BYO = {"instance_type": None, "inference": preset()}

RESOURCE_CREATE = [
    Case("TestResourceSpecValidateCreate/Valid Resource", ws(instance_type="Standard_ND96asr_v4"), []),
    Case("TestResourceSpecValidateCreate/Valid Resource - SKU Capacity == Model Requirement",
         ws(inference=preset("transformers-model"), instance_type="Standard_NC6s_v3"), []),
    Case("TestResourceSpecValidateCreate/Invalid SKU", ws(instance_type="Standard_invalid_sku"),
         [("resource.instanceType", f"Unsupported instance type Standard_invalid_sku. Supported SKUs: {SUPPORTED}")],
         "Unsupported instance"),
    Case("TestResourceSpecValidateCreate/Only Template set",
         ws(inference={"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}), []),
    Case("TestResourceSpecValidateCreate/N-Prefix SKU", ws(instance_type="Standard_Nsku"), []),
    Case("TestResourceSpecValidateCreate/D-Prefix SKU", ws(instance_type="Standard_Dsku"), []),
    Case("TestResourceSpecValidateCreate/Tuning validation with single node", ws(tuning=tuning()), []),
    Case("TestResourceSpecValidateCreate/Tuning validation with multinode", ws(tuning=tuning(), count=2),
         [("resource.count", "Tuning does not currently support multinode configurations. Please set the "
                             "node count to 1")],
         "Tuning does not currently support multinode configurations"),
    Case("TestResourceSpecValidateCreate/Invalid Preset Name", ws(inference=preset("Invalid-Preset-Name")),
         [("inference.preset.name", "Unsupported inference preset name Invalid-Preset-Name; installed "
                                    "presets: phi-2, test-validation-download, test-validation-static, "
                                    "transformers-model")],
         ),
    Case("TestResourceSpecValidateCreate/vLLM + Distributed Inference",
         ws(inference=preset("test-validation-download", modelAccessSecret="hf"), count=4), []),
    Case("TestResourceSpecValidateCreate/Valid single A100 node with sufficient GPU memory",
         ws(labels=A100, **STATIC_BYO), [], mode="byo",
         nodes=[node("node-a100-1", "NVIDIA-A100-SXM4-80GB", "1", "81920", gpu="a100")]),
    Case("TestResourceSpecValidateCreate/Valid multiple H100 nodes with uniform configuration",
         ws(labels={"gpu": "h100"}, count=2, **STATIC_BYO), [], mode="byo",
         nodes=[node(f"node-h100-{i}", "NVIDIA-H100-SXM5-94GB", "2", "96256", gpu="h100") for i in (1, 2)]),
    Case("TestResourceSpecValidateCreate/Invalid - no nodes matching label selector in BYO",
         ws(labels={"gpu": "nonexistent"}, **STATIC_BYO),
         [("resource.labelSelector", "No nodes found matching the specified label selector")],
         "No nodes found matching the specified label selector", mode="byo",
         nodes=[node("node-a100-1", "NVIDIA-A100-SXM4-80GB", "1", "81920", gpu="a100")]),
    *[
        Case(f"TestResourceSpecValidateCreate/Invalid - missing GPU {what} label",
             ws(labels=A100, **STATIC_BYO),
             [("resource.labelSelector", "Failed to get GPU config from nvidia labels on node n1: missing "
                                         "required nvidia.com labels on node n1")],
             "Failed to get GPU config from nvidia labels", mode="byo", nodes=[node("n1", *labels, gpu="a100")])
        for what, labels in (("product", (None, "1", "81920")), ("count", ("A100", None, "81920")),
                             ("memory", ("A100", "1", None)))
    ],
    Case("TestResourceSpecValidateCreate/Invalid - non-uniform GPU products", ws(labels=A100, **STATIC_BYO),
         [("resource.labelSelector", "Non-uniform GPU product: node n2 has NVIDIA-H100 GPUs, but previous node "
                                     "has NVIDIA-A100 GPUs, all nodes must have the same GPU product for "
                                     "homogeneous placement")],
         "Non-uniform GPU product", mode="byo",
         nodes=[node("n1", "NVIDIA-A100", "1", "81920", gpu="a100"),
                node("n2", "NVIDIA-H100", "1", "81920", gpu="a100")]),
    Case("TestResourceSpecValidateCreate/Invalid - insufficient GPU memory for non-distributed model",
         ws(labels={"gpu": "t4"}, instance_type=None, inference=preset("transformers-model")),
         [("resource.instanceType", "Insufficient total GPU memory: Instance type 1 x 1x NVIDIA-T4-16GB (nodes "
                                    "you bring) has a total of 8Gi, but preset transformers-model requires at "
                                    "least 16Gi")],
         "Insufficient total GPU memory", mode="byo",
         nodes=[node("n1", "NVIDIA-T4-16GB", "1", "8192", gpu="t4")]),
    Case("TestResourceSpecValidateCreate/Valid - distributed model on nodes with sufficient combined memory",
         ws(labels={"gpu": "v100"}, count=2, instance_type=None,
            inference=preset("test-validation-download", modelAccessSecret="hf")), [], mode="byo",
         nodes=[node(f"n{i}", "NVIDIA-V100-SXM2-16GB", "1", "16384", gpu="v100") for i in (1, 2)]),
    Case("TestResourceSpecValidateCreate/Invalid - missing labelSelector for BYO mode",
         ws(selector={"matchLabels": {}}, **STATIC_BYO),
         [("resource.labelSelector", "must contain matchLabels or matchExpressions (the labels that select "
                                     "the Workspace's GPU nodes)")],
         mode="byo", differs="an empty labelSelector"),
    Case("TestResourceSpecValidateCreate/Invalid - matchLabels only contains reserved KAITO labels",
         ws(labels={"kaito.sh/workspace": "ws1", "kaito.sh/workspacenamespace": "ns1"}, **STATIC_BYO),
         [("resource.labelSelector.matchLabels", "matchLabels must contain at least one non-reserved label")],
         "matchLabels must contain at least one non-reserved label", mode="byo"),
    Case("TestResourceSpecValidateCreate/Deprecated Model", ws(inference=preset("phi-2")),
         [("inference.preset.name", "Model phi-2 is deprecated and no longer supported")],
         "Model phi-2 is deprecated and no longer supported"),
    Case("TestResourceSpecValidateCreate/Valid TotalSafeTensorFileSize with sufficient memory passes",
         ws(inference=preset("transformers-model"), instance_type="Standard_NV36ads_A10_v5"), []),
    Case("TestWorkspaceValidateNAPFeatureGate/NAP enabled - instanceType required", ws(instance_type=None),
         [("resource.instanceType", NAP_REQUIRED)], NAP_REQUIRED),
    Case("TestWorkspaceValidateNAPFeatureGate/NAP enabled - instanceType provided (valid)", ws(), []),
    Case("TestWorkspaceValidateNAPFeatureGate/NAP disabled - instanceType must be empty",
         ws(labels=A100), [("resource.instanceType", BYO_EMPTY)], BYO_EMPTY, mode="byo",
         nodes=[node("n1", "A100", "1", "81920", gpu="a100")]),
    Case("TestWorkspaceValidateNAPFeatureGate/NAP disabled - instanceType empty (valid)",
         ws(labels=A100, **STATIC_BYO), [], mode="byo", nodes=[node("n1", "A100", "1", "81920", gpu="a100")]),
]

NOT_PLAIN = ("operator \"NotIn\" cannot be converted into the old label selector format; use matchLabels or "
             "'In' matchExpressions with one value")
SELECTORS = [
    Case("LabelSelectorAsMap/matchExpressions In with one value become labels",
         ws(selector={"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100"]}]},
            **STATIC_BYO), [], mode="byo", nodes=[node("n1", "A100", "1", "81920", gpu="a100")]),
    Case("LabelSelectorAsMap/NotIn cannot become labels",
         ws(selector={"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["t4"]}]}),
         [("resource.labelSelector", NOT_PLAIN)], "cannot be converted into the old label selector format"),
    Case("SanitizedMatchLabels/a reserved label beside a real one",
         ws(labels={"apps": "x", "kaito.sh/workspace": "other"}),
         [("resource.labelSelector.matchLabels[kaito.sh/workspace]", "labelSelector contains reserved KAITO "
           "label 'kaito.sh/workspace' (KAITO puts it on its own nodes and ignores it in a selector); remove it")],
         differs="reserved selector labels"),
]

INFERENCE_CREATE = [
    Case("TestInferenceSpecValidateCreate/Preset and Template Unset", ws(inference={}),
         [("inference", "Preset or Template must be specified")], "Preset or Template must be specified"),
    Case("TestInferenceSpecValidateCreate/Preset and Template Set",
         ws(inference={**preset(), "template": {"spec": {}}}),
         [("inference", "Preset and Template cannot be set at the same time")],
         "Preset and Template cannot be set at the same time"),
    Case("TestInferenceSpecValidateCreate/Adapeters more than 10",
         ws(inference={**preset(), "adapters": [adapter(f"adapter-{i}") for i in range(11)]}),
         [("inference.adapters", "Number of Adapters exceeds the maximum limit, maximum of 10 allowed")],
         "Number of Adapters exceeds the maximum limit, maximum of 10 allowed"),
    Case("TestInferenceSpecValidateCreate/Valid with adapters/vllm",
         ws(inference={**preset(), "adapters": [adapter("adapter-1"), adapter("adapter-2")]}), []),
    Case("TestInferenceSpecValidateCreate/Valid with adapters/transformers",
         ws(inference={**preset("transformers-model"), "adapters": [adapter("adapter-1", strength="0.5")]}), []),
    Case("TestInferenceSpecValidateCreate/Valid with volume adapters/vllm",
         ws(inference={**preset(), "adapters": [adapter("adapter-1", image="", volumeSource={"emptyDir": {}})]}),
         []),
    Case("TestInferenceSpecValidateCreate/Adapters with strength/vllm",
         ws(inference={**preset(), "adapters": [adapter("adapter-1", strength="0.5")]}),
         [("inference.adapters", "Runtime validation: vLLM does not support adapter strength")],
         "vLLM does not support adapter strength"),
    Case("TestInferenceSpecValidateCreate/Adapters names are duplicated",
         ws(inference={**preset(), "adapters": [adapter("adapter-1"), adapter("adapter-1", "x/y:2")]}),
         [("inference.adapters[1].source.name", "Duplicate adapter source name found: adapter-1")],
         "Duplicate adapter source name found:"),
    Case("TestInferenceSpecValidateCreate/Config specified with valid ConfigMap",
         ws(inference={**preset(), "config": "inference-config"}), []),
    Case("TestInferenceSpecValidateCreate/download model at runtime with access secret",
         ws(inference=preset("test-validation-download", modelAccessSecret="hf-token"),
            instance_type="Standard_ND96asr_v4"), []),
    Case("TestInferenceSpecValidateCreate/download model at runtime but no access secret",
         ws(inference=preset("test-validation-download"), instance_type="Standard_ND96asr_v4"),
         [("inference.preset.presetOptions.modelAccessSecret", "This preset requires authentication and needs "
           "a modelAccessSecret with HF_TOKEN key under presetOptions to download the model")],
         "This preset requires authentication and needs a modelAccessSecret with HF_TOKEN key under "
         "presetOptions to download the model"),
    Case("TestInferenceSpecValidateCreate/Preset with model weights packaged but with access secret",
         ws(inference=preset(modelAccessSecret="hf-token")),
         [("inference.preset.presetOptions.modelAccessSecret", "This preset does not require a "
           "modelAccessSecret with HF_TOKEN key under presetOptions")],
         "This preset does not require a modelAccessSecret with HF_TOKEN key under presetOptions"),
]

STRENGTH_NAN = "Strength value for Adapter 'adapter-1' must be between 0 and 1"
ADAPTERS = [  # TestAdapterSpecValidateCreateorUpdate, run on create (transformers-like: strength allowed)
    Case("TestAdapterSpecValidateCreateorUpdate/Missing Source",
         ws(inference={**preset("transformers-model"), "adapters": [{"strength": "0.5"}]}),
         [("inference.adapters[0].source", "Source is required: an adapter needs a source with a name and an "
                                           "image or a volumeSource")], "Source"),
    Case("TestAdapterSpecValidateCreateorUpdate/Missing Source Name",
         ws(inference={**preset("transformers-model"), "adapters": [adapter("")]}),
         [("inference.adapters[0].source.name", "Name of Adapter field must be specified")],
         "Name of Adapter field must be specified"),
    Case("TestAdapterSpecValidateCreateorUpdate/Invalid Strength, not a number",
         ws(inference={**preset("transformers-model"), "adapters": [adapter("adapter-1", strength="invalid")]}),
         [("inference.adapters[0].strength", "Invalid strength value for Adapter 'adapter-1': "
                                             'strconv.ParseFloat: parsing "invalid": invalid syntax')],
         "Invalid strength value for Adapter 'adapter-1'"),
    Case("TestAdapterSpecValidateCreateorUpdate/Invalid Strength, larger than 1",
         ws(inference={**preset("transformers-model"), "adapters": [adapter("adapter-1", strength="2.0")]}),
         [("inference.adapters[0].strength", STRENGTH_NAN)], "must be between 0 and 1"),
    Case("TestAdapterSpecValidateCreateorUpdate/Invalid Source Name, longer than 253",
         ws(inference={**preset("transformers-model"), "adapters": [adapter("a" * 254)]}),
         [("inference.adapters[0].source.name", f"'{'a' * 254}': must be no more than 63 characters")],
         differs="adapter names"),
    Case("TestAdapterSpecValidateCreateorUpdate/Valid Adapter",
         ws(inference={**preset("transformers-model"), "adapters": [adapter("adapter-1", strength="0.5")]}), []),
    Case("TestAdapterSpecValidateCreateorUpdate/Missing both Image and Volume",
         ws(inference={**preset("transformers-model"), "adapters": [adapter("adapter-1", image="")]}),
         [("inference.adapters[0].source", "Either Image or Volume must be specified for adapter source")],
         "Either Image or Volume must be specified for adapter source"),
    Case("TestAdapterSpecValidateCreateorUpdate/Adapter with unsupported URLs source",
         ws(inference={**preset("transformers-model"),
                       "adapters": [adapter("adapter-1", urls=["https://example.com/a"])]}),
         [("inference.adapters[0].source.urls", "URLs are not supported as adapter source")],
         "URLs are not supported as adapter source"),
    Case("strength NaN (KAITO lets it through)",
         ws(inference={**preset("transformers-model"), "adapters": [adapter("adapter-1", strength="NaN")]}),
         [("inference.adapters[0].strength", STRENGTH_NAN)], differs="adapter strength NaN"),
]

WORKSPACE_CREATE = [
    Case("TestWorkspaceValidateCreate/Neither Inference nor Tuning specified", ws(name="neither"),
         [("inference", "Either Inference or Tuning must be specified, not neither")],
         "Either Inference or Tuning must be specified, not neither"),
    Case("TestWorkspaceValidateCreate/Both Inference and Tuning specified",
         ws(inference=preset(), tuning=tuning()),
         [("tuning", "Either Inference or Tuning must be specified, but not both")],
         "Either Inference or Tuning must be specified, but not both"),
    Case("TestWorkspaceValidateCreate/Only Inference specified", ws(), []),
    Case("TestWorkspaceValidateCreate/Only Tuning specified", ws(tuning=tuning()), []),
    Case("TestWorkspaceValidateCreate/Unsupported node image family annotation",
         ws(annotations={"kaito.sh/node-image-family": "CustomLinux"}),
         [('metadata.annotations["kaito.sh/node-image-family"]',
           'unsupported node image family "CustomLinux", supported values are azurelinux, ubuntu')],
         "kaito.sh/node-image-family"),
    Case("node image family ubuntu", ws(annotations={"kaito.sh/node-image-family": "Ubuntu"}), []),
    Case("node image family azurelinux", ws(annotations={"kaito.sh/node-image-family": "azurelinux"}),
         [('metadata.annotations["kaito.sh/node-image-family"]', "node image family azurelinux is not "
           "implemented by this operator's provisioners (nodes get the provider's default, Ubuntu); remove "
           "the annotation or set ubuntu")], differs="annotations this operator does not implement"),
    Case("TestWorkspaceValidateName/Valid name", ws(name="valid-name"), []),
    Case("TestWorkspaceValidateName/Name with invalid characters", ws(name="invalid_name"),
         [("metadata.name", "'invalid_name': a lowercase RFC 1123 label must consist of lower case alphanumeric "
           "characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or "
           "'123-abc')")]),
    Case("TestWorkspaceValidateName/Name start with invalid character", ws(name="-invalid-name"),
         [("metadata.name", "'-invalid-name': a lowercase RFC 1123 label must consist of lower case "
           "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. "
           "'my-name', or '123-abc')")]),
    *[Case(f"TestWorkspaceValidatePerformanceModeAnnotation/{mode} is valid",
           ws(annotations={"kaito.sh/performance-mode": mode}), [] if mode == "balanced" else [
               ("metadata.annotations[kaito.sh/performance-mode]", f"performance mode {mode} is not implemented "
                "by this operator (it runs vLLM with KAITO's balanced settings); remove the annotation or set "
                "balanced")],
           differs="" if mode == "balanced" else "annotations this operator does not implement")
      for mode in ("balanced", "interactivity", "throughput")],
    Case("TestWorkspaceValidatePerformanceModeAnnotation/unknown value is invalid",
         ws(annotations={"kaito.sh/performance-mode": "fast"}),
         [("metadata.annotations[kaito.sh/performance-mode]", '"fast" is not a valid performance mode; choose '
                                                              "one of: balanced, interactivity, throughput")],
         "is not a valid performance mode"),
    Case("TestWorkspaceValidatePerformanceModeAnnotation/use local weights false is valid",
         ws(annotations={"kaito.sh/use-local-weights": "false"}), []),
    Case("TestWorkspaceValidatePerformanceModeAnnotation/use local weights true is valid",
         ws(annotations={"kaito.sh/use-local-weights": "true"}),
         [("metadata.annotations[kaito.sh/use-local-weights]", "weights on the node (/opt/kaito/models) are not "
           "supported by this operator; weights come from OCI artifacts (kaito.sh/model-artifact) - remove the "
           'annotation or set "false"')], differs="annotations this operator does not implement"),
    Case("TestWorkspaceValidatePerformanceModeAnnotation/use local weights non-boolean is invalid",
         ws(annotations={"kaito.sh/use-local-weights": "yes"}),
         [("metadata.annotations[kaito.sh/use-local-weights]", '"yes" must be "true" or "false"')],
         'must be "true" or "false"'),
]

TUNING_CREATE = [
    Case("TestTuningSpecValidateCreate/All fields valid", ws(tuning=tuning()), []),
    Case("TestTuningSpecValidateCreate/Verify QLoRA Config", ws(tuning=tuning(method="qlora")), []),
    Case("TestTuningSpecValidateCreate/Missing Input", ws(tuning=tuning(input=None)),
         [("tuning.input", "required: exactly one of urls, image or volumeSource")]),
    Case("TestTuningSpecValidateCreate/Missing Output", ws(tuning=tuning(output=None)),
         [("tuning.output", "required: an image (with imagePushSecret) or a volumeSource")]),
    Case("TestTuningSpecValidateCreate/Missing Preset", ws(tuning=tuning(preset=None)),
         [("tuning.preset", "required: the preset to tune")]),
    Case("TestTuningSpecValidateCreate/Invalid Preset", ws(tuning=tuning(preset={"name": "invalid-preset"})),
         [("tuning.preset.name", "Unsupported tuning preset name invalid-preset; installed presets: "
           "phi-2, test-validation-download, test-validation-static, transformers-model")],
         "Unsupported tuning preset name invalid-preset"),
    Case("TestTuningSpecValidateCreate/Invalid Method", ws(tuning=tuning(method="invalid-method")),
         [("tuning.method", "Unsupported tuning method invalid-method; use one of lora, qlora")]),
    Case("TestTuningSpecValidateCreate/Invalid Input Source Casing",
         ws(tuning=tuning(input={"image": "AIMODELS.azurecr.io/DATA:1"})),
         [("tuning.input.image", "Unable to parse input image reference: invalid reference format: repository "
                                 "name (DATA) must be lowercase")], "invalid reference format"),
    Case("TestTuningSpecValidateCreate/Invalid Output Destination Casing",
         ws(tuning=tuning(output={"image": "aimodels.azurecr.io/Adapter:1", "imagePushSecret": "push"})),
         [("tuning.output.image", "Unable to parse output image reference: invalid reference format: "
                                  "repository name (Adapter) must be lowercase")], "invalid reference format"),
]


def source_case(name: str, source: dict[str, Any], errors: list[tuple[str, str]], contains: str = "") -> Case:
    return Case(f"TestDataSourceValidateCreate/{name}", ws(tuning=tuning(input=source)), errors, contains)


def url_error(url: str, kaito: str, detail: str) -> list[tuple[str, str]]:
    return [("tuning.input.urls[0]", f"data source URL must not target a {kaito}: {url!r} {detail}")]


EXACTLY_ONE = "Exactly one of URLs, Volume, or Image must be specified"
DATA = [
    source_case("URLs specified only", {"urls": ["http://example.com/data"]}, []),
    source_case("Unsupported URL scheme", {"urls": ["ftp://example.com/data"]},
                [("tuning.input.urls[0]", "data source URL must use HTTP or HTTPS: 'ftp://example.com/data'")],
                "must use HTTP or HTTPS"),
    *[source_case(name, {"urls": [url]},
                  url_error(url, "loopback, private, or link-local address",
                            f"points at a non-public address ({address}); use a public URL"),
                  "loopback, private, or link-local")
      for name, url, address in (("Loopback URL", "http://127.0.0.1/data", "127.0.0.1"),
                                 ("Private URL", "http://10.0.0.1/data", "10.0.0.1"),
                                 ("Link-local URL", "http://169.254.169.254/latest/meta-data", "169.254.169.254"),
                                 ("IPv6 loopback URL", "http://[::1]/data", "::1"))],
    source_case("Metadata hostname URL", {"urls": ["http://metadata.google.internal/computeMetadata/v1"]},
                url_error("http://metadata.google.internal/computeMetadata/v1", "local or metadata endpoint",
                          "points at a local, cluster-internal or metadata host (metadata.google.internal); use a "
                          "public URL"), "local or metadata endpoint"),
    source_case("Volume specified only", {"volumeSource": {"emptyDir": {}}}, []),
    source_case("Image specified only", {"image": "aimodels.azurecr.io/data-image:latest"}, []),
    source_case("Image without URL Specified", {"image": "data-image:latest", "imagePullSecrets": ["s"]}, []),
    source_case("Image without Tag Specified", {"image": "aimodels.azurecr.io/data-image"}, []),
    source_case("Invalid image", {"image": "!ValidImage", "imagePullSecrets": ["s"]},
                [("tuning.input.image", "Unable to parse input image reference: invalid reference format: "
                                        "repository name (library/!ValidImage) must be lowercase")],
                "invalid reference format"),
    source_case("None specified", {}, [("tuning.input", f"{EXACTLY_ONE} (none is set)")], EXACTLY_ONE),
    source_case("URLs and Volume specified", {"urls": ["http://example.com/data"], "volumeSource": {}},
                [("tuning.input", f"{EXACTLY_ONE} (got urls, volumeSource)")], EXACTLY_ONE),
    source_case("All fields specified", {"urls": ["http://example.com/data"], "image": "a.io/d:1"},
                [("tuning.input", f"{EXACTLY_ONE} (got urls, image)")], EXACTLY_ONE),
    *[Case(f"TestDataDestinationValidateCreate/{name}", ws(tuning=tuning(output=out)), errors, contains)
      for name, out, errors, contains in (
          ("No fields specified", {}, [("tuning.output", "Exactly one of Volume or Image must be specified (none "
                                                         "is set)")], "Exactly one of Volume or Image"),
          ("Volume specified only", {"volumeSource": {"emptyDir": {}}}, [], ""),
          ("Image specified only", {"image": "aimodels.azurecr.io/data-image:latest", "imagePushSecret": "s"},
           [], ""),
          ("Image without URL Specified", {"image": "data-image:latest", "imagePushSecret": "s"}, [], ""),
          ("Image without Tag Specified", {"image": "aimodels.azurecr.io/data-image", "imagePushSecret": "s"},
           [], ""),
          ("Invalid image", {"image": "!ValidImage", "imagePushSecret": "s"},
           [("tuning.output.image", "Unable to parse output image reference: invalid reference format: "
                                    "repository name (library/!ValidImage) must be lowercase")],
           "invalid reference format"),
          ("Both fields specified", {"volumeSource": {}, "image": "a.io/d:1", "imagePushSecret": "s"},
           [("tuning.output", "Exactly one of Volume or Image must be specified (got both)")],
           "Exactly one of Volume or Image must be specified"),
          ("image without push secret", {"image": "a.io/d:1"},
           [("tuning.output.imagePushSecret", "Must specify imagePushSecret with destination image (a Secret with "
                                              "push credentials for the registry)")],
           "Must specify imagePushSecret with destination image"),
      )],
]

MIG = {"mode": "mig", "profile": "1g.10gb"}
PARTITION = [  # TestValidatePartition / TestValidateMIGModelFit: KAITO admits these behind feature gates
    Case("TestValidatePartition/mig with valid profile", ws(instance_type=None, labels=A100) | {},
         [("resource.partition", "GPU partitioning (mig) is not supported by this operator: the planner has no "
           "plan for MIG or accelerator partitions; remove resource.partition to run on whole GPUs")],
         mode="byo", differs="GPU partitions"),
    Case("partition with node auto-provisioning", ws(),
         [("resource.partition", "GPU partitioning is only supported with BYO nodes "
                                 "(disableNodeAutoProvisioning=true)")],
         "GPU partitioning is only supported with BYO nodes"),
    Case("partition for tuning", ws(tuning=tuning()),
         [("resource.partition", "GPU partitioning is not supported for tuning workloads")],
         "GPU partitioning is not supported for tuning workloads"),
]
for _case in PARTITION:
    _case.manifest["resource"]["partition"] = dict(MIG)

ACCESS_MODE = [  # v1alpha1's TestInferenceSpecValidateCreate accessMode cases
    Case("v1alpha1 TestInferenceSpecValidateCreate/Private Access Without Image",
         ws(api="v1alpha1", inference={"preset": {"name": "test-validation-static", "accessMode": "private"}}),
         [("inference.preset.presetOptions.image", "When AccessMode is private, an image must be provided in "
                                                   "PresetOptions")],
         "When AccessMode is private, an image must be provided"),
    Case("v1alpha1 TestInferenceSpecValidateCreate/Private Access With Image",
         ws(api="v1alpha1", inference={"preset": {"name": "test-validation-static", "accessMode": "private",
                                                  "presetOptions": {"image": "r.io/phi:1"}}}), []),
    Case("v1alpha1 TestInferenceSpecValidateCreate/Valid Preset (public)",
         ws(api="v1alpha1", inference={"preset": {"name": "test-validation-static", "accessMode": "public"}}), []),
]


def updated(manifest: dict[str, Any], **resource: Any) -> dict[str, Any]:
    new = copy.deepcopy(manifest)
    for key, value in resource.items():
        if value is None:
            new["resource"].pop(key, None)
        else:
            new["resource"][key] = value
    return new


BASE = ws()
BYO_BASE = ws(instance_type=None)
OLD_07 = ws(instance_type="Standard_NC6s_v3")  # a v0.7 Workspace: instanceType set before BYO mode
TEMPLATE = {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}
UPDATES = [
    Case("TestResourceSpecValidateUpdate/Immutable Count", updated(BASE, count=2),
         [("resource.count", "field is immutable")], "field is immutable", old=BASE),
    Case("TestResourceSpecValidateUpdate/NAP enabled - change instanceType (invalid)",
         updated(BASE, instanceType="Standard_NC6s_v3"),
         [("resource.instanceType", "instanceType cannot be changed once set when node auto-provisioning is "
                                    "enabled")],
         "instanceType cannot be changed once set when node auto-provisioning is enabled", old=BASE),
    Case("TestResourceSpecValidateUpdate/NAP enabled - clear instanceType (invalid)",
         updated(BASE, instanceType=None), [("resource.instanceType", NAP_REQUIRED)], NAP_REQUIRED, old=BASE),
    Case("TestResourceSpecValidateUpdate/NAP enabled - set instanceType initially (valid)", BASE, [],
         old=BYO_BASE),
    Case("TestResourceSpecValidateUpdate/NAP enabled - keep same instanceType (valid)", BASE, [], old=BASE),
    Case("TestResourceSpecValidateUpdate/NAP disabled - clear instanceType (valid upgrade path)", BYO_BASE, [],
         mode="byo", old=OLD_07),
    Case("TestResourceSpecValidateUpdate/NAP disabled - keep instanceType set (backward compatibility)",
         OLD_07, [], mode="byo", old=OLD_07),
    Case("TestResourceSpecValidateUpdate/NAP disabled - change to different instanceType (invalid)", BASE,
         [("resource.instanceType", "instanceType cannot be changed once set")],
         "instanceType cannot be changed once set", mode="byo", old=OLD_07),
    Case("TestResourceSpecValidateUpdate/NAP disabled - instanceType already empty (valid)", BYO_BASE, [],
         mode="byo", old=BYO_BASE),
    Case("NAP disabled - instanceType set when it was empty", BASE, [("resource.instanceType", BYO_EMPTY)],
         BYO_EMPTY, mode="byo", old=BYO_BASE),
    Case("TestResourceSpecValidateUpdate/partition is immutable", BASE,
         [("resource.partition", "field is immutable")], "field is immutable",
         old=ws() | {"resource": {**ws()["resource"], "partition": {"mode": "accelerator", "count": 2}}}),
    Case("TestResourceSpecValidateUpdate/Immutable LabelSelector",
         updated(BASE, labelSelector={"matchLabels": {"apps": "other"}}),
         [("resource.labelSelector", "field is immutable")], "field is immutable", old=BASE),
    Case("labelSelector: the same labels written as an In expression",
         updated(BASE, labelSelector={"matchExpressions": [{"key": "apps", "operator": "In", "values": ["test"]}]}),
         [], old=BASE),
    Case("labelSelector: an expression with no plain-label form",
         updated(BASE, labelSelector={"matchExpressions": [{"key": "apps", "operator": "Exists"}]}),
         [("resource.labelSelector", "Only allow matchLabels or 'IN' matchExpression")],
         "Only allow matchLabels or 'IN' matchExpression", old=BASE),
    Case("TestResourceSpecValidateUpdate/Valid Update with all fields unchanged", BASE, [], old=BASE),
    Case("TestInferenceSpecValidateUpdate/Preset Immutable", ws(inference=preset("transformers-model")),
         [("inference.preset", "field is immutable")], "field is immutable", old=BASE),
    Case("presetOptions are part of the preset", ws(inference=preset(modelAccessSecret="s")),
         [("inference.preset", "field is immutable")], "field is immutable", old=BASE),
    Case("TestInferenceSpecValidateUpdate/Template Unset", ws(inference={}),
         [("inference.template", "field cannot be unset/set if it was set/unset")],
         "field cannot be unset/set if it was set/unset", old=ws(inference=TEMPLATE)),
    Case("TestInferenceSpecValidateUpdate/Template Set", ws(inference=TEMPLATE),
         [("inference.template", "field cannot be unset/set if it was set/unset")],
         "field cannot be unset/set if it was set/unset", old=ws(inference={})),
    Case("TestInferenceSpecValidateUpdate/Template Set (with duplicate adapters)",
         ws(inference={**TEMPLATE, "adapters": [adapter("Adapter-1"), adapter("Adapter-1", "x/y:6")]}),
         [("inference.template", "field cannot be unset/set if it was set/unset"),
          ("inference.adapters[0].source.name", "'Adapter-1': a lowercase RFC 1123 label must consist of lower "
           "case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. "
           "'my-name', or '123-abc')"),
          ("inference.adapters[1].source.name", "'Adapter-1': a lowercase RFC 1123 label must consist of lower "
           "case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. "
           "'my-name', or '123-abc')"),
          ("inference.adapters[1].source.name", "Duplicate adapter source name found: Adapter-1")],
         "field cannot be unset/set if it was set/unset", old=ws(inference={}), differs="adapter names"),
    Case("TestInferenceSpecValidateUpdate/Valid Update", ws(inference=TEMPLATE), [], old=ws(inference=TEMPLATE)),
    Case("adapters are checked on update with KAITO's messages",
         ws(inference={**preset(), "adapters": [adapter("adapter-1", strength="7")]}),
         [("inference.adapters[0].strength", STRENGTH_NAN)], "must be between 0 and 1", old=BASE),
    Case("TestWorkspaceValidateUpdate/Inference toggled on", ws(name="neither-x"),
         [("inference", "Inference field cannot be toggled once set")], old=BASE),
    Case("TestWorkspaceValidateUpdate/Inference toggled off", BASE,
         [("inference", "Inference field cannot be toggled once set")], old=ws(name="neither-x")),
    Case("TestWorkspaceValidateUpdate/Tuning toggled on", ws(tuning=tuning()),
         [("inference", "Inference field cannot be toggled once set"),
          ("tuning", "Tuning field cannot be toggled once set")], old=BASE),
    Case("TestWorkspaceValidateUpdate/No toggling", BASE, [], old=BASE),
    Case("TestWorkspaceValidateUpdate/Upgrade scenario - v0.7 workspace with instanceType when disableNAP=true",
         BYO_BASE, [], mode="byo", old=OLD_07),
    Case("TestTuningSpecValidateUpdate/No changes", ws(tuning=tuning()), [], old=ws(tuning=tuning())),
    Case("TestTuningSpecValidateUpdate/Preset changed", ws(tuning=tuning(preset={"name": "transformers-model"})),
         [("tuning.preset", "Preset cannot be changed")], "Preset cannot be changed", old=ws(tuning=tuning())),
    Case("TestTuningSpecValidateUpdate/Method changed", ws(tuning=tuning(method="qlora")),
         [("tuning.method", "Method cannot be changed")], "Method cannot be changed", old=ws(tuning=tuning())),
    Case("TestDataSourceValidateUpdate/No changes",
         ws(tuning=tuning(input={"urls": ["http://example.com/2", "http://example.com/1"]})), [],
         old=ws(tuning=tuning(input={"urls": ["http://example.com/1", "http://example.com/2"]}))),
    Case("TestDataSourceValidateUpdate/Name changed",
         ws(tuning=tuning(input={"name": "new-dataset", "urls": ["http://example.com/1"]})),
         [("tuning.input.name", "During tuning Name field cannot be changed once set")], "Name",
         old=ws(tuning=tuning(input={"name": "original-dataset", "urls": ["http://example.com/1"]}))),
    Case("TestDataSourceValidateUpdate/Invalid image", ws(tuning=tuning(input={"image": "!ValidImage"})),
         [("tuning.input.image", "Unable to parse input image reference: invalid reference format: repository "
                                 "name (library/!ValidImage) must be lowercase")],
         "invalid reference format", old=ws(tuning=tuning())),
    Case("TestDataDestinationValidateUpdate/No changes", ws(tuning=tuning()), [], old=ws(tuning=tuning())),
    Case("TestDataDestinationValidateUpdate/Invalid image",
         ws(tuning=tuning(output={"image": "!ValidImage", "imagePushSecret": "s"})),
         [("tuning.output.image", "Unable to parse output image reference: invalid reference format: repository "
                                  "name (library/!ValidImage) must be lowercase")],
         "invalid reference format", old=ws(tuning=tuning())),
    Case("create rules are not re-applied to a stored object: a deprecated preset can still be edited",
         ws(inference={**preset("phi-2"), "config": "new-config"}), [], old=ws(inference=preset("phi-2"))),
    Case("an annotation changed on update is checked", ws(annotations={"kaito.sh/performance-mode": "fast"}),
         [("metadata.annotations[kaito.sh/performance-mode]", '"fast" is not a valid performance mode; choose '
                                                              "one of: balanced, interactivity, throughput")],
         old=BASE, differs="annotations on update"),
]

CASES = RESOURCE_CREATE + SELECTORS + INFERENCE_CREATE + ADAPTERS + WORKSPACE_CREATE + TUNING_CREATE + DATA \
    + ACCESS_MODE + PARTITION + UPDATES


def run(case: Case, registry: Registry) -> list[tuple[str, str]]:
    new = Workspace.model_validate(case.manifest)
    old = Workspace.model_validate(case.old) if case.old is not None else None
    kwargs: dict[str, Any] = {}
    if case.mode == "nap":
        kwargs["provisioner"] = "azure"
    elif case.mode == "byo":
        kwargs["nodes"] = case.nodes
    return [(p.path, p.message) for p in errors_only(validate_workspace(new, registry, old=old, **kwargs))]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kaito_case(case: Case, kaito_registry: Registry) -> None:
    errors = run(case, kaito_registry)
    assert errors == case.errors
    if case.contains:
        assert any(case.contains in message or case.contains in path for path, message in errors)


def test_every_difference_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    section = doc.split("### Stricter than KAITO, on purpose", 1)[1].split("\n## ", 1)[0]
    for case in CASES:
        if case.differs:
            assert f"| {case.differs} |" in section, f"{case.kaito}: docs/api.md lacks the row {case.differs!r}"


def test_a_create_case_stored_and_updated_unchanged_gets_only_update_rules(kaito_registry: Registry) -> None:
    """KAITO runs only its update rules on UPDATE: an object stored as it is updates cleanly unless an
    update rule (adapters, images, the mode's instanceType rule) objects to what it holds."""
    update_only_paths = ("inference.adapters", "tuning.input", "tuning.output", "metadata.name",
                         "resource.partition",
                         "resource.instanceType", "resource.labelSelector")
    for case in CASES:
        if case.old is not None:
            continue
        stored = Case(case.kaito, case.manifest, [], mode=case.mode, nodes=case.nodes, old=case.manifest)
        errors = run(stored, kaito_registry)
        assert all(path.startswith(update_only_paths) for path, _ in errors), (case.kaito, errors)


def test_transformers_multinode_rule_applies_once_the_runtime_exists(kaito_registry: Registry) -> None:
    """KAITO's Transformers rule, with a runtime of that name registered (the tuning issue adds it)."""
    class Transformers(OtherRuntime):
        name = "transformers"

    class Plugin:
        @hookimpl
        def kaito_register_runtimes(self, register: Any) -> None:
            register(Transformers())

    reg = Registry()
    reg.register(PresetPlugin(make_preset("big", total_gpu_memory=48 * GiB, distributed_inference=True,
                                          runtimes=("vllm", "transformers"))), distribution="p")
    reg.register(ProvisionerPlugin(AzureLike()), distribution="azure-like")  # type: ignore[arg-type]
    reg.register(RuntimePlugin(), distribution="vllm-like")
    reg.register(Plugin(), distribution="transformers")
    manifest = ws(inference=preset("big"), count=2, annotations={"kaito.sh/runtime": "transformers"})
    case = Case("TestResourceSpecValidateCreate/transformers + distributed inference", manifest,
                [("inference", "Multi-node distributed inference is not supported with Huggingface Transformers "
                               "runtime")])
    assert run(case, reg) == case.errors
    manifest["metadata"]["annotations"] = {"kaito.sh/runtime": "vllm"}
    assert run(Case("vllm", manifest, []), reg) == []


def test_the_access_mode_is_kept_through_conversion() -> None:
    manifest = ws(api="v1alpha1", inference={"preset": {"name": "x", "accessMode": "private"}})
    stored = Workspace.model_validate(manifest)
    assert stored.inference is not None and stored.inference.preset is not None
    assert stored.inference.preset.access_mode == "private"
    assert json.loads(json.dumps(stored.to_manifest("v1alpha1")))["inference"]["preset"]["accessMode"] == "private"
