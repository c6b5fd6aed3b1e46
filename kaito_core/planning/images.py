"""Every container image the operator writes, from one place of configuration. Pure: no I/O.

The project's images carry bare names (``kaito``, ``kaito-runtime-llamacpp-cpu``, ...): the names
``nox -s images`` builds and pushes as ``REGISTRY/NAME:TAG``. A runtime plugin names its image that
way; the pod planner resolves every bare name here into a full reference: an override for that name
(``--image NAME=REF``, ``KAITO_IMAGES``), else ``<image_registry>/<name>:<image_tag>``. A reference
with a registry, a tag or a digest (a Workspace's ``presetOptions.image``) is used as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kaito_core.planning.volumes import WeightsVolume

#: Where the project publishes its images (what `nox -s images -- --push` writes elsewhere).
DEFAULT_IMAGE_REGISTRY = "ghcr.io/kaito-python"
#: The image with the ``kaito`` command: the operator, and the init container that pulls weights.
KAITO_IMAGE = "kaito"


def is_bare_name(image: str) -> bool:
    """A project image name: no registry, no tag, no digest."""
    return bool(image) and not any(c in image for c in "/:@")


def parse_overrides(items: Iterable[str], source: str = "--image") -> dict[str, str]:
    """``NAME=REF`` items (flags, or a comma-separated KAITO_IMAGES) as a mapping; ValueError names the
    item and the fix."""
    overrides: dict[str, str] = {}
    for raw in items:
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            name, sep, ref = item.partition("=")
            if not sep or not is_bare_name(name.strip()) or not ref.strip():
                raise ValueError(
                    f"{source} {item!r}: expected NAME=REF with NAME an image name such as "
                    f"{KAITO_IMAGE} or kaito-runtime-llamacpp-cpu, "
                    f"e.g. {KAITO_IMAGE}=registry.example.com/kaito:1"
                )
            overrides[name.strip()] = ref.strip()
    return overrides


@dataclass(frozen=True)
class ImageSettings:
    """Operator configuration that reaches the manifests: images, where weights come from, their volume."""

    #: registry (and path) of the project's images: ``<image_registry>/<name>:<image_tag>``
    image_registry: str = DEFAULT_IMAGE_REGISTRY
    #: tag of the project's images; empty: this kaito-core's version
    image_tag: str = ""
    #: image name -> full reference, for images kept elsewhere (``kaito=registry.example.com/kaito:1``)
    overrides: Mapping[str, str] = field(default_factory=dict)
    #: where preset artifacts live: the weights reference is ``<prefix>/kaito-<preset>:<tag>``
    registry_prefix: str = ""
    #: the artifact tag; empty means the Plan's quantization, lower-cased (``q4_k_m``, ``bf16``)
    weights_tag: str = ""
    #: pass --plain-http to ``kaito model pull`` (a registry without TLS, e.g. inside the cluster)
    plain_http: bool = False
    #: ``registry`` (the prefix above) or ``hub``: the init container pulls the preset's files from the
    #: Hugging Face Hub itself (``hf://REPO@REVISION``), for a cluster without an artifact registry
    weights_from: str = "registry"
    #: the pod volume the weights are pulled into
    weights_volume: WeightsVolume = field(default_factory=WeightsVolume)

    def resolve(self, image: str) -> str:
        """The full reference of an image the manifests name (bare names resolved, others kept)."""
        if image in self.overrides:
            return self.overrides[image]
        if not is_bare_name(image):
            return image
        return f"{self.image_registry.rstrip('/')}/{image}:{self.tag}"

    @property
    def tag(self) -> str:
        if self.image_tag:
            return self.image_tag
        from kaito_core import __version__

        return str(__version__)

    @property
    def puller_image(self) -> str:
        """The init container that runs ``kaito model pull``."""
        return self.resolve(KAITO_IMAGE)
