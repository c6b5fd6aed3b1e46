"""Media types of the model artifact: CNCF ModelPack where it has one, OCI otherwise.

ModelPack (github.com/modelpack/model-spec) defines the artifact type, the config and per-file layer
types; kaito uses the ``.raw`` (uncompressed) variants so that each file is one layer whose digest is
the file's own sha256: pulls run per file in parallel, identical files dedupe across models, and a
pulled file can be verified without unpacking anything.
"""

from __future__ import annotations

from pathlib import PurePosixPath

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG = "application/vnd.cncf.model.config.v1+json"
WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
DOC = "application/vnd.cncf.model.doc.v1.raw"
CODE = "application/vnd.cncf.model.code.v1.raw"

TITLE = "org.opencontainers.image.title"
REF_NAME = "org.opencontainers.image.ref.name"
#: Annotations kaito adds to the manifest (reverse-DNS of the project, as the OCI spec asks).
PRESET_ANNOTATION = "sh.kaito.preset"
FORMAT_ANNOTATION = "sh.kaito.format"
QUANTIZATION_ANNOTATION = "sh.kaito.quantization"

#: Container images (KAITO's adapter images: the adapter's files under /data): read by applying their
#: tar layers in order (``kaito_core.artifacts.unpack``), not file by file.
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_IMAGE_CONFIG = "application/vnd.docker.container.image.v1+json"
IMAGE_CONFIGS = frozenset({OCI_IMAGE_CONFIG, DOCKER_IMAGE_CONFIG})
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IMAGE_LAYERS = frozenset({OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_LAYER_GZIP})
#: Layers whose bytes the registry does not hold (Windows base layers): nothing to pull.
FOREIGN_LAYER_MARKERS = ("nondistributable", "foreign")

#: What ``oras push REF DIR`` writes on a directory's layer (oras-go's file store): the layer is a
#: tar+gzip of DIR whose entries all start with DIR's name (the title), ``unpack`` says to extract it,
#: ``digest`` is the sha256 of the uncompressed tar.
ORAS_UNPACK = "io.deis.oras.content.unpack"
ORAS_DIGEST = "io.deis.oras.content.digest"

ACCEPT_MANIFESTS = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST))

_WEIGHT_SUFFIXES = {
    ".gguf",
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".onnx",
    ".ckpt",
    ".h5",
    ".msgpack",
    ".npz",
}
_DOC_SUFFIXES = {".md", ".rst", ".txt", ".pdf"}
_DOC_STEMS = {"readme", "license", "licence", "notice", "copying", "use_policy", "model_card"}
_CODE_SUFFIXES = {".py", ".sh", ".ipynb"}


def layer_media_type(name: str) -> str:
    """The ModelPack layer type of a file, by its name (weights, their configs, docs or code)."""
    path = PurePosixPath(name)
    suffix = path.suffix.lower()
    stem = path.stem.lower()
    if suffix in _WEIGHT_SUFFIXES and not stem.startswith("training_args"):
        return WEIGHT
    if (
        stem in _DOC_STEMS
        or path.name.lower() in _DOC_STEMS
        or (suffix in _DOC_SUFFIXES and stem not in {"merges", "vocab", "added_tokens"})
    ):
        return DOC
    if suffix in _CODE_SUFFIXES:
        return CODE
    # config.json, tokenizer.json, tokenizer.model, generation_config.json, merges.txt, chat templates...
    return WEIGHT_CONFIG
