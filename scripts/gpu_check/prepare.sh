#!/usr/bin/env bash
# Prepare, on a machine with PyPI access, everything scripts/gpu_check.sh needs on a GPU machine that
# reaches no registry: llama-cpp-python's sdist (slimmed: its vendored git pack, vocabulary GGUFs and
# docs removed; what the build compiles is untouched) and the wheels of the serving stack that the GPU
# image lacks. Everything goes into one directory that must stay under 64 MiB (the tree that travels
# to the device machine carries it).
#
#   bash scripts/gpu_check/prepare.sh [--out DIR] [--python-version 3.12] [--python PY] [--with-tuning]
#
# --with-tuning adds what `kaito tune` needs beyond the GPU image's torch and transformers (peft, trl,
# datasets and their closure, pyarrow the largest), for the tuning part of the check; bitsandbytes
# (QLoRA) is too large to carry under the limit: where the GPU image lacks it, that step is SKIP.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/scripts/gpu_check/wheelhouse"
PYVER="3.12"           # the GPU image's python3 (see docs/gpu-check.md)
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="python3"
LLAMA_CPP_VERSION="0.3.36"
LIMIT_MIB=60
#: What `kaito serve` (llama.cpp and vLLM runtimes), the checks and the llama-cpp-python build import,
#: beyond the interpreter. Their dependency closure is read from the installed distributions here (the
#: versions the tests ran), minus PROVIDED; names not installed here are downloaded at their latest.
ROOTS=(pydantic starlette uvicorn openai httpx gguf diskcache scikit-build-core pyproject-metadata)
#: On the GPU image already (see docs/gpu-check.md) and large or compiled: not carried.
PROVIDED=(numpy pyyaml requests tqdm jinja2 markupsafe click h11 certifi idna urllib3 charset-normalizer
          pluggy prometheus-client packaging pathspec rich pygments markdown-it-py mdurl setuptools)

while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="${2:?}"; shift 2 ;;
        --python-version) PYVER="${2:?}"; shift 2 ;;
        --python) PY="${2:?}"; shift 2 ;;
        --llama-cpp-version) LLAMA_CPP_VERSION="${2:?}"; shift 2 ;;
        --with-tuning)
            ROOTS+=(peft trl datasets accelerate)
            PROVIDED+=(torch transformers tokenizers safetensors huggingface-hub filelock fsspec sympy networkx
                       nvidia-cublas-cu12 nvidia-cuda-runtime-cu12 triton regex psutil)
            shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "prepare.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT"/*.whl "$OUT"/llama_cpp_python-*.tar.gz
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
PIP=("$PY" -m pip --disable-pip-version-check)

echo "== llama-cpp-python $LLAMA_CPP_VERSION sdist"
"${PIP[@]}" download --no-binary :all: --no-deps "llama-cpp-python==$LLAMA_CPP_VERSION" -d "$TMP" >/dev/null
tar -xzf "$TMP/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz" -C "$TMP"
SRC="$TMP/llama_cpp_python-$LLAMA_CPP_VERSION"
# Not part of the build: git history, tokenizer-test vocabularies, docs, benchmarks, CI files.
rm -rf "$SRC/.git" "$SRC/vendor/llama.cpp/.git" "$SRC/vendor/llama.cpp/docs" "$SRC/vendor/llama.cpp/benches" \
       "$SRC/vendor/llama.cpp/media" "$SRC/vendor/llama.cpp/.github" "$SRC/vendor/llama.cpp/.devops" \
       "$SRC/docs" "$SRC/examples/notebooks"
find "$SRC/vendor/llama.cpp/models" -name '*.gguf' -delete
find "$SRC/vendor/llama.cpp/models" -name '*.gguf.inp' -delete -o -name '*.gguf.out' -delete
tar -C "$TMP" -cf - "llama_cpp_python-$LLAMA_CPP_VERSION" | gzip -9 > "$OUT/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz"

echo "== wheels for CPython $PYVER, manylinux x86_64"
specs=()
while IFS= read -r spec; do specs+=("$spec"); done < <("$PY" - "$PYVER" "${#ROOTS[@]}" "${ROOTS[@]}" "${PROVIDED[@]}" <<'PYEOF'
"""Print name==version for the closure of ROOTS over installed requirements, markers for the target."""
import importlib.metadata as md
import re
import sys

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
except ImportError:  # pip's vendored copy
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement

pyver, count = sys.argv[1], int(sys.argv[2])
roots, provided = sys.argv[3:3 + count], set(sys.argv[3 + count:])
env = {**default_environment(), "python_version": pyver, "python_full_version": pyver + ".0",
       "sys_platform": "linux", "platform_system": "Linux", "extra": ""}
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
seen, todo, out = set(), [norm(r) for r in roots], []
while todo:
    name = todo.pop()
    if name in seen or name in provided:
        continue
    seen.add(name)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        out.append(name)  # not here: the latest
        continue
    out.append(f"{name}=={dist.version}")
    for raw in dist.requires or []:
        req = Requirement(raw)
        if req.marker is None or req.marker.evaluate(env):
            todo.append(norm(req.name))
print("\n".join(sorted(out)))
PYEOF
)
# --no-build-isolation builds kaito with the environment's setuptools: PEP 639 license strings need 77+.
specs+=("setuptools>=77")
echo "   ${specs[*]}"
abi="cp${PYVER/./}"
"${PIP[@]}" download --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp --abi "$abi" \
    --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$OUT" "${specs[@]}" >/dev/null

total=$(du -sm "$OUT" | cut -f1)
ls -la "$OUT"
echo "== $OUT: ${total} MiB"
if [ "$total" -gt "$LIMIT_MIB" ]; then
    echo "prepare.sh: the wheelhouse is ${total} MiB, over ${LIMIT_MIB} MiB" >&2
    exit 1
fi
