"""The model directory ``kaito serve`` is started with, without copying weights on every run.

Where the weights come from, in order:

1. the Workspace annotation ``kaito.sh/model-artifact: REF`` — a registry reference
   (``host/repo:tag`` or ``@sha256:...``; pulled, verified, into the pull cache ``$KAITO_HOME/blobs``
   and hardlinked from there into the run's model directory) or an OCI layout reference
   (``oci:PATH:TAG``, read where it is);
2. the embedded OCI layout store (``default_store_path()``, ``$KAITO_HOME/store``) under the tag
   ``<preset>-<format>-<quantization>``; packed there on first use from the preset's local source
   (e.g. a model shipped in a PyPI package), with a progress bar.

For a layout, the run's model directory (``$KAITO_HOME/runs/<name>/model``) holds one symbolic link
per file, named by the layer's title and pointing at the content-addressed blob: nothing is copied.
Every blob is checked against its digest before it is served (``kaito_core.artifacts.verify``: hashed
once, then trusted while its size, mtime and inode are unchanged, so start-up stays a ``stat``); a
corrupted blob is removed from the store and the run refused, naming the file. The next run packs
the store's weights again from the preset's local source, when it has one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kaito_core.api.names import ARTIFACT_ANNOTATION
from kaito_core.local.errors import LocalRunError

if TYPE_CHECKING:
    from kaito_core.artifacts.layout import OciLayout
    from kaito_core.artifacts.reference import Reference
    from kaito_core.local.prepare import Prepared
    from kaito_core.plugins import Preset, WeightFormat

RUN_WEIGHTS_SUBDIR = "model"  # a run's weights: $KAITO_HOME/runs/<name>/model


class MissingBlob(LocalRunError):
    """A manifest in the layout names a blob that is not there (or not whole)."""


@dataclass(frozen=True)
class Weights:
    files: dict[str, Path]  # file name in the model directory -> blob path
    origin: str  # the reference they were read from, for messages


def _format_of(prepared: Prepared) -> WeightFormat:
    plan = prepared.plan
    fmt = prepared.preset.format_for(plan.weights_format, plan.quantization)
    if fmt is None:
        raise LocalRunError(
            f"preset {prepared.preset.name} has no {plan.weights_format} {plan.quantization} weights, "
            "which the plan chose; the preset plugin is inconsistent"
        )
    return fmt


def read_layout(layout: OciLayout, tag: str | None, digest: str | None, where: str) -> Weights | None:
    """The files of the manifest a tag (or digest) names in an OCI layout; None when it is not there.

    Raises LocalRunError when the manifest is there but a blob is missing or has the wrong size.
    """
    from kaito_core.artifacts import mediatypes
    from kaito_core.artifacts.errors import ArtifactError
    from kaito_core.artifacts.manifest import parse_manifest

    if not layout.exists():
        return None
    try:
        descriptor = layout.resolve(tag, digest)
    except ArtifactError:
        return None
    try:
        artifact = parse_manifest(
            layout.read_blob(descriptor["digest"], "manifest"),
            descriptor["digest"],
            descriptor.get("mediaType", mediatypes.OCI_MANIFEST),
            where,
        )
    except ArtifactError as exc:
        raise LocalRunError(str(exc)) from exc
    if artifact.has_archives:  # its files are inside tar layers: there is no blob to link each name to
        raise LocalRunError(
            f"{where} is a container image or holds directory layers; `kaito run` serves weights from a "
            "layout file by file: pack them with `kaito model pack`, or `kaito model pull` it into a "
            "directory"
        )
    from kaito_core.artifacts.verify import WeightsCorrupted, verify_blob

    files: dict[str, Path] = {}
    for entry in artifact.files:
        if not layout.has_blob(entry.digest, entry.size):
            raise MissingBlob(
                f"{where}: the blob of {entry.name} ({entry.digest}) is missing or truncated in "
                f"{layout.root}; pack or pull the weights again"
            )
        blob = layout.blob_path(entry.digest)
        try:
            verify_blob(blob, entry.digest, entry.size, entry.name)
        except WeightsCorrupted as exc:
            raise LocalRunError(f"{where}: {exc}") from exc
        files[entry.name] = blob
    return Weights(files=files, origin=where)


def _from_annotation(ref_text: str, model_dir: Path | None, progress: bool) -> Weights:
    from kaito_core.artifacts.errors import ArtifactError
    from kaito_core.artifacts.layout import OciLayout
    from kaito_core.artifacts.reference import Reference

    try:
        ref = Reference.parse(ref_text)
    except ArtifactError as exc:
        raise LocalRunError(f"metadata.annotations[{ARTIFACT_ANNOTATION}]: {exc}") from exc
    if ref.layout is not None:
        layout = OciLayout(ref.layout)
        found = read_layout(layout, ref.tag, ref.digest, str(ref))
        if found is None:
            missing = f"has no {ref.target}" if layout.exists() else "does not exist"
            raise LocalRunError(
                f"weights not found: the {ARTIFACT_ANNOTATION} annotation names {ref}, and the OCI layout "
                f"{ref.layout} {missing}; pack them there with `kaito model pack` or fix the annotation"
            )
        return found
    if model_dir is None:
        raise LocalRunError(f"{ref} is in a registry: it is pulled into a run's model directory")
    return _pull(ref, model_dir, progress)


def _pull(ref: Reference, model_dir: Path, progress: bool) -> Weights:
    """Pull a registry artifact into the model directory: files are hardlinked from the verified pull
    cache ($KAITO_HOME/blobs), so a second run of the same digest moves and copies nothing."""
    from kaito_core.artifacts import pull
    from kaito_core.artifacts.errors import ArtifactError

    try:
        result = pull(str(ref), model_dir, progress=progress)
    except ArtifactError as exc:
        raise LocalRunError(
            f"weights not found: could not pull {ref} (the {ARTIFACT_ANNOTATION} annotation): {exc}"
        ) from exc
    return Weights(files={str(path.relative_to(model_dir)): path for path in result.files}, origin=str(ref))


def _from_store(prepared: Prepared, progress: bool) -> Weights:
    from kaito_core.artifacts import default_store_path, store_tag
    from kaito_core.artifacts.layout import OciLayout

    fmt = _format_of(prepared)
    store = default_store_path()
    tag = store_tag(prepared.preset.name, fmt.format, fmt.quantization)
    where = f"oci:{store}:{tag}"
    try:
        found = read_layout(OciLayout(store), tag, None, where)
    except MissingBlob:
        if prepared.preset.local_files is None or prepared.preset.local_files(fmt) is None:
            raise
        found = None  # dropped as corrupt (or lost): packed again below from the preset's source
    if found is not None:
        return found
    source = prepared.preset.local_files(fmt) if prepared.preset.local_files is not None else None
    if source is None:
        raise LocalRunError(
            f"weights not found for {prepared.preset.name} ({fmt.format} {fmt.quantization}); looked in: "
            f"the local store {where} (no such tag), the preset's local source (it has none on this "
            f"machine), and the Workspace annotation {ARTIFACT_ANNOTATION} (not set). Put the files in "
            f"the store with `kaito model push DIR {where}`, or set "
            f"metadata.annotations[{ARTIFACT_ANNOTATION}] to a registry reference"
        )
    _pack(prepared.preset, fmt, source, where, progress)
    found = read_layout(OciLayout(store), tag, None, where)
    if found is None:
        raise LocalRunError(f"packed {prepared.preset.name} into {where}, but the store lacks the tag")
    return found


def _pack(preset: Preset, fmt: WeightFormat, source: Path, where: str, progress: bool) -> None:
    from kaito_core.artifacts import pack_preset
    from kaito_core.artifacts.errors import ArtifactError

    if progress:
        click.echo(f"kaito: first use of {preset.name}: packing {source} into {where}", err=True)
    try:
        pack_preset(preset, format=fmt.format, quantization=fmt.quantization, progress=progress)
    except ArtifactError as exc:
        raise LocalRunError(f"could not pack {preset.name} from {source} into {where}: {exc}") from exc


def locate(prepared: Prepared, progress: bool = True, model_dir: Path | None = None) -> Weights:
    """The weights of the plan: packed into the local store first when needed, or pulled from a
    registry into ``model_dir``."""
    ref_text = prepared.workspace.annotations.get(ARTIFACT_ANNOTATION) or prepared.plan.artifact
    if ref_text:
        return _from_annotation(ref_text, model_dir, progress)
    return _from_store(prepared, progress)


def link_model_dir(weights: Weights, directory: Path) -> Path:
    """A directory of symbolic links named like the files, pointing at the blobs."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, blob in weights.files.items():
        link = directory / name
        if blob.parent == directory or link == blob:
            continue  # pulled into this directory already
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.tmp{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(blob.resolve())
        os.replace(tmp, link)
    return directory


def model_path_for(prepared: Prepared, run_dir: Path, progress: bool = True) -> Path:
    """What ``kaito serve --model`` gets: the GGUF file itself for a single-file GGUF model, else the
    model directory (safetensors shards with their configs)."""
    weights = locate(prepared, progress, run_dir / RUN_WEIGHTS_SUBDIR)
    directory = link_model_dir(weights, run_dir / RUN_WEIGHTS_SUBDIR)
    ggufs = [name for name in weights.files if name.endswith(".gguf")]
    if prepared.plan.weights_format == "gguf" and len(ggufs) == 1:
        return directory / ggufs[0]
    return directory
