"""What ``cra train`` reads of a curated dataset: its JSONL files (the row is
``appliance.db.training.get_dataset``).

The contract with ``cra curate-data`` (migration 5): ``path`` is a folder under CRA_HOME
with ``train.jsonl``, ``valid.jsonl`` and ``dataset.json``; rows are in trl's formats,
SFT as conversational prompt/completion (``{"prompt": [messages], "completion":
[messages], ...}``, or ``{"messages": [...]}``), DPO as ``{"prompt": [...], "chosen":
[...], "rejected": [...]}``, each with provenance fields trl ignores. Only trl's fields
are handed to the trainer, so provenance of any shape never trips Arrow's type inference.

A malformed line is refused with its file and line number before any training starts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from appliance.config import Home
from appliance.db.training import TrainingDataset
from appliance.errors import BadInput, NotFound

SPLITS = ("train", "valid")
FIELDS = {"sft": (("prompt", "completion"), ("messages",)), "dpo": (("prompt", "chosen", "rejected"),)}


def dataset_file(home: Home, dataset: TrainingDataset, split: str) -> Path:
    """``train.jsonl`` or ``valid.jsonl`` of a dataset (its ``path`` is relative to CRA_HOME)."""
    folder = Path(dataset.path)
    return (folder if folder.is_absolute() else home.root / folder) / f"{split}.jsonl"


def files_sha256(home: Home, dataset: TrainingDataset) -> str:
    """sha256 over train.jsonl then valid.jsonl as they are on disk now (the trained bytes)."""
    h = hashlib.sha256()
    for split in SPLITS:
        path = dataset_file(home, dataset, split)
        if path.is_file():
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def _messages(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in value))


def read_rows(path: Path, kind: str) -> list[dict[str, Any]]:
    """The rows of one JSONL file, reduced to trl's fields; ``BadInput`` at the first bad line."""
    if kind not in FIELDS:
        raise BadInput(f"unknown dataset kind {kind!r}", hint="sft or dpo")
    if not path.is_file():
        raise NotFound(f"the dataset file {path.name} is missing", path=path,
                       hint="rebuild the dataset with 'cra curate-data'")
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInput(f"line {line_no} is not JSON: {exc.msg}", path=path) from exc
            shape = next((keys for keys in FIELDS[kind] if isinstance(row, dict) and all(k in row for k in keys)),
                         None)
            if shape is None:
                wanted = " or ".join("/".join(keys) for keys in FIELDS[kind])
                raise BadInput(f"line {line_no} is not a {kind.upper()} row: it needs {wanted}", path=path,
                               hint="the dataset's kind and its rows disagree: rebuild it with 'cra curate-data'")
            if rows and set(shape) != set(rows[0]):
                raise BadInput(f"line {line_no} has {'/'.join(shape)} where earlier rows have "
                               f"{'/'.join(rows[0])}", path=path, hint="one row shape per file")
            bad = [k for k in shape if not _messages(row[k])]
            if bad:
                raise BadInput(f"line {line_no}: {bad[0]} must be a list of {{role, content}} messages",
                               path=path)
            rows.append({k: row[k] for k in shape})
    return rows
