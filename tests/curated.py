"""Curated datasets for training tests, in the contract ``cra curate-data`` writes (migration 5).

``write_dataset`` puts a folder with ``train.jsonl``, ``valid.jsonl`` and ``dataset.json``
under ``CRA_HOME/var/datasets/`` and inserts its ``training_datasets`` row and one
``training_dataset_rows`` row per example, as curate-data does, so ``cra train`` reads
exactly what it will read in production. Rows come from real triples (``triple_rows``)
or from the tiny model's plan examples (``plan_sft_rows`` / ``plan_dpo_rows``), whose
adapter behaviour (pick the last file) a test can see in the output.

``tiny_recipe`` writes the recipe that trains on the tiny model in seconds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tinymodel import TinyModel, plan_examples

from appliance.config import Home
from appliance.db.core import Database

CUTOFF_TS = 1_735_689_600  # 2025-01-01


def plan_sft_rows(count: int, *, seed: int = 7, last_file: bool = True) -> list[dict[str, Any]]:
    """Conversational prompt/completion rows whose answers pick the last (or first) file."""
    return [{"prompt": ex[:-1], "completion": ex[-1:], "source": "gold", "repo": "tiny", "sha": f"{i:040x}"}
            for i, ex in enumerate(plan_examples(seed, last_file=last_file, count=count))]


def plan_dpo_rows(count: int, *, seed: int = 7) -> list[dict[str, Any]]:
    """Preference rows: chosen picks the last file, rejected the first (what the base does)."""
    last = plan_examples(seed, last_file=True, count=count)
    first = plan_examples(seed, last_file=False, count=count)
    return [{"prompt": a[:-1], "chosen": a[-1:], "rejected": b[-1:], "source": "gold", "repo": "tiny",
             "sha": f"{i:040x}"} for i, (a, b) in enumerate(zip(last, first, strict=True))]


def triple_rows(triples: list[Any]) -> list[dict[str, Any]]:
    """Stored SFT triples (``appliance.db.triples.TripleRecord``) as prompt/completion rows."""
    return [{"prompt": t.prompt, "completion": t.completion, "source": "gold", "repo": t.repo, "sha": t.sha,
             "triple_id": t.id} for t in triples]


def write_dataset(db: Database, home: Home, *, slot: str, kind: str, train: list[dict[str, Any]],
                  valid: list[dict[str, Any]] | None = None, tag: str = "") -> int:
    """A curated dataset on disk and in the DB (``appliance.db.training``'s own inserts); its id."""
    from appliance.db.training import DatasetRow, NewDataset, insert_dataset, insert_dataset_rows

    valid = valid or []
    text = {split: "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
            for split, rows in (("train", train), ("valid", valid))}
    content_hash = hashlib.sha256((text["train"] + "\0" + text["valid"]).encode()).hexdigest()
    rel = Path("var") / "datasets" / f"{slot}-{kind}-{content_hash[:12]}{tag}"
    folder = home.root / rel
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid"):
        (folder / f"{split}.jsonl").write_text(text[split], encoding="utf-8")
    total = len(train) + len(valid)
    counts = {"selected": total, "kept": total}
    (folder / "dataset.json").write_text(json.dumps({
        "version": 1, "slot": slot, "kind": kind, "cutoff_ts": CUTOFF_TS, "counts": counts,
        "source_mix": {"gold": total}, "content_hash": content_hash}), encoding="utf-8")
    rows = [DatasetRow(split=split, row_no=i, source=row.get("source", "gold"),
                       content_hash=hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest(),
                       triple_id=row.get("triple_id"), repo=row.get("repo"), sha=row.get("sha"),
                       author_ts=CUTOFF_TS - 86_400)
            for split, split_rows in (("train", train), ("valid", valid)) for i, row in enumerate(split_rows)]
    with db.write() as conn:
        dataset_id = insert_dataset(conn, NewDataset(
            slot=slot, kind=kind, plan_id=None, content_hash=content_hash, cutoff_ts=CUTOFF_TS,
            rows_train=len(train), rows_valid=len(valid), counts=counts, source_mix={"gold": total},
            domain_mix={"tiny": total}, params={"replay": 0.0}), rel.as_posix())
        insert_dataset_rows(conn, dataset_id, rows)
    return dataset_id


def tiny_recipe(home: Home, model: TinyModel, *, slot: str = "plan", method: str = "sft", steps: int = 16,
                save_steps: int = 8, rank: int = 8, learning_rate: float = 2e-2, extra: str = "") -> Path:
    """``CRA_HOME/adapters/<slot>.toml`` training a LoRA on the tiny model in seconds."""
    beta = "beta = 0.1\n" if method == "dpo" else ""
    text = f"""format_version = 1
slot = "{slot}"
description = "tiny test recipe"

[model]
base = "{model.hf_dir}"
gguf = "{model.gguf}"
chat_template = "model"
eos_token = "<|im_end|>"

[lora]
r = {rank}
alpha = {2 * rank}
dropout = 0.0
target_modules = "all-linear"

[training]
method = "{method}"
{beta}learning_rate = {learning_rate}
max_steps = {steps}
batch_size = 4
gradient_accumulation_steps = 1
max_length = 256
warmup_ratio = 0.0
seed = 11
save_steps = {save_steps}
logging_steps = 2
gguf_outtype = "f32"
{extra}"""
    path = home.adapters / f"{slot}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def staged_files(folder: Path, content: str) -> Path:
    """A staging folder holding adapter-shaped files (for registry logic that never reads them)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8, "note": content}))
    (folder / "adapter_model.safetensors").write_bytes(hashlib.sha256(content.encode()).digest() * 64)
    (folder / "adapter.gguf").write_bytes(b"not a GGUF: " + content.encode())  # llama.cpp refuses it
    return folder


def staged_tiny_lora(folder: Path, model: TinyModel) -> Path:
    """The tiny model's own LoRA (prefers the last file), PEFT files and GGUF, ready to register."""
    import shutil

    assert model.lora_gguf is not None
    shutil.copytree(model.root / "lora", folder)
    shutil.copy(model.lora_gguf, folder / "adapter.gguf")
    return folder


def version_meta(model_base: str = "models/base", base_gguf: str | None = None, rank: int = 8) -> Any:
    from appliance.adapters.registry import VersionMeta

    return VersionMeta(method="sft", rank=rank, base_model=model_base, base_sha256="b" * 64,
                       dataset_hash="d" * 64, recipe={"slot": "plan"}, recipe_sha256="r" * 64,
                       metrics={"steps": 1}, base_gguf=base_gguf)
