"""Training data: parquet, jsonl or csv files, in one of the shapes trl's SFTTrainer trains on.

- a ``messages`` column of role/content turns (the chat-style parquet of dolly-15k in OpenAI style),
  rendered with the model's chat template by the trainer;
- ``prompt``/``completion`` columns (KAITO's ``context_column``/``response_column``), the loss on the
  completion only;
- a single text column (``response_column``, ``text`` by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Dataset

#: File suffix -> the `datasets` builder that reads it.
BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


class DatasetError(ValueError):
    """Data the trainer cannot use; the message says which file or column and what to change."""


def data_files(paths: Sequence[str | Path]) -> tuple[str, list[str]]:
    """The builder and the files: every file given, or every data file in a directory given."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix in BUILDERS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise DatasetError(f"{path} does not exist")
    if not found:
        raise DatasetError(
            f"no parquet, jsonl or csv file in {', '.join(str(p) for p in paths)}; "
            "give the data as .parquet, .jsonl or .csv"
        )
    kinds = {BUILDERS.get(p.suffix) for p in found}
    if None in kinds:
        odd = next(p for p in found if p.suffix not in BUILDERS)
        raise DatasetError(f"{odd}: unsupported data file type {odd.suffix!r}; use .parquet, .jsonl or .csv")
    if len(kinds) > 1:
        raise DatasetError("the data files mix formats; give parquet, jsonl or csv files, one kind")
    return str(kinds.pop()), [str(p) for p in found]


def load(paths: Sequence[str | Path], dataset_config: dict[str, Any]) -> Dataset:
    """The training split, with columns renamed to what SFTTrainer reads."""
    from datasets import load_dataset

    builder, files = data_files(paths)
    dataset = load_dataset(builder, data_files=files, split="train")
    dataset = shape(dataset, dataset_config)
    if dataset_config.get("shuffle_dataset", True):
        dataset = dataset.shuffle(seed=int(dataset_config.get("shuffle_seed", 42)))
    split = float(dataset_config.get("train_test_split", 1))
    if split < 1:
        dataset = dataset.train_test_split(
            train_size=split, seed=int(dataset_config.get("shuffle_seed", 42))
        )["train"]
    if len(dataset) == 0:
        raise DatasetError("the training data has no rows")
    return dataset


def shape(dataset: Dataset, config: dict[str, Any]) -> Dataset:
    columns = set(dataset.column_names)
    messages = config.get("messages_column") or ("messages" if "messages" in columns else None)
    if messages:
        _need(columns, messages, "messages_column")
        return dataset.select_columns([messages]).rename_columns(
            {messages: "messages"} if messages != "messages" else {}
        )
    context, response = config.get("context_column"), config.get("response_column")
    if context is None and {"prompt", "completion"} <= columns:
        context, response = "prompt", "completion"
    if context:
        response = response or "text"
        _need(columns, context, "context_column")
        _need(columns, response, "response_column")
        kept = dataset.select_columns([context, response])
        renames = {k: v for k, v in ((context, "prompt"), (response, "completion")) if k != v}
        return kept.rename_columns(renames) if renames else kept
    text = response or "text"
    _need(columns, text, "response_column")
    kept = dataset.select_columns([text])
    return kept.rename_column(text, "text") if text != "text" else kept


def _need(columns: set[str], column: str, key: str) -> None:
    if column not in columns:
        raise DatasetError(
            f"training_config.DatasetConfig.{key}: the data has no column {column!r} "
            f"(it has {', '.join(sorted(columns))})"
        )
