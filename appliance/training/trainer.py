"""``cra train SLOT --dataset ID``: one LoRA adapter from a curated dataset, registered as a version.

The job, in order:

1. the slot's recipe (``appliance.training.recipe``) and the dataset row; the dataset must
   be for this slot and of the recipe's method (SFT or DPO);
2. the frozen base model (seed 004 §6: never a merged one): a Hugging Face folder, not an
   adapter; its sha256 is computed and must match the recipe's pin, or else the hash the
   slot's earlier versions were trained on from the same path;
3. the run folder ``var/train/<slot>-<key>/``, keyed by recipe, dataset and base hashes:
   checkpoints live there, so ``--resume`` finds them only for the same three inputs;
4. ``fit`` in this process (CPU, one GPU) or ``accelerate launch`` (several GPUs);
   Ctrl-C saves a checkpoint and raises ``Interrupted`` naming the resume command;
5. the GGUF copy (llama.cpp's converter), ``metadata.json`` and the registry: the folder
   becomes ``adapters/<slot>/v<N>/`` and the ``candidate``; the run folder is removed.

Library API: ``train(home, db, slot, dataset_id, ...) -> TrainResult``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance.adapters.registry import GGUF_NAME, VersionMeta, register
from appliance.atomic import write_atomic
from appliance.config import Home, Settings, load_settings
from appliance.db import adapters as adapter_sql
from appliance.db.adapters import AdapterVersion
from appliance.db.core import Database
from appliance.db.training import TrainingDataset, get_dataset
from appliance.errors import BadInput, Interrupted, NotFound
from appliance.hashing import sha256_tree, tree_digest
from appliance.training.datasets import dataset_file, files_sha256
from appliance.training.distributed import gpu_count, launch
from appliance.training.fit import (
    FitOutcome,
    FitPlan,
    Progress,
    choose_backend,
    fit,
    last_checkpoint,
)
from appliance.training.gguf import convert_lora, find_converter
from appliance.training.recipe import Recipe, slot_recipe


@dataclass
class TrainResult:
    """The registered version and what training did."""

    version: AdapterVersion
    outcome: FitOutcome
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"slot": self.version.slot, "version": self.version.version, "name": self.version.name,
                "path": self.version.path, "alias": "candidate", "wall_s": self.wall_s,
                "timings": self.version.metrics.get("timings", {}), "outcome": self.outcome.to_dict()}


def base_model_sha256(db: Database, recipe: Recipe, base: Path) -> str:
    """The frozen base's hash, checked (see the module doc); ``BadInput`` with the reason."""
    if not base.is_dir():
        raise NotFound("the base model folder does not exist", path=base,
                       hint="cra never downloads models: put the Hugging Face folder there, or fix "
                            "[model] base in the recipe")
    if (base / "adapter_config.json").is_file():
        raise BadInput("the base model folder holds a LoRA adapter, not a base model", path=base,
                       hint="training always starts from the frozen base model, never from an adapter")
    if not (base / "config.json").is_file():
        raise BadInput("the base model folder has no config.json: not a Hugging Face model", path=base)
    digest = tree_digest(sha256_tree(base, hidden=False))
    pinned = recipe.model.base_sha256
    if pinned and digest != pinned:
        raise BadInput(f"the base model's sha256 is {digest[:16]}..., the recipe pins {pinned[:16]}...: "
                       "a merged or altered model is never a base (seed 004 §6)", path=base,
                       hint="restore the original base model, or pin the new hash if the base really changed")
    if not pinned:
        earlier = [v for v in adapter_sql.list_versions(db, recipe.slot)
                   if v.base_model == recipe.model.base and v.base_sha256 != digest]
        if earlier:
            raise BadInput(
                f"the base model changed since {earlier[-1].label} was trained on it (sha256 "
                f"{earlier[-1].base_sha256[:16]}..., now {digest[:16]}...): training starts from the frozen "
                "base, never from a merged or altered one (seed 004 §6)", path=base,
                hint=f"restore it, or accept the new base with [model] base_sha256 = \"{digest}\" in the recipe")
    return digest


def _check_dataset(dataset: TrainingDataset, recipe: Recipe, home: Home) -> None:
    if dataset.slot != recipe.slot:
        raise BadInput(f"dataset {dataset.id} was curated for the {dataset.slot} slot, not {recipe.slot}",
                       hint=f"pass a {recipe.slot} dataset (cra datasets list)")
    if dataset.kind != recipe.training.method:
        raise BadInput(f"dataset {dataset.id} is {dataset.kind.upper()} data; the {recipe.slot} recipe trains "
                       f"{recipe.training.method.upper()}", path=recipe.source,
                       hint="pass a dataset of the recipe's kind, or a recipe with the other method (--recipe)")
    if not dataset_file(home, dataset, "train").is_file():
        raise NotFound(f"dataset {dataset.id} has no train.jsonl", path=dataset_file(home, dataset, "train").parent,
                       hint="rebuild it with 'cra curate-data'")


def run_dir(home: Home, recipe: Recipe, dataset: TrainingDataset, data_hash: str, base_sha256: str) -> Path:
    key = hashlib.sha256(f"{recipe.sha256}\0{dataset.id}\0{data_hash}\0{base_sha256}".encode()).hexdigest()
    return home.var / "train" / f"{recipe.slot}-{key[:16]}"


def train(home: Home, db: Database, slot: str, dataset_id: int, *, settings: Settings | None = None,
          recipe_file: Path | str | None = None, resume: bool = False,
          progress: Progress | None = None) -> TrainResult:
    """Train ``slot``'s LoRA on dataset ``dataset_id`` and register it; see the module doc.

    Raises ``BadInput``/``NotFound`` for a bad recipe, dataset or base model (before any
    training), ``MissingExtra`` without the ``train`` extra (or the ``gpu`` one on CUDA),
    ``Interrupted`` after Ctrl-C (a checkpoint is saved; ``resume=True`` continues).
    """
    started = time.monotonic()
    settings = settings or load_settings(home)
    recipe = slot_recipe(home, slot, serving=settings.serving, path=recipe_file)
    dataset = get_dataset(db, dataset_id)
    _check_dataset(dataset, recipe, home)
    base = recipe.base_path(home)
    base_sha256 = base_model_sha256(db, recipe, base)
    gguf_base = recipe.gguf_path(home)
    if gguf_base is not None and not gguf_base.is_file():
        raise NotFound("the recipe's base GGUF file does not exist", path=gguf_base,
                       hint="convert the base once with llama.cpp's convert_hf_to_gguf.py, or set [model] gguf = \"\"")
    template = recipe.chat_template_path(home)
    if template is not None and not template.is_file():
        raise NotFound("the recipe's chat template file does not exist", path=template)
    converter = find_converter(home, settings.training) if settings.training.gguf else None
    data_hash = files_sha256(home, dataset)

    folder = run_dir(home, recipe, dataset, data_hash, base_sha256)
    checkpoints = folder / "checkpoints"
    last = last_checkpoint(checkpoints) if checkpoints.is_dir() else None
    if last is not None and not resume:
        raise BadInput(f"an interrupted run of this recipe and dataset left a checkpoint at step "
                       f"{last.name.split('-')[-1]}", path=folder,
                       hint=f"continue it with: cra train {slot} --dataset {dataset_id} --resume "
                            "(or delete that folder to start over)")
    if resume and last is None:
        raise BadInput(f"nothing to resume for {slot} with dataset {dataset_id} and this recipe and base model",
                       hint=f"start it with: cra train {slot} --dataset {dataset_id}")
    staging = folder / "adapter"
    if staging.exists():  # what a run that failed after training left; it is made again
        shutil.rmtree(staging)
    folder.mkdir(parents=True, exist_ok=True)
    gpus = gpu_count()
    plan = FitPlan(
        recipe=recipe.to_dict(), base=str(base), kind=recipe.training.method,
        train_file=str(dataset_file(home, dataset, "train")), valid_file=str(dataset_file(home, dataset, "valid")),
        checkpoints=str(checkpoints), adapter_dir=str(staging),
        backend=choose_backend(asdict(recipe.cuda), has_cuda=gpus > 0, several_gpus=gpus > 1),
        resume=resume, keep_checkpoints=settings.training.keep_checkpoints,
        chat_template=str(template) if template else None)
    write_atomic(folder / "run.json", json.dumps({
        "slot": slot, "dataset_id": dataset_id, "dataset_hash": data_hash, "base_sha256": base_sha256,
        "recipe_sha256": recipe.sha256, "plan": asdict(plan)}, indent=1))

    prepared = time.monotonic()
    outcome = launch(plan, folder, gpus, progress) if gpus > 1 else fit(plan, progress)
    fitted = time.monotonic()
    if outcome.interrupted:
        raise Interrupted(
            f"training stopped at step {outcome.steps} of {outcome.total_steps}; the checkpoint is in {checkpoints}",
            hint=f"continue with: cra train {slot} --dataset {dataset_id} --resume")
    if converter is not None:
        convert_lora(converter, staging, base, staging / GGUF_NAME, outtype=recipe.training.gguf_outtype,
                     log=folder / "convert-lora.log")
    wall_s = round(time.monotonic() - started, 3)
    # Where the time outside the training loop went (benchmarks/train.py reports it).
    timings = {"prepare_s": round(prepared - started, 3), "fit_s": round(fitted - prepared, 3),
               "gguf_s": round(time.monotonic() - fitted, 3)}
    metrics = {**outcome.to_dict(), "wall_s": wall_s, "timings": timings}
    version = register(db, home, slot, staging, VersionMeta(
        method=recipe.training.method, rank=recipe.lora.r, base_model=recipe.model.base, base_sha256=base_sha256,
        base_gguf=recipe.model.gguf or None, dataset_id=dataset.id, dataset_hash=data_hash,
        recipe=recipe.to_dict(), recipe_sha256=recipe.sha256, metrics=metrics,
        extra={"dataset_content_hash": dataset.content_hash, "dataset_cutoff_ts": dataset.cutoff_ts}),
        reason=f"trained on dataset {dataset.id}")
    shutil.rmtree(folder, ignore_errors=True)  # the checkpoints served their purpose
    return TrainResult(version=version, outcome=outcome, wall_s=wall_s)
