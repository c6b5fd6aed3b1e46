"""``kaito model pack``: a preset's upstream files (when on this machine) -> an artifact."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kaito_core.artifacts.auth import Credentials
from kaito_core.artifacts.errors import ArtifactError
from kaito_core.artifacts.paths import store_reference
from kaito_core.artifacts.pusher import push
from kaito_core.plugins import Preset, WeightFormat


@dataclass(frozen=True)
class PackResult:
    reference: str
    digest: str
    format: str
    quantization: str
    files: tuple[str, ...]


def choose_format(preset: Preset, fmt: str | None, quantization: str | None) -> WeightFormat:
    candidates = [
        f
        for f in preset.formats
        if (fmt is None or f.format == fmt)
        and (quantization is None or f.quantization.lower() == quantization.lower())
    ]
    if not candidates:
        known = ", ".join(f"{f.format}/{f.quantization}" for f in preset.formats) or "none"
        raise ArtifactError(
            f"preset {preset.name} has no format {fmt or '*'}/{quantization or '*'} (it has: {known}); "
            "pass --format and --quantization from that list"
        )
    if fmt is None and quantization is None and preset.local_files is not None:
        for candidate in candidates:  # prefer one that is on this machine
            if preset.local_files(candidate) is not None:
                return candidate
    return candidates[0]


def pack_preset(
    preset: Preset | str,
    *,
    push_ref: str | None = None,
    format: str | None = None,
    quantization: str | None = None,
    store: Path | None = None,
    credentials: Credentials | tuple[str, str] | None = None,
    registry_configs: Sequence[str | Path] = (),
    plain_http: bool = False,
    progress: bool = True,
    cache_dir: Path | None = None,
    source_dir: Path | None = None,
) -> PackResult:
    """Build the artifact of one preset format from its local upstream files (``source_dir``: a directory
    holding them, e.g. downloaded from the Hub; else the preset's ``local_files``), check them against the
    preset's sizes and sha256, and push it to ``push_ref`` or into the embedded store. ``preset`` may be a
    name, looked up in the installed plugins."""
    if isinstance(preset, str):
        from kaito_core.plugins import PluginError, default_registry

        try:
            preset = default_registry().preset(preset)
        except PluginError as exc:
            raise ArtifactError(str(exc)) from None
    weight_format = choose_format(preset, format, quantization)
    source = source_dir
    if source is None and preset.local_files is not None:
        source = preset.local_files(weight_format)
    if source is None:
        raise ArtifactError(
            f"the files of preset {preset.name} ({weight_format.format}/{weight_format.quantization}) "
            "are not available on this machine; download them with --from-hf, "
            "or use `kaito model push DIR REF`"
        )
    source = Path(source)
    if source.is_file():
        source = source.parent
    names = [f.name for f in weight_format.files]
    for expected in weight_format.files:
        path = source / expected.name
        if not path.is_file():
            raise ArtifactError(f"preset {preset.name}: {path} is missing; the local files are incomplete")
        if path.stat().st_size != expected.size:
            raise ArtifactError(
                f"preset {preset.name}: {path} has {path.stat().st_size} bytes, the preset says "
                f"{expected.size}; the local file is not the published one"
            )
    ref = push_ref or store_reference(preset.name, weight_format.format, weight_format.quantization, store)
    with tempfile.TemporaryDirectory(prefix="kaito-pack-") as staging:
        # Stage only the preset's files (hardlinks or symlinks, no copy) so nothing else in the source
        # directory ends up in the artifact.
        stage = Path(staging)
        for name in names:
            target = stage / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to((source / name).resolve())
        digest = push(
            stage,
            ref,
            preset=preset,
            format=weight_format.format,
            quantization=weight_format.quantization,
            credentials=credentials,
            registry_configs=registry_configs,
            plain_http=plain_http,
            progress=progress,
            cache_dir=cache_dir,
            expected=_expected_digests(weight_format),
        )
    return PackResult(
        reference=ref,
        digest=digest,
        format=weight_format.format,
        quantization=weight_format.quantization,
        files=tuple(names),
    )


def _expected_digests(weight_format: WeightFormat) -> dict[str, str]:
    return {f.name: f"sha256:{f.sha256}" for f in weight_format.files if f.sha256}
