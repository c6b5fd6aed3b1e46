"""Build the project's container images with podman, from a Debian base made by mmdebstrap.

    python scripts/images.py [--push REGISTRY] [--tag TAG] [--only NAME ...] [--force]

(``nox -s images -- ...`` runs it.) No Docker Hub is needed: the base image is a Debian rootfs made by
``mmdebstrap`` from Debian's packages and imported into podman; every Python package goes in as a wheel
built on this machine (``pip wheel``), so nothing inside a build reaches the network. Each image is
labelled with a hash of everything it is made of (Dockerfile, sources, base image, the wheels'
requirements); a build whose hash matches the image already there is skipped.

Built here: ``kaito`` (the operator and the weights puller), ``kaito-runtime-llamacpp-cpu`` and
``kaito-runtime-transformers-cpu`` (the trainer and transformers runtime on the CPU). The CUDA images
(``kaito-runtime-llamacpp``, ``kaito-runtime-vllm``, ``kaito-runtime-transformers``) need a CUDA base
image that is not reachable here; ``--only`` names them on a machine that has one (``--base`` is then
ignored for them).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "images"
WHEELS = BUILD / "wheels"
BASE_IMAGE = "localhost/kaito-base:bookworm"
#: What the runtime needs from Debian: python with venv (ensurepip), CA certificates for HTTPS
#: registries, and libgomp for llama.cpp's OpenMP threads.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "libgomp1")
HASH_LABEL = "sh.kaito.content-hash"
SOURCE = "https://github.com/kaito-python/kaito"


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str
    #: what `pip wheel` builds for it (paths relative to the repository root, or requirements)
    wheels: tuple[str, ...]
    #: built on this machine by default (False: needs a base image this machine cannot reach)
    local: bool = True


PLUGINS = ("presets-gemma3", "presets-phi3", "runtime-llamacpp", "runtime-vllm", "provisioner-aks")
IMAGES = (
    Image("kaito", "Dockerfile", (".", *(f"plugins/{p}" for p in PLUGINS))),
    Image("kaito-runtime-llamacpp-cpu", "plugins/runtime-llamacpp/Dockerfile.cpu",
          (".", "plugins/runtime-llamacpp")),
    Image("kaito-runtime-llamacpp", "plugins/runtime-llamacpp/Dockerfile.cuda", (".",), local=False),
    Image("kaito-runtime-vllm", "plugins/runtime-vllm/Dockerfile", (".", "plugins/runtime-vllm"),
          local=False),
    # torch pinned to the build this project tests with; on a machine whose pip resolves it to a CUDA
    # build, add torch's CPU index (PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu)
    Image("kaito-runtime-transformers-cpu", "plugins/runtime-transformers/Dockerfile.cpu",
          (".", "plugins/runtime-transformers", "torch==2.13.0")),
    Image("kaito-runtime-transformers", "plugins/runtime-transformers/Dockerfile.cuda",
          (".", "plugins/runtime-transformers"), local=False),
)  # fmt: skip


def run(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, check=True, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def podman(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return run("podman", *argv, **kwargs)


def image_label(ref: str, label: str) -> str | None:
    out = subprocess.run(
        ["podman", "image", "inspect", "--format", f'{{{{ index .Labels "{label}" }}}}', ref],
        capture_output=True,
        text=True,
    )
    value = out.stdout.strip()
    return value if out.returncode == 0 and value and value != "<no value>" else None


def revision() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def tracked_files(paths: tuple[str, ...]) -> list[Path]:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "--", *paths],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(ROOT / line for line in out.stdout.splitlines() if (ROOT / line).is_file())


def content_hash(image: Image, base_id: str) -> str:
    """Everything the image is made of: its Dockerfile, the base, and every source file of its wheels."""
    digest = hashlib.sha256()
    digest.update(f"{image.name}\0{base_id}\0".encode())
    digest.update("\0".join(image.wheels).encode())  # requirements such as torch==2.13.0 too
    # kaito-core's wheel is made of these (the repository root holds much else: docs, CI, other images)
    core = ("pyproject.toml", "README.md", "kaito_core")
    sources = [s for p in image.wheels for s in (core if p == "." else (p,)) if (ROOT / s).exists()]
    for path in tracked_files((image.dockerfile, ".containerignore", *sources)):
        rel = path.relative_to(ROOT).as_posix()
        if "/tests/" in f"/{rel}" or rel.startswith(("docs/", "benchmarks/", "examples/")):
            continue
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


# ------------------------------------------------------------------------------------------ steps


def ensure_base(force: bool) -> str:
    """The Debian base image; made once (mmdebstrap, then podman import) and kept while its package
    list is unchanged. Returns its image ID."""
    wanted = hashlib.sha256(" ".join(("bookworm", *BASE_PACKAGES)).encode()).hexdigest()[:32]
    if not force and image_label(BASE_IMAGE, HASH_LABEL) == wanted:
        print(f"{BASE_IMAGE}: up to date", flush=True)
    else:
        with tempfile.TemporaryDirectory(prefix="kaito-base-") as tmp:
            tar = Path(tmp) / "rootfs.tar"
            packages = f"--include={','.join(BASE_PACKAGES)}"
            run("mmdebstrap", "--variant=minbase", packages, "bookworm", str(tar))
            podman(
                "import",
                "--change", f"LABEL {HASH_LABEL}={wanted}",
                "--change", 'CMD ["/usr/bin/python3"]',
                str(tar), BASE_IMAGE,
            )  # fmt: skip
    return podman("image", "inspect", "--format", "{{.Id}}", BASE_IMAGE, capture_output=True).stdout.strip()


def build_wheels(image: Image, target: Path) -> None:
    """``pip wheel`` on this machine: the project's distributions and every dependency, for the image's
    Python (Debian bookworm's 3.11, the same ABI as this machine's)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(target),
        *[str(ROOT / p) if (ROOT / p).exists() else p for p in image.wheels])  # fmt: skip


def build(image: Image, tag: str, base: str, base_id: str, force: bool) -> str:
    ref = f"localhost/{image.name}:{tag}"
    wanted = content_hash(image, base_id)
    if not force and image_label(ref, HASH_LABEL) == wanted:
        print(f"{ref}: up to date ({HASH_LABEL}={wanted})", flush=True)
        return ref
    wheels = WHEELS / image.name
    build_wheels(image, wheels)
    podman(
        "build",
        "--file", str(ROOT / image.dockerfile),
        "--tag", ref,
        *(["--build-arg", f"BASE={base}"] if image.local or base != BASE_IMAGE else []),
        "--build-arg", f"WHEELS={wheels.relative_to(ROOT)}",
        "--build-arg", f"REVISION={revision()}",
        "--build-arg", f"VERSION={tag}",
        "--label", f"{HASH_LABEL}={wanted}",
        # on the local base everything is in the context: a build that reaches out fails
        *(["--network", "none"] if base == BASE_IMAGE else []),
        "--layers",
        str(ROOT),
    )  # fmt: skip
    return ref


def push(ref: str, registry: str, name: str, tag: str) -> None:
    host = registry.split("/", 1)[0]
    loopback = host.split(":")[0] in ("localhost", "127.0.0.1", "::1")
    target = f"{registry.rstrip('/')}/{name}:{tag}"
    podman("push", *(["--tls-verify=false"] if loopback else []), ref, f"docker://{target}")
    print(f"pushed {target}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--push", metavar="REGISTRY", help="Push every built image to REGISTRY/NAME:TAG.")
    parser.add_argument("--tag", default=None, help="Image tag (default: kaito-core's version).")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[i.name for i in IMAGES],
                        help="Build these images (default: those this machine can build).")  # fmt: skip
    parser.add_argument("--base", default=None, help=f"Base image (default: {BASE_IMAGE}, made here).")
    parser.add_argument("--force", action="store_true", help="Rebuild even when the content is unchanged.")
    args = parser.parse_args(argv)
    for tool in ("podman", *(() if args.base else ("mmdebstrap",))):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian: apt-get install {tool})")
    tag = args.tag or version()
    chosen = [i for i in IMAGES if (i.name in args.only if args.only else i.local)]
    base = args.base or BASE_IMAGE
    base_id = base if args.base else ensure_base(args.force)
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    for image in chosen:
        ref = build(image, tag, base, base_id, args.force)
        if args.push:
            push(ref, args.push, image.name, tag)
    return 0


def version() -> str:
    import tomllib

    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


if __name__ == "__main__":
    raise SystemExit(main())
