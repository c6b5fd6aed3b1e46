#!/usr/bin/env python3
"""The checks of scripts/gpu_check.sh: `kaito serve` over llama.cpp (every layer on the GPU, or on the
CPU in a dry run) and over vLLM, each checked through /chat, the OpenAI API, /metrics and /health;
then `kaito tune` with LoRA (and QLoRA where bitsandbytes is installed) on a tiny model. Results are
appended to a TSV file (name, PASS|FAIL|SKIP, detail) that gpu_check.sh prints.

Run by gpu_check.sh with the interpreter that has kaito installed; exits 0 whatever the results
(1 only when a check could not be run at all), the summary decides.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
PROMPT = "The capital of France is"


class Results:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.failed = 0

    def record(self, name: str, result: str, detail: str = "") -> None:
        detail = " ".join(detail.split())[:200]
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"{name}\t{result}\t{detail}\n")
        self.failed += result == "FAIL"
        print(f"== {name}: {result} {detail}", flush=True)

    def check(self, name: str, fn: Callable[[], str]) -> bool:
        """Run one check: its return value is the PASS detail; an exception is the FAIL detail."""
        try:
            detail = fn()
        except Exception as exc:  # a check's failure of any kind is a FAIL row, not a crash
            self.record(name, "FAIL", f"{type(exc).__name__}: {exc}")
            return False
        self.record(name, "PASS", detail)
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gpu_memory_used() -> int | None:
    """MiB in use on GPU 0, from nvidia-smi; None without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        return int(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


class Server:
    """`kaito serve` as a child process, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.log = name, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "kaito_core.cli.main", "serve", *argv,
                   "--host", "127.0.0.1", "--port", str(self.port)]
        print(f"== starting {' '.join(command)} (log: {log})", flush=True)
        self.process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"})

    def wait_healthy(self, timeout: float) -> str:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"exited with {self.process.returncode}: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return f"healthy after {time.monotonic() - started:.1f} s"
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"not healthy after {timeout:.0f} s: {self.tail()}")

    def tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 30) -> str:
        if self.process.poll() is not None:
            return f"had already exited with {self.process.returncode}"
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"did not stop within {grace:.0f} s of SIGTERM") from None
        return f"stopped on SIGTERM (exit {code})"


def placement(log_text: str, gpu: bool) -> str:
    """Where llama.cpp put the layers, from its load log (`kaito serve --log-level debug`)."""
    offloaded = re.search(r"offloaded (\d+)/(\d+) layers to GPU", log_text)
    devices = re.findall(r"layer\s+\d+ assigned to device (\w+)", log_text)
    if gpu:
        if offloaded:
            done, total = int(offloaded[1]), int(offloaded[2])
            if done != total or total == 0:
                raise AssertionError(f"llama.cpp offloaded {done}/{total} layers to GPU")
            return f"offloaded {done}/{total} layers to GPU"
        if devices and all(d.startswith("CUDA") for d in devices):
            return f"{len(devices)} layers assigned to {sorted(set(devices))}"
        seen = sorted(set(devices))
        raise AssertionError(f"no full GPU offload in the llama.cpp log (devices seen: {seen})")
    if not devices:
        raise AssertionError("the llama.cpp load log shows no layer placement (needs --log-level debug)")
    if any(d != "CPU" for d in devices):
        raise AssertionError(f"expected every layer on the CPU, saw {sorted(set(devices))}")
    return f"{len(devices)} layers assigned to CPU (dry run)"


def openai_client(url: str) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key="gpu-check", max_retries=0, timeout=120)


def http_checks(results: Results, prefix: str, server: Server, model: str) -> None:
    """The same checks for every runtime: KAITO /chat, the OpenAI API (official client), /metrics."""
    url = server.url

    def chat_prompt() -> str:
        kwargs = {"max_new_tokens": 16, "ignore_eos": True, "do_sample": False}
        body = {"prompt": PROMPT, "generate_kwargs": kwargs}
        response = httpx.post(f"{url}/chat", json=body, timeout=120)
        assert response.status_code == 200, f"{response.status_code}: {response.text[:200]}"
        result = response.json()["Result"]
        assert result.startswith(PROMPT) and len(result) > len(PROMPT), f"unexpected Result {result!r}"
        return f"{len(result) - len(PROMPT)} characters generated"

    def chat_messages() -> str:
        body = {"messages": [{"role": "user", "content": "Say hello."}],
                "generate_kwargs": {"max_new_tokens": 8, "ignore_eos": True}}
        response = httpx.post(f"{url}/chat", json=body, timeout=120)
        assert response.status_code == 200, f"{response.status_code}: {response.text[:200]}"
        assert isinstance(response.json()["Result"], str)
        return "messages rendered through the chat template"

    def models() -> str:
        ids = [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=30).json()["data"]]
        assert model in ids, f"{model} not in {ids}"
        return f"serves {ids}"

    def openai_chat() -> str:
        client = openai_client(url)
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=16, extra_body={"ignore_eos": True})
        assert reply.usage is not None and reply.usage.completion_tokens == 16, reply.usage
        assert reply.choices[0].finish_reason == "length", reply.choices[0].finish_reason
        return f"16 tokens, prompt {reply.usage.prompt_tokens} tokens"

    def openai_stream() -> str:
        client = openai_client(url)
        pieces, finish = [], None
        for event in client.completions.create(model=model, prompt=PROMPT, max_tokens=16, stream=True,
                                               extra_body={"ignore_eos": True}):
            for choice in event.choices:
                pieces.append(choice.text)
                finish = choice.finish_reason or finish
        assert pieces and finish == "length", (pieces, finish)
        return f"{len(pieces)} SSE chunks"

    def concurrency() -> str:
        tokens = 32

        def one(i: int) -> int:
            body = {"model": model, "prompt": f"{PROMPT} {i}", "max_tokens": tokens, "ignore_eos": True}
            response = httpx.post(f"{url}/v1/completions", json=body, timeout=300)
            assert response.status_code == 200, f"{response.status_code}: {response.text[:200]}"
            return int(response.json()["usage"]["completion_tokens"])

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            counts = list(pool.map(one, range(8)))
        elapsed = time.monotonic() - started
        assert counts == [tokens] * 8, counts
        return f"8 concurrent requests x {tokens} tokens: {8 * tokens / elapsed:.0f} tokens/s aggregate"

    def metrics() -> str:
        response = httpx.get(f"{url}/metrics", timeout=30)
        assert response.status_code == 200 and "# TYPE" in response.text, response.status_code
        return f"{sum(1 for line in response.text.splitlines() if line.startswith('# TYPE'))} metric families"

    def still_healthy() -> str:
        response = httpx.get(f"{url}/health", timeout=30)
        assert response.status_code == 200, f"{response.status_code}: {response.text[:200]}"
        return "200 after the load"

    have_openai = importlib.util.find_spec("openai") is not None
    results.check(f"{prefix}-chat-prompt", chat_prompt)
    results.check(f"{prefix}-chat-messages", chat_messages)
    results.check(f"{prefix}-v1-models", models)
    if have_openai:
        results.check(f"{prefix}-openai-chat", openai_chat)
        results.check(f"{prefix}-openai-stream", openai_stream)
    else:
        results.record(f"{prefix}-openai", "SKIP", "the openai package is not installed here")
    results.check(f"{prefix}-concurrency", concurrency)
    results.check(f"{prefix}-metrics", metrics)
    results.check(f"{prefix}-health", still_healthy)


def llamacpp_part(results: Results, args: argparse.Namespace) -> None:
    gpu = not args.cpu
    import llama_cpp

    supports = bool(llama_cpp.llama_supports_gpu_offload())
    if gpu:
        detail = "llama.cpp supports GPU offload" if supports else "llama-cpp-python was built without CUDA"
        results.record("llamacpp-gpu-build", "PASS" if supports else "FAIL", detail)
    else:
        results.record("llamacpp-gpu-build", "SKIP", f"CPU dry run (GPU offload supported: {supports})")
    before = gpu_memory_used() if gpu else None
    log = args.work / "serve-llamacpp.log"
    server = Server("llamacpp", ["--runtime", "llamacpp", "--model", str(args.gguf), "--served-model-name",
                                 "tiny-gguf", "--n-gpu-layers", "-1" if gpu else "0", "--max-batch", "8",
                                 "--log-level", "debug"], log)
    try:
        if not results.check("llamacpp-serve", lambda: server.wait_healthy(args.timeout)):
            return
        results.check("llamacpp-offload", lambda: placement(log.read_text(errors="replace"), gpu))
        if gpu:
            def memory() -> str:
                after = gpu_memory_used()
                assert before is not None and after is not None, "nvidia-smi gave no memory reading"
                assert after > before, f"GPU memory did not grow ({before} -> {after} MiB)"
                return f"GPU memory {before} -> {after} MiB"
            results.check("llamacpp-gpu-memory", memory)
        http_checks(results, "llamacpp", server, "tiny-gguf")
    finally:
        results.check("llamacpp-shutdown", server.stop)


def vllm_part(results: Results, args: argparse.Namespace) -> None:
    if args.skip_vllm:
        results.record("vllm", "SKIP", "--skip-vllm")
        return
    if importlib.util.find_spec("vllm") is None:
        results.record("vllm", "SKIP", f"vLLM is not installed for {sys.executable} "
                                       "(pip install 'kaito-runtime-vllm[vllm]' to run this part)")
        return
    if args.cpu:
        results.record("vllm", "SKIP", "CPU dry run: vLLM needs a GPU")
        return
    model_dir = args.vllm_model
    if model_dir is None:
        model_dir = args.work / "tiny-hf"
        made = subprocess.run([sys.executable, str(HERE / "make_tiny_hf.py"), str(model_dir)],
                              capture_output=True, text=True)
        if made.returncode != 0:
            last = (made.stderr or made.stdout).strip().splitlines()[-1:]
            results.record("vllm-tiny-model", "FAIL", " ".join(last) or f"exit {made.returncode}")
            return
        results.record("vllm-tiny-model", "PASS", made.stdout.strip())
    options = {"gpu_memory_utilization": 0.3, "dtype": "bfloat16", "startup_timeout": args.timeout,
               "vllm": {"enforce-eager": True}}
    server = Server("vllm", ["--runtime", "vllm", "--model", str(model_dir), "--served-model-name",
                             "tiny-vllm", "--context-length", "1024", "--max-batch", "8"],
                    args.work / "serve-vllm.log", env={"KAITO_VLLM_OPTIONS": json.dumps(options)})
    try:
        if not results.check("vllm-serve", lambda: server.wait_healthy(args.timeout)):
            return
        http_checks(results, "vllm", server, "tiny-vllm")
    finally:
        results.check("vllm-shutdown", server.stop)


TUNE_CONFIG = """
training_config:
  LoraConfig: {r: 8, lora_alpha: 16, lora_dropout: 0.0, target_modules: all-linear}
  TrainingArguments: {max_steps: 6, learning_rate: 0.01, per_device_train_batch_size: 2, logging_steps: 1,
                      save_strategy: "no", lr_scheduler_type: constant}
  DatasetConfig: {max_length: 64}
"""


def tuning_part(results: Results, args: argparse.Namespace) -> None:
    """`kaito tune` (kaito-runtime-transformers) on a tiny random llama: a LoRA step on the GPU, and a
    QLoRA step (4-bit nf4 with bitsandbytes) where bitsandbytes is installed."""
    missing = [m for m in ("peft", "trl", "datasets", "kaito_runtime_transformers")
               if importlib.util.find_spec(m) is None]  # fmt: skip
    if missing:
        results.record("tuning", "SKIP", f"{', '.join(missing)} not installed for {sys.executable} "
                                         "(scripts/gpu_check/prepare.sh --with-tuning carries them)")
        return
    model_dir = args.work / "tiny-hf-tune"
    made = subprocess.run([sys.executable, str(HERE / "make_tiny_hf.py"), str(model_dir)],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        results.record("tuning-tiny-model", "FAIL", (made.stderr or made.stdout).strip()[-200:])
        return
    data = args.work / "tune-data.jsonl"
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Paris."}]}
            for q in ("What is the capital of France?", "Name the French capital.", "Where is Paris?")]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows * 8))
    config = args.work / "tune.yaml"
    config.write_text(TUNE_CONFIG)
    for method in ("lora", "qlora"):
        if method == "qlora" and args.cpu:
            results.record("tune-qlora", "SKIP", "CPU dry run: QLoRA needs an NVIDIA GPU")
            continue
        if method == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
            results.record("tune-qlora", "SKIP", f"bitsandbytes is not installed for {sys.executable}")
            continue
        out = args.work / f"adapter-{method}"

        def tune(method: str = method, out: Path = out) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "kaito_core.cli.main", "tune", "--model", str(model_dir),
                 "--data", str(data), "--config", str(config), "--method", method, "--output", str(out),
                 "--no-progress"],
                capture_output=True, text=True, timeout=args.timeout,
            )  # fmt: skip
            log = done.stdout + done.stderr
            (args.work / f"tune-{method}.log").write_text(log)
            if done.returncode != 0:
                raise RuntimeError(f"kaito tune exited {done.returncode}: {log.strip()[-300:]}")
            where = re.search(r"training \w+ on (.+?), \d+ rows", log)
            if not args.cpu and (where is None or where.group(1) == "the CPU"):
                seen = where.group(0) if where else log[-200:]
                raise RuntimeError(f"kaito tune did not train on the GPU: {seen}")
            losses = [float(x) for x in re.findall(r"step \d+/\d+ loss (\d+\.\d+)", log)]
            speed = re.search(r"([0-9.]+) samples/s\)", log)
            for name in ("adapter_config.json", "adapter_model.safetensors"):
                if not (out / name).is_file():
                    raise RuntimeError(f"no {name} in {out}")
            return (f"{len(losses)} steps on {where.group(1) if where else 'the CPU'}, loss "
                    f"{losses[0]:.3f} -> {losses[-1]:.3f}, {speed.group(1) if speed else '?'} samples/s")

        results.check(f"tune-{method}", tune)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--cpu", action="store_true", help="dry run on the CPU")
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--vllm-model", type=Path, default=None)
    args = parser.parse_args()
    results = Results(args.results)
    llamacpp_part(results, args)
    vllm_part(results, args)
    tuning_part(results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
