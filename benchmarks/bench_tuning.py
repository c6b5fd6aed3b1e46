"""`kaito tune` vs plain trl/peft code: samples/s and peak RSS on the same tiny model, data and settings.

Both run as child processes of their own (so each peak RSS is its own, read from ``wait4``'s rusage),
interleaved, ``--rounds`` times each; the median is reported, and the ratio kaito / plain (target: at
least 0.95x samples/s, the wrapper costs nothing). Settings: LoRA r 8, alpha 16, all linear layers,
``--steps`` steps of batch 2, max length 64, constant learning rate, on the CPU (or the GPU when one is
visible: both sides alike). The tiny model is the tests' (a 2-layer Llama with random weights and a
tokenizer trained on local text); the data their chat-style parquet, so chat templates are rendered.

Run: ``nox -s bench-tuning`` or ``.venv/bin/python benchmarks/bench_tuning.py [--rounds N --steps N]``.
Results: benchmarks/results/tuning.md and tuning.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TINY = ROOT / "plugins" / "runtime-transformers" / "tests" / "conftest.py"  # the tests' tiny model

CONFIG = """
training_config:
  LoraConfig: {r: 8, lora_alpha: 16, lora_dropout: 0.0, target_modules: all-linear}
  TrainingArguments:
    max_steps: STEPS
    learning_rate: 0.01
    per_device_train_batch_size: 2
    logging_steps: 1
    lr_scheduler_type: constant
    save_strategy: "no"
    seed: 0
  DatasetConfig: {shuffle_dataset: true, shuffle_seed: 42, max_length: 64}
"""

#: The same run written directly against trl + peft, as a user would without kaito.
PLAIN = """
import json, sys, torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

model_dir, data, out, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
gpu = torch.cuda.is_available()
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if gpu else torch.float32)
ds = load_dataset("parquet", data_files=[data], split="train").shuffle(seed=42)
args = SFTConfig(output_dir=out, max_steps=steps, learning_rate=0.01, per_device_train_batch_size=2,
                 logging_steps=1, lr_scheduler_type="constant", save_strategy="no", seed=0, report_to="none",
                 max_length=64, use_cpu=not gpu, disable_tqdm=True, bf16=gpu)  # kaito tune: float32 on a CPU
lora = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear")
trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=lora)
result = trainer.train()
trainer.model.save_pretrained(out)
print("RESULT " + json.dumps({"samples_per_second": result.metrics["train_samples_per_second"]}))
"""


def run(argv: list[str], env: dict[str, str]) -> tuple[str, int, float]:
    """Output, peak RSS (bytes) and CPU seconds (user + system) of one child process."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}):\n{out[-3000:]}")
    return out, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def kaito_run(model: Path, data: Path, work: Path, steps: int, env: dict[str, str]) -> dict[str, float]:
    config = work / "training_config.yaml"
    config.write_text(CONFIG.replace("STEPS", str(steps)))
    out, rss, cpu = run(
        [
            sys.executable,
            "-m",
            "kaito_core.cli.main",
            "tune",
            "--model",
            str(model),
            "--data",
            str(data),
            "--config",
            str(config),
            "--output",
            str(work / "kaito-out"),
            "--no-progress",
        ],
        env,
    )
    found = re.search(r"([0-9.]+) samples/s\)", out)
    if not found:
        raise SystemExit(f"kaito tune printed no samples/s:\n{out[-2000:]}")
    return {"samples_per_second": float(found.group(1)), "peak_rss": rss, "cpu_seconds": cpu}


def plain_run(model: Path, data: Path, work: Path, steps: int, env: dict[str, str]) -> dict[str, float]:
    script = work / "plain.py"
    script.write_text(PLAIN)
    out, rss, cpu = run(
        [sys.executable, str(script), str(model), str(data), str(work / "plain-out"), str(steps)], env
    )
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return {
        "samples_per_second": float(json.loads(line[7:])["samples_per_second"]),
        "peak_rss": rss,
        "cpu_seconds": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    opts = parser.parse_args()
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_fixtures", TINY)
    assert spec is not None and spec.loader is not None
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = tiny.make_tiny_model(work / "model")
        data = tiny.make_chat_parquet(work / "train.parquet", repeat=20)
        rows: dict[str, list[dict[str, float]]] = {"kaito": [], "plain": []}
        for _ in range(opts.rounds):
            rows["plain"].append(plain_run(model, data, work, opts.steps, env))
            rows["kaito"].append(kaito_run(model, data, work, opts.steps, env))
    median: dict[str, dict[str, float]] = {
        side: {
            key: statistics.median(r[key] for r in runs)
            for key in ("samples_per_second", "peak_rss", "cpu_seconds")
        }
        for side, runs in rows.items()
    }
    speed = median["kaito"]["samples_per_second"] / median["plain"]["samples_per_second"]
    memory = median["kaito"]["peak_rss"] / median["plain"]["peak_rss"]
    cpu = median["kaito"]["cpu_seconds"] / median["plain"]["cpu_seconds"]
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {"rounds": opts.rounds, "steps": opts.steps, "batch": 2, "max_length": 64, "lora_r": 8},
        "runs": rows,
        "median": median,
        "ratio": {"samples_per_second": speed, "peak_rss": memory, "cpu_seconds": cpu},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tuning.json").write_text(json.dumps(report, indent=2) + "\n")
    mib = 1024 * 1024
    lines = [
        "# kaito tune vs plain trl/peft",
        "",
        "Tiny Llama (2 layers, random weights), chat-style parquet, LoRA r 8 on all linear layers, "
        f"{opts.steps} steps of batch 2, max length 64; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; median of"
        f" {opts.rounds} interleaved runs, each in a process of its own.",
        "",
        "| | samples/s | peak RSS (MiB) | CPU s (whole process) |",
        "|---|---:|---:|---:|",
        f"| plain trl + peft (baseline) | {median['plain']['samples_per_second']:.2f} | "
        f"{median['plain']['peak_rss'] / mib:.0f} | {median['plain']['cpu_seconds']:.1f} |",
        f"| kaito tune | {median['kaito']['samples_per_second']:.2f} | "
        f"{median['kaito']['peak_rss'] / mib:.0f} | "
        f"{median['kaito']['cpu_seconds']:.1f} |",
        f"| ratio kaito / plain | {speed:.2f}x | {memory:.2f}x | {cpu:.2f}x |",
        "",
        "samples/s is the trainer's own figure (wall clock of the training loop); on a machine shared with"
        " other work it moves with the load, so the CPU seconds of each whole process (from wait4) are shown"
        " beside it.",
        "",
        f"Target: samples/s at least 0.95x the baseline: {'met' if speed >= 0.95 else 'not met'} "
        f"({speed:.2f}x).",
        "",
        "Reproduce: `nox -s bench-tuning` (or `.venv/bin/python benchmarks/bench_tuning.py`).",
    ]
    (RESULTS / "tuning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
