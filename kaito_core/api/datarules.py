"""The rules for data a Workspace moves: tuning input and output, and inference adapters, with
KAITO's messages (``DataSource``, ``DataDestination`` and ``AdapterSpec`` in workspace_validation.go).

Each function returns ``(path, message)`` pairs; :mod:`kaito_core.api.validation` makes them errors.
"""

from __future__ import annotations

import math
import re

from kaito_core.api.imageref import image_reference_problem
from kaito_core.api.models import AdapterSpec, DataDestination, DataSource
from kaito_core.api.names import LAYOUT_PREFIX
from kaito_core.api.urls import url_problem

Problems = list[tuple[str, str]]
#: What Go's strconv.ParseFloat reads in base 10 (KAITO parses adapter strengths with it).
_GO_FLOAT = re.compile(r"^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)


def image_problem(path: str, image: str, direction: str) -> Problems:
    """KAITO's ``Unable to parse input|output image reference: ...``; an OCI layout on this machine passes
    (``kaito run`` reads and writes them)."""
    if image.startswith(LAYOUT_PREFIX) and len(image) > len(LAYOUT_PREFIX):
        return []
    problem = image_reference_problem(image)
    return [(path, f"Unable to parse {direction} image reference: {problem}")] if problem else []


def data_source_on_create(path: str, source: DataSource) -> Problems:
    problems: Problems = []
    given = []
    if source.urls:
        given.append("urls")
        for i, url in enumerate(source.urls):
            problem = url_problem(url)
            if problem:
                problems.append((f"{path}.urls[{i}]", problem))
    if source.image:
        given.append("image")
        problems += image_problem(f"{path}.image", source.image, "input")
    if source.volume_source is not None:
        given.append("volumeSource")
    if len(given) != 1:
        told = "none is set" if not given else f"got {', '.join(given)}"
        problems.append((path, f"Exactly one of URLs, Volume, or Image must be specified ({told})"))
    if source.image_pull_secrets and not source.image:
        problems.append((f"{path}.imagePullSecrets", "imagePullSecrets only applies to an image input"))
    return problems


def data_source_on_update(path: str, source: DataSource, old: DataSource | None) -> Problems:
    problems: Problems = []
    if old is not None and old.name != source.name:
        problems.append((f"{path}.name", "During tuning Name field cannot be changed once set"))
    if source.image:
        problems += image_problem(f"{path}.image", source.image, "input")
    return problems


def data_destination_on_create(path: str, destination: DataDestination) -> Problems:
    problems: Problems = []
    if destination.image:
        problems += image_problem(f"{path}.image", destination.image, "output")
        if not destination.image_push_secret:
            problems.append((f"{path}.imagePushSecret", "Must specify imagePushSecret with destination image "
                             "(a Secret with push credentials for the registry)"))
    if bool(destination.image) == (destination.volume_source is not None):
        told = "got both" if destination.image else "none is set"
        problems.append((path, f"Exactly one of Volume or Image must be specified ({told})"))
    return problems


def data_destination_on_update(path: str, destination: DataDestination) -> Problems:
    return image_problem(f"{path}.image", destination.image, "output") if destination.image else []


def adapter_problems(path: str, adapter: AdapterSpec, name_problem: str | None) -> Problems:
    """KAITO's AdapterSpec.validateCreateorUpdate (run here on create too). ``name_problem``: why the
    source name is not a valid name (the caller's DNS rule), or None."""
    source = adapter.source
    if source is None:
        return [(f"{path}.source", "Source is required: an adapter needs a source with a name and an image "
                                   "or a volumeSource")]
    problems: Problems = []
    if source.image:
        problems += image_problem(f"{path}.source.image", source.image, "input")
    if not source.name:
        problems.append((f"{path}.source.name", "Name of Adapter field must be specified"))
    elif name_problem:
        problems.append((f"{path}.source.name", name_problem))
    if not source.image and source.volume_source is None:
        problems.append((f"{path}.source", "Either Image or Volume must be specified for adapter source"))
    if source.urls:
        problems.append((f"{path}.source.urls", "URLs are not supported as adapter source"))
    if adapter.strength is not None:
        name = source.name or ""
        if not _GO_FLOAT.match(adapter.strength):
            problems.append((f"{path}.strength", f"Invalid strength value for Adapter '{name}': "
                             f'strconv.ParseFloat: parsing "{adapter.strength}": invalid syntax'))
        else:
            strength = float(adapter.strength)
            # KAITO lets NaN through (neither < 0 nor > 1); it is no strength, so it is refused here
            if math.isnan(strength) or not 0.0 <= strength <= 1.0:
                problems.append((f"{path}.strength",
                                 f"Strength value for Adapter '{name}' must be between 0 and 1"))
    return problems


def duplicate_adapter_names(path: str, adapters: list[AdapterSpec]) -> Problems:
    seen: set[str] = set()
    problems: Problems = []
    for i, adapter in enumerate(adapters):
        name = adapter.source.name if adapter.source is not None else None
        if not name:
            continue
        if name in seen:
            problems.append((f"{path}[{i}].source.name", f"Duplicate adapter source name found: {name}"))
        seen.add(name)
    return problems
