#!/usr/bin/env bash
# The GPU check (`nox -s gpu-check`): on a machine with an NVIDIA GPU and no network, build the llama.cpp
# runtime with CUDA, serve a GGUF with every layer on the GPU through `kaito serve --runtime llamacpp`,
# check /chat and the OpenAI API, serve a small model with vLLM where vLLM is installed, and tune a tiny
# model with `kaito tune` (LoRA; QLoRA where bitsandbytes is installed) where peft and trl are.
# Prints a PASS/FAIL table and exits non-zero when a check failed. See docs/gpu-check.md.
#
#   bash scripts/gpu_check.sh [--wheelhouse DIR] [--cpu-dry-run] [--model GGUF] [--vllm-model DIR]
#                             [--skip-vllm] [--python PY] [--work DIR] [--timeout SECONDS] [--keep]
set -uo pipefail

ROOT="${KAITO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
HERE="$ROOT/scripts/gpu_check"

usage() {
    cat <<'USAGE'
usage: bash scripts/gpu_check.sh [options]

  --wheelhouse DIR   install from DIR, made by scripts/gpu_check/prepare.sh, into WORK/site (put on
                     PYTHONPATH): its wheels, then llama-cpp-python built from its sdist with CUDA
                     (-DGGML_CUDA=on), then kaito and its runtimes from this tree. No registry is
                     contacted. Without it, --python is used as it is.
  --python PY        interpreter that has (or gets) kaito installed
                     (default: $KAITO_ROOT/.venv/bin/python when present, else python3)
  --cpu-dry-run      run the same checks with no GPU: llama.cpp built/loaded for the CPU,
                     --n-gpu-layers 0, every layer expected on the CPU; GPU-only checks are SKIP
  --model GGUF       serve this GGUF (default: a tiny random llama written by make_tiny_gguf.py)
  --vllm-model DIR   a Hugging Face model directory for the vLLM part (default: a tiny random
                     llama written by make_tiny_hf.py, where transformers is installed)
  --skip-vllm        do not run the vLLM part
  --cuda-arch LIST   CMAKE_CUDA_ARCHITECTURES for the build (default: the GPU's, from nvidia-smi)
  --work DIR         working directory (default: a new temporary one)
  --timeout SECONDS  how long each server may take to become healthy (default 300)
  --keep             keep the working directory
  -h, --help         this text
USAGE
}

WHEELHOUSE="" PY="" DRY=0 MODEL="" VLLM_MODEL="" SKIP_VLLM=0 WORK="" TIMEOUT=300 KEEP=0 CUDA_ARCH=""
while [ $# -gt 0 ]; do
    case "$1" in
        --wheelhouse) WHEELHOUSE="${2:?--wheelhouse needs a directory}"; shift 2 ;;
        --python) PY="${2:?--python needs an interpreter}"; shift 2 ;;
        --cpu-dry-run) DRY=1; shift ;;
        --model) MODEL="${2:?--model needs a GGUF file}"; shift 2 ;;
        --vllm-model) VLLM_MODEL="${2:?--vllm-model needs a directory}"; shift 2 ;;
        --skip-vllm) SKIP_VLLM=1; shift ;;
        --cuda-arch) CUDA_ARCH="${2:?--cuda-arch needs e.g. 90}"; shift 2 ;;
        --work) WORK="${2:?--work needs a directory}"; shift 2 ;;
        --timeout) TIMEOUT="${2:?--timeout needs seconds}"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$TIMEOUT" in ''|*[!0-9]*) echo "gpu_check.sh: --timeout must be a whole number of seconds" >&2; exit 2 ;; esac
if [ -n "$WHEELHOUSE" ] && [ ! -d "$WHEELHOUSE" ]; then
    echo "gpu_check.sh: --wheelhouse $WHEELHOUSE is not a directory (make it with scripts/gpu_check/prepare.sh)" >&2
    exit 2
fi
if [ -n "$MODEL" ] && [ ! -f "$MODEL" ]; then
    echo "gpu_check.sh: --model $MODEL is not a file" >&2; exit 2
fi
if [ -n "$VLLM_MODEL" ] && [ ! -d "$VLLM_MODEL" ]; then
    echo "gpu_check.sh: --vllm-model $VLLM_MODEL is not a directory" >&2; exit 2
fi

if [ -z "$WORK" ]; then WORK="$(mktemp -d "${TMPDIR:-/tmp}/kaito-gpu-check.XXXXXX")"; else mkdir -p "$WORK"; fi
WORK="$(cd "$WORK" && pwd)"
RESULTS="$WORK/results.tsv"
: > "$RESULTS"
cleanup() { if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi; }
trap cleanup EXIT

record() {  # record NAME PASS|FAIL|SKIP DETAIL
    printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >> "$RESULTS"
    echo "== $1: $2 ${3:-}"
}

summary() {
    echo
    echo "GPU check summary ($([ "$DRY" = 1 ] && echo "CPU dry run" || echo "GPU"))"
    printf '%-26s %-5s %s\n' CHECK RESULT DETAIL
    printf '%-26s %-5s %s\n' "--------------------------" "-----" "------"
    local fails=0
    while IFS=$'\t' read -r name result detail; do
        printf '%-26s %-5s %s\n' "$name" "$result" "$detail"
        [ "$result" = FAIL ] && fails=$((fails + 1))
    done < "$RESULTS"
    echo
    if [ "$fails" -gt 0 ]; then echo "$fails check(s) FAILED"; return 1; fi
    echo "all checks passed"
}

# ------------------------------------------------------------------------------------------------
# 1. the GPU
# ------------------------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
    record gpu SKIP "CPU dry run: no GPU expected"
elif ! command -v nvidia-smi >/dev/null 2>&1; then
    record gpu FAIL "nvidia-smi not found: run on a machine with an NVIDIA GPU, or use --cpu-dry-run"
    summary; exit 1
elif ! GPU="$(nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader 2>&1 | head -1)"; then
    record gpu FAIL "nvidia-smi failed: $GPU"
    summary; exit 1
else
    record gpu PASS "$GPU"
    if [ -z "$CUDA_ARCH" ]; then
        CUDA_ARCH="$(echo "$GPU" | awk -F', ' '{gsub(/\./, "", $3); print $3}')"
    fi
fi

# ------------------------------------------------------------------------------------------------
# 2. the environment: a wheelhouse install (the GPU machine) or an interpreter as it is
# ------------------------------------------------------------------------------------------------
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY="python3"; fi
fi
if [ -n "$WHEELHOUSE" ]; then
    # pip --target + PYTHONPATH rather than a virtualenv: the GPU image's python3 is itself a
    # virtualenv (torch, numpy, cmake, scikit-build-core...), which a nested venv would not see.
    WHEELHOUSE="$(cd "$WHEELHOUSE" && pwd)"
    SITE="$WORK/site"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    echo "== installing from $WHEELHOUSE into $SITE (log: $WORK/install.log)"
    PIP=("$PY" -m pip install --no-index --no-deps --disable-pip-version-check --no-cache-dir
         --upgrade --target "$SITE")
    shopt -s nullglob
    wheels=("$WHEELHOUSE"/*.whl)
    sdists=("$WHEELHOUSE"/llama_cpp_python-*.tar.gz)
    shopt -u nullglob
    if [ ${#wheels[@]} -gt 0 ] && ! "${PIP[@]}" "${wheels[@]}" > "$WORK/install.log" 2>&1; then
        record install-wheels FAIL "$(tail -3 "$WORK/install.log" | tr '\n' ' ')"
        summary; exit 1
    fi
    record install-wheels PASS "${#wheels[@]} wheels from $(basename "$WHEELHOUSE")"
    if [ ${#sdists[@]} -ne 1 ]; then
        record llamacpp-build FAIL "expected one llama_cpp_python-*.tar.gz in $WHEELHOUSE, found ${#sdists[@]}"
        summary; exit 1
    fi
    if [ "$DRY" = 1 ]; then
        cmake_args="-DGGML_CUDA=off -DLLAVA_BUILD=off -DGGML_NATIVE=off"
    else
        # CMake finds nvcc on PATH or through CUDACXX; CUDA images often keep it in
        # /usr/local/cuda/bin without putting that on PATH.
        if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null 2>&1; then
            for candidate in "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" /usr/local/cuda/bin/nvcc; do
                if [ -x "$candidate" ]; then export CUDACXX="$candidate"; break; fi
            done
        fi
        NVCC="${CUDACXX:-$(command -v nvcc || true)}"
        if [ -z "$NVCC" ]; then
            record llamacpp-build FAIL "no CUDA compiler: nvcc is not on PATH, CUDACXX is unset and \$CUDA_HOME/bin/nvcc is missing"
            summary; exit 1
        fi
        record nvcc PASS "$NVCC: $("$NVCC" --version | grep -m1 -o 'release [0-9.]*')"
        cmake_args="-DGGML_CUDA=on -DLLAVA_BUILD=off -DGGML_CUDA_FA_ALL_QUANTS=off"
        if [ -n "$CUDA_ARCH" ]; then cmake_args="$cmake_args -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH"; fi
    fi
    echo "== building $(basename "${sdists[0]}") with CMAKE_ARGS='$cmake_args' (log: $WORK/build.log)"
    started=$(date +%s)
    if CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "${PIP[@]}" --no-build-isolation -v "${sdists[0]}" > "$WORK/build.log" 2>&1; then
        record llamacpp-build PASS "$cmake_args in $(( $(date +%s) - started )) s"
    else
        record llamacpp-build FAIL "see build.log: $(grep -m1 -E 'error|Error' "$WORK/build.log" | cut -c1-160)"
        tail -40 "$WORK/build.log"
        summary; exit 1
    fi
    # Built in place: setuptools leaves build/ and *.egg-info, both git-ignored.
    if "${PIP[@]}" --no-build-isolation "$ROOT" "$ROOT/plugins/runtime-llamacpp" "$ROOT/plugins/runtime-vllm" \
        "$ROOT/plugins/runtime-transformers" >> "$WORK/install.log" 2>&1; then
        record install-kaito PASS "kaito-core and the llamacpp, vllm and transformers runtimes from this tree"
    else
        record install-kaito FAIL "$(tail -3 "$WORK/install.log" | tr '\n' ' ')"; summary; exit 1
    fi
fi
if ! "$PY" -c "import kaito_core, llama_cpp" > "$WORK/import.log" 2>&1; then
    record environment FAIL "$PY cannot import kaito_core and llama_cpp: $(tail -1 "$WORK/import.log")"
    summary; exit 1
fi

# ------------------------------------------------------------------------------------------------
# 3. the model
# ------------------------------------------------------------------------------------------------
if [ -z "$MODEL" ]; then
    MODEL="$WORK/tiny-llama.gguf"
    if "$PY" "$HERE/make_tiny_gguf.py" "$MODEL" > "$WORK/gguf.log" 2>&1; then
        record tiny-gguf PASS "$(cat "$WORK/gguf.log")"
    else
        record tiny-gguf FAIL "$(tail -1 "$WORK/gguf.log")"; summary; exit 1
    fi
fi

# ------------------------------------------------------------------------------------------------
# 4. serving checks (llama.cpp, then vLLM)
# ------------------------------------------------------------------------------------------------
args=(--results "$RESULTS" --work "$WORK" --gguf "$MODEL" --timeout "$TIMEOUT")
[ "$DRY" = 1 ] && args+=(--cpu)
[ "$SKIP_VLLM" = 1 ] && args+=(--skip-vllm)
[ -n "$VLLM_MODEL" ] && args+=(--vllm-model "$VLLM_MODEL")
PYTHONUNBUFFERED=1 "$PY" "$HERE/checks.py" "${args[@]}"
rc=$?
[ $rc -gt 1 ] && record checks FAIL "checks.py exited with $rc"

summary
