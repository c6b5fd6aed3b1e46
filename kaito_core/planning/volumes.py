"""The one volume a pod's weights live on: the pull cache, the weights and the adapters. Pure: no I/O.

The init containers mount it at ``PULL_ROOT`` with ``KAITO_HOME`` there, so the blob cache
(``PULL_ROOT/blobs``) and the files pulled out of it (``PULL_ROOT/weights``, ``PULL_ROOT/adapters/<name>``)
share one filesystem: every file is a hard link to its verified blob, never a second copy. The runtime
container mounts the ``weights`` and ``adapters`` sub-paths read-only where the Plan says.

``emptyDir`` (the default) has a ``sizeLimit`` from the preset's disk requirement; ``pvc`` gives each pod
a PersistentVolumeClaim of its own (a StatefulSet's ``volumeClaimTemplates``, made and kept by the
StatefulSet controller, so the operator needs no rights on claims), which outlives the pod: a
restarted pod finds its verified weights and ``kaito model pull`` skips the download.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kaito_core.planning.quantity import parse_quantity
from kaito_core.plugins import GiB, PlanError

VOLUME = "weights"
#: where init containers mount the volume (and KAITO_HOME, so the cache is at PULL_ROOT/blobs)
PULL_ROOT = "/var/lib/kaito"
WEIGHTS_SUBPATH = "weights"
ADAPTERS_SUBPATH = "adapters"
#: the smallest size given a volume (a preset whose disk requirement is unknown or tiny)
MIN_SIZE = 1 * GiB
KINDS = ("emptyDir", "pvc")


@dataclass(frozen=True)
class WeightsVolume:
    """How the operator gives a pod its weights volume (``--weights-volume``)."""

    kind: str = "emptyDir"
    #: PVC only: the StorageClass (empty: the cluster's default)
    storage_class: str = ""
    #: the volume's size as a Kubernetes quantity; empty: the preset's disk requirement
    size: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"--weights-volume: {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.storage_class and self.kind != "pvc":
            raise ValueError("--weights-storage-class needs --weights-volume pvc")
        if self.size:
            try:
                parse_quantity(self.size, "--weights-volume-size")
            except PlanError as exc:
                raise ValueError(str(exc)) from None

    @property
    def persistent(self) -> bool:
        return self.kind == "pvc"


def volume_size(disk_bytes: int, weights_bytes: int, settings: WeightsVolume) -> str:
    """The volume's size: the configured one, else the preset's disk requirement (at least the weights
    and MIN_SIZE), in whole GiB."""
    if settings.size:
        if parse_quantity(settings.size, "--weights-volume-size") < weights_bytes:
            raise PlanError(
                f"--weights-volume-size {settings.size} is smaller than the weights "
                f"({math.ceil(weights_bytes / GiB)}Gi); give a larger size"
            )
        return settings.size
    return f"{math.ceil(max(disk_bytes, weights_bytes, MIN_SIZE) / GiB)}Gi"


def pod_volume(size: str, settings: WeightsVolume) -> dict[str, Any] | None:
    """The pod-level volume; None for a PVC (it comes from the StatefulSet's claim template)."""
    if settings.persistent:
        return None
    return {"name": VOLUME, "emptyDir": {"sizeLimit": size}}


def claim_template(size: str, settings: WeightsVolume) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if settings.storage_class:
        spec["storageClassName"] = settings.storage_class
    return {"metadata": {"name": VOLUME}, "spec": spec}


def puller_mount() -> dict[str, Any]:
    return {"name": VOLUME, "mountPath": PULL_ROOT}


def weights_mount(model_dir: str) -> dict[str, Any]:
    return {"name": VOLUME, "mountPath": model_dir, "subPath": WEIGHTS_SUBPATH, "readOnly": True}


def adapters_mount(adapter_dir: str) -> dict[str, Any]:
    return {"name": VOLUME, "mountPath": adapter_dir, "subPath": ADAPTERS_SUBPATH, "readOnly": True}


def weights_target() -> str:
    return f"{PULL_ROOT}/{WEIGHTS_SUBPATH}"


def adapter_target(name: str) -> str:
    return f"{PULL_ROOT}/{ADAPTERS_SUBPATH}/{name}"
