"""KAITO's own example Workspaces (tests/data/kaito-examples, copied from KAITO v0.12's examples/): each
validates with the installed presets and plans on its instance type, except the ones listed below, which
are refused with exactly these messages (documented in docs/presets.md, "KAITO's own examples")."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaito_core.api import parse_documents, validate_workspace
from kaito_core.planning import Hardware, plan_workspace
from kaito_core.plugins import default_registry

EXAMPLES = Path(__file__).parent / "data" / "kaito-examples"
FILES = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.yaml"))
PLACEHOLDER_SKUS = {p for p in FILES if p.startswith("inference/arc-examples/")}  # "<your-vm-sku>"

#: file -> (field, exact message) of each refusal
REFUSED = {
    # falcon is listed in KAITO v0.12's supported_models.yaml but registered by no preset there either
    # (KAITO answers "Unsupported tuning preset name falcon-7b" too)
    "fine-tuning/kaito_workspace_tuning_falcon_7b_mental.yaml": (
        "tuning.preset.name", "Unsupported tuning preset name falcon-7b; installed presets: "),
    # the deprecated presetOptions-era field: refused rather than silently ignored
    "fine-tuning/kaito_workspace_tuning_falcon_7b_oai.yaml": (
        "tuning.preset.accessMode", "unknown field 'accessMode'; known fields here: name, presetOptions"),
    # GPU partitioning (MIG / accelerator) is not implemented: refused at admission
    "inference/kaito_workspace_accelerator.yaml": (
        "resource.partition",
        "unknown field 'partition'; known fields here: count, instanceType, labelSelector, preferredNodes"),
}


def test_every_kaito_example_with_a_workspace_is_here() -> None:
    assert len(FILES) == 46


@pytest.mark.parametrize("name", FILES)
def test_kaito_example(name: str) -> None:
    registry = default_registry()
    documents = [d for d in parse_documents((EXAMPLES / name).read_text()) if d.kind == "Workspace"]
    assert documents
    for document in documents:
        problems = list(document.errors)
        if document.workspace is not None:
            problems += validate_workspace(document.workspace, registry, provisioner="aks")
        errors = [(p.path, p.message) for p in problems if p.is_error]
        if name in REFUSED:
            field, message = REFUSED[name]
            assert [(path, text[: len(message)]) for path, text in errors] == [(field, message)]
            continue
        if name in PLACEHOLDER_SKUS:
            assert [path for path, _ in errors] == ["resource.instanceType"]
            assert errors[0][1].startswith("Unsupported instance type <your-vm-sku>. Supported SKUs: ")
            continue
        assert errors == []
        ws = document.workspace
        assert ws is not None
        if ws.inference is None or ws.inference.preset is None:
            continue  # a custom template, or tuning: nothing to plan
        sku = registry.instance_types()[ws.resource.instance_type or ""]
        plan = plan_workspace(ws, registry, Hardware.from_instance_type(sku, ws.resource.count or 1))
        assert plan.preset == ws.inference.preset.name and plan.node_count >= 1
