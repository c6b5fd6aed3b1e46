"""``kaito tune``: train a LoRA/QLoRA adapter for a local model on local data (the tuning Job's command)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click


@click.command("tune")
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Directory of the base model (Hugging Face safetensors, config.json, tokenizer).",
)
@click.option(
    "--data",
    "data",
    required=True,
    multiple=True,
    type=click.Path(exists=True),
    help="A parquet, jsonl or csv file, or a directory of them (repeatable).",
)
@click.option("--method", type=click.Choice(["lora", "qlora"]), default="lora", show_default=True)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="KAITO's training_config.yaml; without it, the method's defaults.",
)
@click.option(
    "--output",
    "output_dir",
    type=click.Path(file_okay=False),
    help="Where the adapter goes (default: TrainingArguments.output_dir, /mnt/results).",
)
@click.option("--max-steps", type=int, help="Overrides TrainingArguments.max_steps.")
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve loss, steps and samples/s on /metrics at this port while training.",
)
@click.option("--check", is_flag=True, help="Only check the config and the data, then exit.")
@click.option("--progress/--no-progress", default=None, help="A progress bar (default: on a terminal).")
def tune_command(model_dir: str, data: tuple[str, ...], method: str, config_file: str | None,
                 output_dir: str | None, max_steps: int | None, metrics_port: int | None, check: bool,
                 progress: bool | None) -> None:  # fmt: skip
    """Fine-tune a model with LoRA (or QLoRA on an NVIDIA GPU); writes adapter_config.json and
    adapter_model.safetensors."""
    from kaito_runtime_transformers import config as config_mod
    from kaito_runtime_transformers import data as data_mod

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    text = Path(config_file).read_text() if config_file else None
    try:
        cfg = config_mod.parse(text, method)
        if max_steps is not None:
            cfg.training["max_steps"] = max_steps
        data_mod.data_files(list(data))
    except (config_mod.TrainingConfigError, data_mod.DatasetError) as exc:
        raise click.ClickException(str(exc)) from None
    if check:
        click.echo(f"ok: {method}, {len(data_mod.data_files(list(data))[1])} data file(s)")
        return
    from kaito_runtime_transformers.metrics import TrainingMetrics
    from kaito_runtime_transformers.train import tune

    metrics = TrainingMetrics()
    if metrics_port is not None:
        click.echo(f"metrics on :{metrics.serve(metrics_port)}/metrics", err=True)
    try:
        result = tune(model_dir, list(data), cfg, output_dir, metrics=metrics,
                      progress=sys.stderr.isatty() if progress is None else progress)  # fmt: skip
    except (config_mod.TrainingConfigError, data_mod.DatasetError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        metrics.close()
    last = f", last loss {result.losses[-1]:.4f}" if result.losses else ""
    click.echo(f"adapter written to {result.output_dir} ({result.steps} steps{last}, "
               f"{result.samples_per_second:.2f} samples/s)")  # fmt: skip
