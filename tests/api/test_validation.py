"""validate_workspace: every rule, its path and (where KAITO has one) KAITO's message; all errors at once."""

from __future__ import annotations

import copy
import socket
from collections.abc import Callable
from typing import Any

import pytest

from kaito_core.api import FieldError, Workspace, errors_only, validate_workspace, warnings_only
from kaito_core.api.urls import url_problem
from kaito_core.plugins import GiB, PluginError, Registry, Requirements

Manifest = Callable[..., dict[str, Any]]


def check(
    manifest: dict[str, Any], plugin_registry: Registry | None = None, **kwargs: Any
) -> list[tuple[str, str]]:
    ws = Workspace.model_validate(manifest)
    return [(e.path, e.message) for e in errors_only(validate_workspace(ws, plugin_registry, **kwargs))]


TUNING: dict[str, Any] = {
    "preset": {"name": "phi-3-mini-4k-instruct"},
    "method": "qlora",
    "input": {"urls": ["https://huggingface.co/datasets/x/y/resolve/main/train.parquet"]},
    "output": {"image": "myregistry.azurecr.io/adapters/x:1", "imagePushSecret": "push"},
}


def tuning(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(TUNING)
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return spec


def test_a_good_workspace_has_no_problems(manifest: Manifest, plugin_registry: Registry) -> None:
    assert check(manifest(), plugin_registry, provisioner="fake") == []
    assert check(manifest(inference=None, tuning=tuning()), plugin_registry, provisioner="fake") == []


@pytest.mark.parametrize("name", ["Phi3", "phi_3", "-phi", "phi-", "a" * 64, "phi.3"])
def test_name_is_a_dns1123_label(manifest: Manifest, name: str) -> None:
    m = manifest()
    m["metadata"]["name"] = name
    [(path, message)] = check(m)
    assert path == "metadata.name" and repr(name) in message


def test_inference_xor_tuning(manifest: Manifest) -> None:
    assert check(manifest(inference=None)) == [
        ("inference", "Either Inference or Tuning must be specified, not neither")
    ]
    assert check(manifest(tuning=tuning())) == [
        ("tuning", "Either Inference or Tuning must be specified, but not both")
    ]


def test_preset_xor_template(manifest: Manifest) -> None:
    assert check(manifest(inference={})) == [("inference", "Preset or Template must be specified")]
    both = {"preset": {"name": "phi-3-mini-4k-instruct"}, "template": {"spec": {"containers": []}}}
    assert check(manifest(inference=both)) == [
        ("inference", "Preset and Template cannot be set at the same time")
    ]
    assert check(manifest(inference={"template": {"spec": {"containers": []}}})) == []


def test_preset_must_be_installed(manifest: Manifest, plugin_registry: Registry) -> None:
    [(path, message)] = check(manifest(inference={"preset": {"name": "llama-9"}}), plugin_registry)
    assert path == "inference.preset.name"
    assert message.startswith("Unsupported inference preset name llama-9; installed presets: big-model, ")
    assert "phi-3-mini-4k-instruct" in message
    [(_, message)] = check(manifest(inference={"preset": {"name": "llama-9"}}), Registry())
    assert "no presets are installed; install a preset plugin such as kaito-presets-phi3" in message
    assert check(manifest(inference={"preset": {"name": "llama-9"}})) == []  # without plugins: not checked
    assert check(manifest(inference={"preset": {"name": "old-model"}}), plugin_registry) == [
        ("inference.preset.name", "Model old-model is deprecated and no longer supported")
    ]


def test_model_access_secret(manifest: Manifest, plugin_registry: Registry) -> None:
    gated = manifest(inference={"preset": {"name": "gated-model"}})
    assert check(gated, plugin_registry) == [
        (
            "inference.preset.presetOptions.modelAccessSecret",
            "This preset requires authentication and needs a modelAccessSecret with HF_TOKEN key under "
            "presetOptions to download the model",
        )
    ]
    gated["inference"]["preset"]["presetOptions"] = {"modelAccessSecret": "hf-token"}
    assert check(gated, plugin_registry) == []
    needless = manifest(
        inference={"preset": {"name": "phi-3-mini-4k-instruct", "presetOptions": {"modelAccessSecret": "hf"}}}
    )
    assert check(needless, plugin_registry) == [
        (
            "inference.preset.presetOptions.modelAccessSecret",
            "This preset does not require a modelAccessSecret with HF_TOKEN key under presetOptions",
        )
    ]


def test_adapters(manifest: Manifest) -> None:
    def adapter(name: str, strength: str | None = None, **source: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {"source": {"name": name, "image": f"r/{name}:1", **source}}
        if strength is not None:
            spec["strength"] = strength
        return spec

    good = [adapter("a", "0"), adapter("b", "1"), adapter("c", "0.5"), adapter("d")]
    assert check(manifest(inference={"preset": {"name": "p"}, "adapters": good})) == []

    bad = [
        adapter("a", "1.5"),
        adapter("b", "strong"),
        adapter("a", "nan"),
        adapter("Bad_Name", "-0.1"),
        adapter("u", urls=["https://e.org/x"]),
        {"source": {"name": "noimage"}},
        {"strength": "0.2"},
    ]
    errors = check(manifest(inference={"preset": {"name": "p"}, "adapters": bad}))
    out_of_range = "Strength value for Adapter 'a' must be between 0 and 1"
    assert ("inference.adapters[0].strength", out_of_range) in errors
    assert (
        "inference.adapters[1].strength",
        "Invalid strength value for Adapter 'b': strconv.ParseFloat: parsing \"strong\": invalid syntax",
    ) in errors
    assert ("inference.adapters[2].strength", out_of_range) in errors
    assert ("inference.adapters[2].source.name", "Duplicate adapter source name found: a") in errors
    assert (
        "inference.adapters[3].strength",
        "Strength value for Adapter 'Bad_Name' must be between 0 and 1",
    ) in errors
    assert any(path == "inference.adapters[3].source.name" and "RFC 1123" in msg for path, msg in errors)
    assert ("inference.adapters[4].source.urls", "URLs are not supported as adapter source") in errors
    no_source = "Either Image or Volume must be specified for adapter source"
    assert ("inference.adapters[5].source", no_source) in errors
    assert any(path == "inference.adapters[6].source" for path, _ in errors)
    assert ("inference.adapters[3].source.image", "Unable to parse input image reference: invalid reference "
            "format: repository name (r/Bad_Name) must be lowercase") in errors
    assert len(errors) == 10

    eleven = [adapter(f"a{i}") for i in range(11)]
    assert check(manifest(inference={"preset": {"name": "p"}, "adapters": eleven})) == [
        ("inference.adapters", "Number of Adapters exceeds the maximum limit, maximum of 10 allowed")
    ]


def test_instance_type_in_the_provisioner_catalog(
    manifest: Manifest, plugin_registry: Registry, preset_factory: Any, make_registry: Any
) -> None:
    m = manifest()
    m["resource"]["instanceType"] = "Standard_XYZ"
    assert check(m, plugin_registry, provisioner="fake") == [
        (
            "resource.instanceType",
            "Unsupported instance type Standard_XYZ. Supported SKUs: Standard_NC12s_v3, "
            "Standard_NC24ads_A100_v4, Standard_NC6s_v3",
        )
    ]
    assert check(m, plugin_registry) == []  # no provisioner configured: any SKU may be a BYO node
    del m["resource"]["instanceType"]
    assert check(m, plugin_registry, provisioner="fake") == [
        ("resource.instanceType", "instanceType is required when node auto-provisioning is enabled")
    ]
    cpu = make_registry(preset_factory("cpu-model", requirements=Requirements(0, 0, 0, GiB)))
    cpu_ws = manifest(inference={"preset": {"name": "cpu-model"}})
    del cpu_ws["resource"]["instanceType"]
    assert check(cpu_ws, cpu, provisioner="fake") == []  # a CPU model needs no provisioned node
    with pytest.raises(PluginError, match="unknown provisioner 'azure'"):
        check(m, plugin_registry, provisioner="azure")


def test_gpu_memory(manifest: Manifest, plugin_registry: Registry) -> None:
    big = manifest(inference={"preset": {"name": "big-model"}})
    assert check(big, plugin_registry) == [
        (
            "resource.instanceType",
            "Insufficient total GPU memory: Instance type Standard_NC6s_v3 has a total of 16Gi, "
            "but preset big-model requires at least 60Gi",
        ),
        (
            "resource.instanceType",
            "Insufficient per GPU memory: Instance type Standard_NC6s_v3 has a per GPU memory of 16Gi, "
            "but preset big-model requires at least 20Gi",
        ),
    ]
    big["resource"]["count"] = 4  # 4 x 16Gi covers the total, but each GPU is still too small
    assert [message.split(":")[0] for _, message in check(big, plugin_registry)] == [
        "Insufficient per GPU memory"
    ]
    big["resource"]["instanceType"] = "Standard_NC24ads_A100_v4"
    big["resource"]["count"] = 1
    assert check(big, plugin_registry) == []


def test_bypass_annotation_turns_gpu_memory_errors_into_warnings(
    manifest: Manifest, plugin_registry: Registry
) -> None:
    big = manifest(inference={"preset": {"name": "big-model"}})
    big["metadata"]["annotations"] = {"kaito.sh/bypass-resource-checks": "True"}
    problems = validate_workspace(Workspace.model_validate(big), plugin_registry)
    assert errors_only(problems) == []
    warnings = warnings_only(problems)
    assert len(warnings) == 2 and all(w.severity == "warning" for w in warnings)
    assert str(warnings[0]).startswith("warning: resource.instanceType: Insufficient total GPU memory")


def test_runtime_annotation(manifest: Manifest, plugin_registry: Registry) -> None:
    m = manifest()
    m["metadata"]["annotations"] = {"kaito.sh/runtime": "vllm"}
    assert check(m, plugin_registry) == []
    m["metadata"]["annotations"] = {"kaito.sh/runtime": "transformers"}
    assert check(m, plugin_registry) == [
        (
            "metadata.annotations[kaito.sh/runtime]",
            "Unsupported runtime transformers; installed runtimes: vllm",
        )
    ]


def test_tuning_rules(manifest: Manifest, plugin_registry: Registry) -> None:
    def errors(**changes: Any) -> list[tuple[str, str]]:
        return check(manifest(inference=None, tuning=tuning(**changes)), plugin_registry)

    assert errors(method="full") == [
        ("tuning.method", "Unsupported tuning method full; use one of lora, qlora")
    ]
    assert errors(method=None) == [("tuning.method", "required: one of lora, qlora")]
    assert errors(preset={"name": "no-tuning"}) == [
        ("tuning.preset.name", "preset no-tuning does not support tuning")
    ]
    assert errors(input={}) == [
        ("tuning.input", "Exactly one of URLs, Volume, or Image must be specified (none is set)")
    ]
    assert errors(input={"urls": ["https://e.org/d"], "image": "r/d:1"}) == [
        ("tuning.input", "Exactly one of URLs, Volume, or Image must be specified (got urls, image)")
    ]
    assert errors(input={"urls": ["https://e.org/ok", "http://169.254.169.254/latest/meta-data"]}) == [
        (
            "tuning.input.urls[1]",
            "data source URL must not target a loopback, private, or link-local address: "
            "'http://169.254.169.254/latest/meta-data' points at a non-public address (169.254.169.254); "
            "use a public URL",
        )
    ]
    assert errors(output={"image": "r/out:1"}) == [
        (
            "tuning.output.imagePushSecret",
            "Must specify imagePushSecret with destination image (a Secret with push credentials for the "
            "registry)",
        )
    ]
    assert errors(output={"volumeSource": {"emptyDir": {}}}) == []
    assert errors(input={"volumeSource": {"persistentVolumeClaim": {"claimName": "data"}}}) == []
    assert errors(output=None) == [
        ("tuning.output", "required: an image (with imagePushSecret) or a volumeSource")
    ]
    m = manifest(inference=None, tuning=tuning())
    m["resource"]["count"] = 2
    assert check(m, plugin_registry) == [
        (
            "resource.count",
            "Tuning does not currently support multinode configurations. Please set the node count to 1",
        )
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://huggingface.co/datasets/x/resolve/main/train.parquet?download=true",
        "http://example.com/data.jsonl",
        "https://8.8.8.8/data",
        "https://[2001:4860:4860::8888]/data",
    ],
)
def test_public_urls_are_allowed(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/data",
        "file:///etc/passwd",
        "gs://bucket/data",
        "http://localhost:8080/x",
        "http://LOCALHOST./x",
        "http://app.localhost/x",
        "http://127.0.0.1/x",
        "http://127.1/x",
        "http://2130706433/x",
        "http://0x7f000001/x",
        "http://0177.0.0.1/x",
        "http://0.0.0.0/x",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://metadata/x",
        "http://100.100.100.200/latest/meta-data",
        "http://10.0.0.8/x",
        "http://172.16.3.4/x",
        "http://192.168.1.1/x",
        "http://[fe80::1]/x",
        "http://kubernetes.default.svc/api",
        "http://minio.storage.svc.cluster.local:9000/x",
        "http://printer.local/x",
        "http://224.0.0.1/x",
        "https://",
        "http://[::1/x",
        "http://example.com:99999/x",
    ],
)
def test_internal_and_non_http_urls_are_rejected(url: str) -> None:
    assert url_problem(url) is not None


def test_url_checks_do_no_dns_lookups(manifest: Manifest, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("validation must not resolve names")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(socket, "gethostbyname", no_dns)
    urls = ["https://huggingface.co/d", "http://internal.example.svc/x", "http://10.1.2.3/x"]
    m = manifest(inference=None, tuning=tuning(input={"urls": urls}))
    assert [path for path, _ in check(m)] == ["tuning.input.urls[1]", "tuning.input.urls[2]"]


# ------------------------------------------------------------------------------ updates


def test_update_immutable_fields(manifest: Manifest) -> None:
    old = Workspace.model_validate(manifest())
    new = manifest()
    new["resource"] = {
        "count": 2,
        "instanceType": "Standard_NC12s_v3",
        "labelSelector": {"matchLabels": {"apps": "other"}},
    }
    new["inference"]["preset"]["name"] = "phi-3-mini-128k-instruct"
    assert check(new, old=old) == [
        ("resource.count", "field is immutable"),
        ("resource.instanceType", "instanceType cannot be changed once set"),
        ("resource.labelSelector", "field is immutable"),
        ("inference.preset", "field is immutable"),
    ]
    unchanged = manifest()
    unchanged["inference"]["config"] = "new-config"  # mutable
    assert check(unchanged, old=old) == []


def test_update_cannot_toggle_inference_or_tuning(manifest: Manifest) -> None:
    old = Workspace.model_validate(manifest())
    assert check(manifest(inference=None, tuning=tuning()), old=old) == [
        ("inference", "Inference field cannot be toggled once set"),
        ("tuning", "Tuning field cannot be toggled once set"),
    ]
    old_tuning = Workspace.model_validate(manifest(inference=None, tuning=tuning()))
    assert check(manifest(inference=None, tuning=tuning(method="lora")), old=old_tuning) == [
        ("tuning.method", "Method cannot be changed")
    ]


def test_every_mistake_is_reported_at_once(manifest: Manifest, plugin_registry: Registry) -> None:
    m = manifest()
    m["metadata"]["name"] = "My_Workspace"
    m["resource"]["instanceType"] = "Standard_Nope"
    m["inference"] = {
        "preset": {"name": "gpt-17"},
        "template": {"spec": {}},
        "adapters": [
            {"source": {"name": "a", "image": "r/a:1"}, "strength": "2"},
            {"source": {"name": "a", "image": "r/a:2"}},
        ],
    }
    problems = validate_workspace(Workspace.model_validate(m), plugin_registry, provisioner="fake")
    assert all(isinstance(p, FieldError) for p in problems)
    assert [p.path for p in problems] == [
        "metadata.name",
        "resource.instanceType",
        "inference",
        "inference.preset.name",
        "inference.adapters[0].strength",
        "inference.adapters[1].source.name",
    ]
