"""Rules for a Workspace's metadata: its name, and the ``kaito.sh/*`` annotations KAITO validates.

KAITO accepts ``kaito.sh/performance-mode`` (balanced|interactivity|throughput),
``kaito.sh/use-local-weights`` (true|false) and ``kaito.sh/node-image-family`` (azurelinux|ubuntu),
with the messages below for other values. Where a value KAITO accepts asks for behaviour this operator
does not have, it is refused here with the fix, never accepted and ignored (docs/api.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kaito_core.api.names import RUNTIME_ANNOTATION

if TYPE_CHECKING:
    from kaito_core.plugins import Preset, Registry

PERFORMANCE_MODE = "kaito.sh/performance-mode"
USE_LOCAL_WEIGHTS = "kaito.sh/use-local-weights"
NODE_IMAGE_FAMILY = "kaito.sh/node-image-family"
PERFORMANCE_MODES = ("balanced", "interactivity", "throughput")
NODE_IMAGE_FAMILIES = ("azurelinux", "ubuntu")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

Problems = list[tuple[str, str]]


def dns1123_label_problem(name: str) -> str | None:
    """Why ``name`` is not a DNS-1123 label (Kubernetes' wording), or None."""
    if not name:
        return "required: a lowercase RFC 1123 label such as 'phi-3-mini'"
    if len(name) > 63:
        return f"{name!r}: must be no more than 63 characters"
    if not _DNS1123_LABEL.match(name):
        return (f"{name!r}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or "
                "'123-abc')")
    return None


def annotation_problems(
    annotations: Mapping[str, str],
    old: Mapping[str, str] | None,
    registry: Registry | None,
    preset: Preset | None,
) -> Problems:
    """The annotation rules; on update (``old`` given) only for annotations whose value changed."""

    def changed(key: str) -> bool:
        return key in annotations and (old is None or old.get(key) != annotations[key])

    problems: Problems = []
    if changed(PERFORMANCE_MODE):
        value = annotations[PERFORMANCE_MODE]
        path = f"metadata.annotations[{PERFORMANCE_MODE}]"
        if value not in PERFORMANCE_MODES:
            problems.append((path, f'"{value}" is not a valid performance mode; choose one of: balanced, '
                                   "interactivity, throughput"))
        elif value != "balanced":
            problems.append((path, f"performance mode {value} is not implemented by this operator (it runs "
                                   "vLLM with KAITO's balanced settings); remove the annotation or set "
                                   "balanced"))
    if changed(USE_LOCAL_WEIGHTS):
        value = annotations[USE_LOCAL_WEIGHTS]
        path = f"metadata.annotations[{USE_LOCAL_WEIGHTS}]"
        if value not in ("true", "false"):
            problems.append((path, f'"{value}" must be "true" or "false"'))
        elif value == "true":
            problems.append((path, "weights on the node (/opt/kaito/models) are not supported by this "
                                   "operator; weights come from OCI artifacts (kaito.sh/model-artifact) - "
                                   'remove the annotation or set "false"'))
    if changed(NODE_IMAGE_FAMILY):
        value = annotations[NODE_IMAGE_FAMILY]
        path = f'metadata.annotations["{NODE_IMAGE_FAMILY}"]'
        normalized = value.strip().lower()
        if normalized not in NODE_IMAGE_FAMILIES:
            problems.append((path, f'unsupported node image family "{value}", supported values are '
                                   "azurelinux, ubuntu"))
        elif normalized != "ubuntu":
            problems.append((path, f"node image family {normalized} is not implemented by this operator's "
                                   "provisioners (nodes get the provider's default, Ubuntu); remove the "
                                   "annotation or set ubuntu"))
    if changed(RUNTIME_ANNOTATION) and registry is not None:
        problems += _runtime_problems(annotations[RUNTIME_ANNOTATION], registry, preset)
    return problems


def _runtime_problems(runtime: str, registry: Registry, preset: Preset | None) -> Problems:
    path = f"metadata.annotations[{RUNTIME_ANNOTATION}]"
    runtimes = registry.runtimes()
    if runtime not in runtimes:
        known = ", ".join(sorted(runtimes)) or "none installed"
        return [(path, f"Unsupported runtime {runtime}; installed runtimes: {known}")]
    if preset is not None and runtime not in preset.runtimes:
        return [(path, f"preset {preset.name} does not support runtime {runtime}; "
                       f"it supports: {', '.join(preset.runtimes)}")]
    return []
