"""`kaito model push|pull|inspect|pack`: model weights as OCI artifacts (kaito_core.artifacts).

Every registry, store or cache failure ends in one line on stderr and a non-zero exit, never a
traceback: `kaito model pull` is the init container of inference pods, whose log is read by people.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kaito_core.cli.output import OUTPUT_OPTION, emit_data, emit_table, fail

F = TypeVar("F", bound=Callable[..., Any])

PASSWORD_ENV = "KAITO_REGISTRY_PASSWORD"  # noqa: S105 (the variable name, not a password)


def _registry_options(func: F) -> F:
    """Options every command that talks to a registry shares."""
    options = [
        click.option(
            "--registry-config",
            "registry_configs",
            multiple=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Docker config.json / .dockerconfigjson with registry credentials (repeatable; "
            "then DOCKER_CONFIG and ~/.docker/config.json are read).",
        ),
        click.option("--username", "-u", default=None, help="Registry user name (instead of a config file)."),
        click.option(
            "--password-stdin",
            is_flag=True,
            help=f"Read the registry password from stdin (or set {PASSWORD_ENV}); never as an argument.",
        ),
        click.option(
            "--plain-http",
            is_flag=True,
            help="Talk HTTP instead of HTTPS (implied for localhost and 127.0.0.0/8).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _credentials(username: str | None, password_stdin: bool) -> tuple[str, str] | None:
    if username is None:
        if password_stdin:
            fail("--password-stdin needs --username")
        return None
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else os.environ.get(PASSWORD_ENV, "")
    if not password:
        fail(f"--username {username} needs a password: pipe it to --password-stdin or set {PASSWORD_ENV}")
    return username, password


def _errors_as_one_line(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from kaito_core.artifacts import ArtifactError

        try:
            return func(*args, **kwargs)
        except ArtifactError as exc:
            fail(str(exc))
        except OSError as exc:  # a local file problem the artifacts package did not word itself
            where = f" ({exc.filename})" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}; check the paths and free space")
        except KeyboardInterrupt:
            fail("interrupted; run the same command again to resume", code=130)

    return wrapper  # type: ignore[return-value]


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@click.group("model")
def model() -> None:
    """Model weights as OCI artifacts: push, pull (verified, cached, resumable), inspect, pack."""


@model.command("push")
@click.argument("path")
@click.argument("ref")
@click.option(
    "--format", "fmt", default=None, help="Weight format recorded in the config (gguf, safetensors)."
)
@click.option("--quantization", default=None, help="Quantization recorded in the config (Q4_K_M, bf16...).")
@click.option(
    "--chunk-size", default=64, show_default=True, type=click.IntRange(1, 4096), help="PATCH size, MiB."
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_registry_options
@_errors_as_one_line
def push_cmd(
    path: str,
    ref: str,
    fmt: str | None,
    quantization: str | None,
    chunk_size: int,
    no_progress: bool,
    registry_configs: tuple[Path, ...],
    username: str | None,
    password_stdin: bool,
    plain_http: bool,
) -> None:
    """Push a model file or directory PATH to REF (HOST/REPO:TAG, or oci:DIR:TAG for a local store).

    PATH may also be an artifact in a local store (oci:DIR:TAG): it is copied with its digest unchanged."""
    from kaito_core.artifacts import copy_artifact, push

    credentials = _credentials(username, password_stdin)
    if path.startswith("oci:"):
        digest = copy_artifact(
            path,
            ref,
            credentials=credentials,
            registry_configs=registry_configs,
            plain_http=plain_http,
            progress=not no_progress,
            chunk_size=chunk_size * 1024 * 1024,
        )
        click.echo(f"pushed {ref.split('@')[0]}@{digest}")
        return
    if not Path(path).exists():
        fail(f"{path} does not exist; give a model file, a directory of model files, or oci:DIR:TAG")
    digest = push(
        Path(path),
        ref,
        format=fmt,
        quantization=quantization,
        credentials=credentials,
        registry_configs=registry_configs,
        plain_http=plain_http,
        progress=not no_progress,
        chunk_size=chunk_size * 1024 * 1024,
    )
    click.echo(f"pushed {ref.split('@')[0]}@{digest}")


@model.command("pull")
@click.argument("ref")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Blob cache (default $KAITO_HOME/blobs or ~/.cache/kaito/blobs; for hf://, the Hugging Face cache, "
    "default $KAITO_HOME/huggingface).",
)
@click.option("--verify-cache", is_flag=True, help="Re-hash cached blobs instead of trusting their markers.")
@click.option(
    "--jobs", "-j", default=4, show_default=True, type=click.IntRange(1, 32), help="Parallel downloads."
)
@click.option(
    "--timeout",
    default=120.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds to wait for data.",
)
@click.option(
    "--include",
    "include",
    multiple=True,
    help="hf:// only: pull only files matching this pattern (repeatable; default all but pickles).",
)
@click.option(
    "--max-unpacked",
    default=None,
    metavar="SIZE",
    help="Most bytes that unpacking directory or image layers may write, e.g. 64GiB (default "
    "$KAITO_MAX_UNPACKED or 512GiB): a tar bomb is refused before anything is written.",
)
@click.option(
    "--adapter",
    is_flag=True,
    help="REF is a LoRA adapter: fail unless DEST ends up with adapter_config.json at its top.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@OUTPUT_OPTION
@_registry_options
@_errors_as_one_line
def pull_cmd(
    ref: str,
    dest: Path,
    include: tuple[str, ...],
    max_unpacked: str | None,
    adapter: bool,
    cache_dir: Path | None,
    verify_cache: bool,
    jobs: int,
    timeout: float,
    no_progress: bool,
    output: str,
    registry_configs: tuple[Path, ...],
    username: str | None,
    password_stdin: bool,
    plain_http: bool,
) -> None:
    """Pull REF into DEST; exits 0 only when every file is there and verified.

    REF is an artifact (HOST/REPO:TAG, @sha256:..., oci:DIR:TAG) or a Hugging Face repository,
    hf://ORG/REPO@REVISION (HF_TOKEN for gated and private ones; HF_ENDPOINT for a mirror). An artifact
    may be kaito's (a file a layer), an `oras push` of files or of a directory (unpacked; a lone
    directory's contents land directly in DEST), or a container image, whose files under /data/ land in
    DEST (KAITO's adapter images)."""
    from kaito_core.artifacts import pull
    from kaito_core.artifacts.unpack import check_adapter, parse_size

    limit = parse_size(max_unpacked, "--max-unpacked") if max_unpacked is not None else None

    if ref.startswith("hf://"):
        from kaito_core.artifacts.hf import pull_from_hub

        result = pull_from_hub(ref, dest, include=include, cache_dir=cache_dir, verify_cache=verify_cache,
                               jobs=jobs)  # fmt: skip
    else:
        if include:
            fail("--include is for hf:// references; an artifact is pulled whole")
        result = pull(
            ref,
            dest,
            credentials=_credentials(username, password_stdin),
            registry_configs=registry_configs,
            plain_http=plain_http,
            cache_dir=cache_dir,
            progress=not no_progress,
            verify_cache=verify_cache,
            jobs=jobs,
            timeout=timeout,
            max_unpacked_bytes=limit,
        )
    if adapter:
        check_adapter(dest, ref)
    if output == "table":
        if result.skipped:
            click.echo(f"{dest} already holds {result.reference}@{result.digest}, verified: nothing to pull")
            return
        click.echo(
            f"pulled {result.reference}@{result.digest} into {dest}: {len(result.files)} files, "
            f"{_human(result.bytes_downloaded)} downloaded, {_human(result.bytes_from_cache)} from cache"
        )
        return
    emit_data(
        {
            "reference": result.reference,
            "digest": result.digest,
            "files": [str(p) for p in result.files],
            "bytesDownloaded": result.bytes_downloaded,
            "bytesFromCache": result.bytes_from_cache,
            "skipped": result.skipped,
        },
        output,
    )


@model.command("inspect")
@click.argument("ref")
@OUTPUT_OPTION
@_registry_options
@_errors_as_one_line
def inspect_cmd(
    ref: str,
    output: str,
    registry_configs: tuple[Path, ...],
    username: str | None,
    password_stdin: bool,
    plain_http: bool,
) -> None:
    """Show the manifest and config of REF without downloading its files."""
    from kaito_core.artifacts import inspect_artifact

    info = inspect_artifact(
        ref,
        credentials=_credentials(username, password_stdin),
        registry_configs=registry_configs,
        plain_http=plain_http,
    )
    if output != "table":
        emit_data(info, output)
        return
    config = info.get("config") or {}
    descriptor = config.get("descriptor", {}) if isinstance(config, dict) else {}
    details = config.get("config", {}) if isinstance(config, dict) else {}
    rows = [
        ("reference", info["reference"]),
        ("digest", info["digest"]),
        ("artifactType", info["artifactType"] or "(none)"),
        ("config", info["configMediaType"]),
        ("model", descriptor.get("name", "")),
        ("format", details.get("format", "")),
        ("quantization", details.get("quantization", "")),
        ("license", ", ".join(descriptor.get("licenses", []))),
        ("size", _human(info["size"])),
    ]
    emit_table(["FIELD", "VALUE"], [r for r in rows if r[1]])
    click.echo()
    emit_table(
        ["FILE", "SIZE", "DIGEST", "MEDIA TYPE"],
        [(f["name"], _human(f["size"]), f["digest"][:19], f["mediaType"]) for f in info["files"]],
    )


@model.command("pack")
@click.argument("preset_name", metavar="PRESET")
@click.option(
    "--push", "push_ref", default=None, help="Push to this reference instead of the embedded store."
)
@click.option("--format", "fmt", default=None, help="Weight format (gguf, safetensors).")
@click.option("--quantization", default=None, help="Quantization of that format (Q4_K_M, bf16...).")
@click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Embedded OCI layout store (default $KAITO_HOME/store or ~/.cache/kaito/store).",
)
@click.option(
    "--from-hf",
    is_flag=True,
    help="Download the preset's files from the Hugging Face Hub first (resumable; HF_TOKEN for gated "
    "models; HF_ENDPOINT for a mirror).",
)
@click.option(
    "--revision",
    default=None,
    help="With --from-hf: the revision to download (default: the one the preset pins).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_registry_options
@_errors_as_one_line
def pack_cmd(
    preset_name: str,
    push_ref: str | None,
    fmt: str | None,
    quantization: str | None,
    store: Path | None,
    from_hf: bool,
    revision: str | None,
    no_progress: bool,
    registry_configs: tuple[Path, ...],
    username: str | None,
    password_stdin: bool,
    plain_http: bool,
) -> None:
    """Build PRESET's artifact from its upstream files on this machine; store it locally or --push it."""
    from kaito_core.artifacts import pack_preset
    from kaito_core.plugins import PluginError, default_registry

    try:
        preset = default_registry().preset(preset_name)
    except PluginError as exc:
        fail(str(exc))
    if revision and not from_hf:
        fail("--revision goes with --from-hf")
    source_dir = None
    if from_hf:
        from kaito_core.artifacts.hf import preset_files_from_hub
        from kaito_core.artifacts.pack import choose_format

        weights = choose_format(preset, fmt, quantization)
        upstream = weights.source or preset.source
        source_dir = preset_files_from_hub(
            upstream.repo, revision or upstream.revision, [f.name for f in weights.files]
        )
    result = pack_preset(
        preset,
        source_dir=source_dir,
        push_ref=push_ref,
        format=fmt,
        quantization=quantization,
        store=store,
        credentials=_credentials(username, password_stdin),
        registry_configs=registry_configs,
        plain_http=plain_http,
        progress=not no_progress,
    )
    click.echo(
        f"packed {preset.name} ({result.format}/{result.quantization}) as {result.reference}@{result.digest}"
    )


def register(group: click.Group) -> None:
    """Add `kaito model ...` to the `kaito` command."""
    group.add_command(model)
