"""Start-up: `kaito run` to its ready line and to the first /chat answer, vs llama-cpp-python directly.

Both sides start from a cold process with the weights already on local disk (the local store) and end
with one generated token:

- baseline: `python -c "from llama_cpp import Llama; Llama(GGUF, n_ctx=...)(prompt, max_tokens=1)"`,
  same GGUF file, same context length and threads as the plan;
- kaito run: `kaito run examples/workspace-gemma-3-270m.yaml` until "ready" (its /health is 200 only
  after a real generation), then one POST /chat with max_new_tokens=1.

Where the gap comes from is measured too: importing the `kaito` CLI, validating + planning + locating
the weights, and `kaito serve` on its own (its imports, loading, warm-up) to /health 200.

Writes benchmarks/results/startup.md and benchmarks/results/startup.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "workspace-gemma-3-270m.yaml"
RESULTS = ROOT / "benchmarks" / "results"
READY = re.compile(r"^kaito: ready in ([0-9.]+)s")
TARGET = 1.3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare() -> tuple[str, Path, int, int]:
    """Validate, plan and put the weights in the local store (once, not measured); the GGUF path."""
    from kaito_core.local.prepare import prepare as prepare_workspace
    from kaito_core.local.weights import locate
    from kaito_core.plugins import default_registry

    prepared = prepare_workspace(EXAMPLE, default_registry())
    weights = locate(prepared, progress=True)
    name, gguf = next((name, path) for name, path in weights.files.items() if name.endswith(".gguf"))
    return name, gguf, prepared.plan.context_length, prepared.plan.threads


BASELINE = """
import os
import llama_cpp.llama_cpp as L
from llama_cpp import Llama

# llama.cpp's extra (AMX) buffer types die with SIGILL on CPUs whose AMX the kernel or sandbox does not
# enable; kaito's llama.cpp runtime turns them off, so the baseline does too (same kernels both sides).
_default = L.llama_model_default_params
def _params():
    params = _default()
    params.use_extra_bufts = False
    return params
L.llama_model_default_params = _params

model = Llama(model_path={path!r}, n_ctx={n_ctx}, n_threads={threads}, verbose=False)
out = model.create_completion("The capital of France is", max_tokens=1)
assert out["choices"][0]["text"]
os._exit(0)  # the timing ends with the token, as kaito's does with /health
"""


def time_baseline(gguf: Path, n_ctx: int, threads: int) -> float:
    code = BASELINE.format(path=str(gguf), n_ctx=n_ctx, threads=threads or None)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


CONTEXTS = """
import json, os, time
import llama_cpp.llama_cpp as L

L.llama_backend_init()
params = L.llama_model_default_params()
params.use_extra_bufts = False
model = L.llama_model_load_from_file({path!r}.encode(), params)
result = {{}}
# (name, sequences, unified): one sequence; kaito's default, 8 sequences sharing one context's cells;
# 8 sequences with a context each (kaito serve --engine-option kv_unified=false)
for name, sequences, unified in (("context_1", 1, True), ("context_pool8", 8, True), ("context_8", 8, False)):
    cparams = L.llama_context_default_params()
    cparams.n_ctx = {n_ctx} if unified else {n_ctx} * sequences
    cparams.n_seq_max = sequences
    cparams.kv_unified = unified
    cparams.swa_full = False  # as kaito's engine: sliding-window layers keep only their window
    cparams.n_threads = cparams.n_threads_batch = {threads}
    started = time.monotonic()
    ctx = L.llama_init_from_model(model, cparams)
    result[name] = time.monotonic() - started
    L.llama_free(ctx)
print(json.dumps(result), flush=True)
os._exit(0)
"""


def time_contexts(gguf: Path, n_ctx: int, threads: int) -> dict[str, float]:
    """The llama.cpp piece of the server's model load that grows with --max-batch: creating a context
    (KV cache) for 1 sequence, for 8 sharing one pool (the default) and for 8 with a context each,
    configured as kaito's engine configures it."""
    code = CONTEXTS.format(path=str(gguf), n_ctx=n_ctx, threads=threads or 2)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def time_import_cli() -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import kaito_core.cli.main"], check=True)
    return time.monotonic() - started


def time_prepare_only() -> float:
    """A process that validates, plans and locates the weights, and exits (no model)."""
    code = (
        "from pathlib import Path\n"
        "from kaito_core.local.prepare import prepare\n"
        "from kaito_core.local.weights import locate\n"
        "from kaito_core.plugins import default_registry\n"
        f"locate(prepare(Path({str(EXAMPLE)!r}), default_registry()), progress=False)\n"
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.monotonic() - started


def wait_health(port: int, process: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"kaito serve exited with {process.returncode}")
            try:
                if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    raise RuntimeError("kaito serve was not ready in time")


def time_serve_only(gguf: Path, n_ctx: int, threads: int) -> float:
    """`kaito serve` by itself, from spawn to /health 200 (imports, load, warm-up generation)."""
    port = free_port()
    argv = [sys.executable, "-m", "kaito_core.cli.main", "serve", "--runtime", "llamacpp",
            "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
            "--served-model-name", "gemma-3-270m",
            "--context-length", str(n_ctx)]
    if threads:
        argv += ["--threads", str(threads)]
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_health(port, process)
        return time.monotonic() - started
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)


def time_kaito_run(*extra: str, workspace: Path = EXAMPLE) -> tuple[float, float, float]:
    """Seconds to the ready line (as seen here), to the first /chat answer, and what kaito reported."""
    port = free_port()
    argv = [sys.executable, "-m", "kaito_core.cli.main", "run", str(workspace), "--port", str(port),
            "--no-progress", *extra]
    # made before the clock starts: a new httpx client costs ~0.04 s (its TLS context), the client's
    # cost and not the server's (curl, or a client kept open, pays none of it)
    client = httpx.Client(timeout=60)
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert process.stdout is not None
    try:
        reported = None
        for line in process.stdout:
            match = READY.match(line)
            if match:
                reported = float(match.group(1))
                break
        if reported is None:
            raise RuntimeError(f"kaito run exited with {process.wait()} before its ready line")
        ready = time.monotonic() - started
        response = client.post(f"http://127.0.0.1:{port}/chat", json={
            "prompt": "The capital of France is", "generate_kwargs": {"max_new_tokens": 1}})
        response.raise_for_status()
        answered = time.monotonic() - started
        return ready, answered, reported
    finally:
        client.close()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description="kaito run start-up vs llama-cpp-python")
    parser.add_argument("--repeat", type=int, default=9,
                        help="rounds, each timing every measurement once (medians and paired ratios)")
    args = parser.parse_args()
    # Users' Pythons keep compiled bytecode; a sandbox that sets PYTHONDONTWRITEBYTECODE would make every
    # process recompile the (editable) kaito sources while llama_cpp's bytecode already sits in
    # site-packages. Both sides get the same warm bytecode cache here, filled by the unmeasured round.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="kaito-bench-pycache-")

    model_name, gguf, n_ctx, threads = prepare()
    # one unmeasured round of each so that every side starts with the same warm page cache
    time_baseline(gguf, n_ctx, threads)
    time_kaito_run()

    names = ("baseline", "kaito_ready", "kaito_first_chat", "kaito_reported", "kaito_ready_parallel_1",
             "import_cli", "prepare", "serve_only", "context_1", "context_pool8", "context_8")
    samples: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(args.repeat):
        samples["baseline"].append(time_baseline(gguf, n_ctx, threads))
        ready, answered, reported = time_kaito_run()
        samples["kaito_ready"].append(ready)
        samples["kaito_first_chat"].append(answered)
        samples["kaito_reported"].append(reported)
        samples["kaito_ready_parallel_1"].append(time_kaito_run("--parallel", "1")[0])
        samples["import_cli"].append(time_import_cli())
        samples["prepare"].append(time_prepare_only())
        samples["serve_only"].append(time_serve_only(gguf, n_ctx, threads))
        for key, value in time_contexts(gguf, n_ctx, threads).items():
            samples[key].append(value)
    median = {k: statistics.median(v) for k, v in samples.items()}
    base = median["baseline"]

    rows = [
        ("llama-cpp-python: load GGUF + 1 token (baseline)", median["baseline"]),
        ("kaito run -> ready line", median["kaito_ready"]),
        ("kaito run -> first /chat answer (1 token)", median["kaito_first_chat"]),
        ("kaito run --parallel 1 -> ready line (KV cache for 1 sequence, as the baseline)",
         median["kaito_ready_parallel_1"]),
        ("  part: python + import kaito CLI", median["import_cli"]),
        ("  part: validate + plan + locate weights (own process)", median["prepare"]),
        ("  part: kaito serve alone -> /health 200", median["serve_only"]),
        (f"  inside: llama.cpp context (KV cache) for 1 sequence x {n_ctx}", median["context_1"]),
        (f"  inside: llama.cpp context (KV cache) for 8 sequences sharing {n_ctx} cells (the default)",
         median["context_pool8"]),
        (f"  inside: llama.cpp context (KV cache) for 8 sequences x {n_ctx} each (kv_unified=false)",
         median["context_8"]),
    ]
    # Each round times the baseline and kaito run back to back, so the ratio within a round is less
    # exposed to a busy neighbour than the ratio of two medians: both are reported, the paired one
    # decides the target.
    paired = statistics.median(
        k / b for k, b in zip(samples["kaito_ready"], samples["baseline"], strict=True)
    )
    paired_chat = statistics.median(
        k / b for k, b in zip(samples["kaito_first_chat"], samples["baseline"], strict=True)
    )
    lines = [
        "# kaito run start-up",
        "",
        f"Model: {model_name} ({gguf.stat().st_size / 2**20:.0f} MiB), n_ctx {n_ctx}, "
        f"threads {threads or 'auto'}; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; median of {args.repeat} runs, "
        "weights already in the local store, page cache warm.",
        "",
        "| measurement | seconds | ratio to baseline |",
        "|---|---:|---:|",
        *[f"| {name} | {value:.2f} | {value / base:.2f}x |" for name, value in rows],
        "",
        f"Paired (median over rounds of kaito run / baseline in the same round): ready {paired:.2f}x; "
        f"first answer {paired_chat:.2f}x.",
        "",
        f"Target: kaito run -> ready at most {TARGET}x the baseline: "
        f"{'met' if paired <= TARGET else 'NOT met'} ({paired:.2f}x paired, "
        f"{median['kaito_ready'] / base:.2f}x as a ratio of medians).",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.md").write_text(text + "\n")
    (RESULTS / "startup.json").write_text(json.dumps({
        "model": model_name, "n_ctx": n_ctx, "threads": threads, "cpus": os.cpu_count(),
        "repeat": args.repeat,
        "median_s": median, "samples_s": samples,
        "ratio_ready": median["kaito_ready"] / base, "ratio_first_chat": median["kaito_first_chat"] / base,
        "paired_ratio_ready": paired, "paired_ratio_first_chat": paired_chat,
        "target_ratio": TARGET,
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
