"""The trainer behind ``kaito tune``: LoRA (anywhere) or QLoRA (an NVIDIA GPU) with trl's SFTTrainer + peft.

What it writes into the output directory:

- ``adapter_config.json`` and ``adapter_model.safetensors`` (peft's format, what KAITO's tuning writes
  and what an inference Workspace's ``adapters[]`` loads);
- ``.checkpoints/checkpoint-N`` while it trains: a Job whose pod is preempted starts again from the
  newest one (the directory is hidden, so ``kaito model push`` of the output leaves it out);
- ``.kaito-tune-done``: written last, after the adapter; what a pusher waits for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaito_runtime_transformers.config import TrainingConfig, TrainingConfigError
from kaito_runtime_transformers.metrics import TrainingMetrics

log = logging.getLogger("kaito.tune")
CHECKPOINTS = ".checkpoints"
DONE_FILE = ".kaito-tune-done"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass(frozen=True)
class TuneResult:
    output_dir: Path
    steps: int
    losses: tuple[float, ...]  # the loss of every logged step, in order
    samples_per_second: float
    resumed_from: str | None


def dtype_of(name: str | None, on_gpu: bool) -> Any:
    import torch

    if name in (None, "auto"):
        return torch.bfloat16 if on_gpu else torch.float32
    value = getattr(torch, str(name), None)
    if not isinstance(value, torch.dtype):
        raise TrainingConfigError(f"training_config.ModelConfig.torch_dtype: {name!r} is not a torch dtype")
    return value


def load_base(model_dir: str | Path, config: TrainingConfig, on_gpu: bool) -> tuple[Any, Any]:
    """The base model (quantized for QLoRA) and its tokenizer, from local files only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    model_args = dict(config.model)
    trust = bool(model_args.pop("trust_remote_code", False))  # only when asked for
    dtype = dtype_of(model_args.pop("torch_dtype", model_args.pop("dtype", None)), on_gpu)
    if not on_gpu and dtype is not None and str(dtype) == "torch.bfloat16":
        dtype = dtype_of("float32", on_gpu)  # bf16 matmuls on a CPU are slow and lose precision
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust, "local_files_only": True}
    if on_gpu:
        kwargs["device_map"] = model_args.get("device_map", "auto")
    if config.quantized:
        quant = dict(config.quantization)
        if isinstance(quant.get("bnb_4bit_compute_dtype"), str):
            quant["bnb_4bit_compute_dtype"] = dtype_of(quant["bnb_4bit_compute_dtype"], True)
        kwargs["quantization_config"] = BitsAndBytesConfig(**quant)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=trust)
    if config.model.get("chat_template"):
        tokenizer.chat_template = config.model["chat_template"]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    return model, tokenizer


def tune(
    model_dir: str | Path,
    data: Sequence[str | Path],
    config: TrainingConfig,
    output_dir: str | Path | None = None,
    *,
    metrics: TrainingMetrics | None = None,
    on_log: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
) -> TuneResult:
    """Train an adapter; returns when the adapter files are written."""
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from kaito_runtime_transformers import data as data_mod

    on_gpu = torch.cuda.is_available()
    if config.quantized and not on_gpu:
        raise TrainingConfigError(
            "method qlora quantizes the base model to 4 bits with bitsandbytes, which needs an NVIDIA "
            "GPU; none is visible here. Use method lora on a CPU, or run on a GPU node"
        )
    out = Path(output_dir or config.training.get("output_dir") or "/mnt/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / DONE_FILE).unlink(missing_ok=True)
    checkpoints = out / CHECKPOINTS
    dataset = data_mod.load(data, config.dataset)
    model, tokenizer = load_base(model_dir, config, on_gpu)
    if "messages" in dataset.column_names and not tokenizer.chat_template:
        raise data_mod.DatasetError(
            "the data is chat-style (a messages column) but the model has no chat template; set "
            "training_config.ModelConfig.chat_template"
        )

    args = {
        "per_device_train_batch_size": 1,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 50,
        "save_total_limit": 2,
        "report_to": "none",
        **config.training,
    }
    args.update(output_dir=str(checkpoints), use_cpu=not on_gpu, disable_tqdm=not progress)
    if "max_length" in config.dataset:
        args["max_length"] = int(config.dataset["max_length"])
    if args.get("save_strategy") == "epoch" and "max_steps" in config.training:
        args["save_strategy"] = "steps"  # a run bounded by steps saves by steps, so it can resume
    if not on_gpu:
        args.update(bf16=False, fp16=False)
        args.pop("ddp_find_unused_parameters", None)  # a DDP setting; one CPU process has no DDP
    sft = SFTConfig(**args)
    lora = LoraConfig(task_type="CAUSAL_LM", **config.lora)

    losses: list[float] = []

    class Report(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            logs = dict(kwargs.get("logs") or {})
            if "loss" in logs:
                losses.append(float(logs["loss"]))
                line = {"step": float(state.global_step), "loss": float(logs["loss"])}
                if state.max_steps:
                    line["max_steps"] = float(state.max_steps)
                log.info("step %d/%d loss %.4f", state.global_step, state.max_steps, logs["loss"])
                if metrics is not None:
                    metrics.step(state.global_step, state.max_steps, float(logs["loss"]))
                if on_log is not None:
                    on_log(line)
            if "train_samples_per_second" in logs and metrics is not None:
                metrics.samples_per_second.set(float(logs["train_samples_per_second"]))

    trainer = SFTTrainer(
        model=model,
        args=sft,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[Report()],
    )
    resume = _newest_checkpoint(checkpoints)
    device = torch.cuda.get_device_name(0) if on_gpu else "the CPU"
    log.info("training %s on %s, %d rows", "qlora" if config.quantized else "lora", device, len(dataset))
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    elapsed = time.perf_counter() - started
    trained: Any = trainer.model
    trained.save_pretrained(str(out), safe_serialization=True)
    missing = [name for name in ADAPTER_FILES if not (out / name).is_file()]
    if missing:
        raise RuntimeError(f"peft wrote no {', '.join(missing)} into {out}")
    samples = float(result.metrics.get("train_samples_per_second") or 0.0)
    log.info(
        "adapter written to %s (%d steps, %.2f samples/s, %.1f s)", out, result.global_step, samples, elapsed
    )
    (out / DONE_FILE).write_text(f"{result.global_step}\n")
    return TuneResult(
        output_dir=out,
        steps=int(result.global_step),
        losses=tuple(losses),
        samples_per_second=samples,
        resumed_from=str(resume) if resume else None,
    )


def _newest_checkpoint(directory: Path) -> Path | None:
    found = [p for p in directory.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None
