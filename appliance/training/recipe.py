"""Adapter recipes: ``adapters/<slot>.toml``, one per slot, checked on every load.

A recipe says how ``cra train`` makes a LoRA for one slot: the frozen base model (a path
the user brings; nothing is downloaded), its chat template and end-of-turn token, the
LoRA shape, SFT or DPO and their settings, and what to do on CUDA (QLoRA). The file is
TOML; its shape is checked against ``appliance/schemas/recipe.schema.json`` (a typo is an
error naming the key), then the rules a schema cannot say:

* the rank must not exceed what the serving engine loads (``[serving] max_lora_rank``,
  vLLM's ``--max-lora-rank``), or the adapter trains fine and then cannot be served;
* ``modules_to_save`` and ``new_tokens`` are refused: fully trained modules and resized
  embeddings are not a LoRA, and per-request LoRA serving (vLLM, llama.cpp) cannot load them;
* DeepSpeed ZeRO-2 only (seed 004 §3: ZeRO-3 breaks gradient flow with LoRA on Qwen3);
* ``beta`` belongs to DPO.

Where a recipe is found: ``--recipe FILE``, else ``CRA_HOME/adapters/<slot>.toml``, else
the committed default (``adapters/<slot>.toml``, shipped in the wheel as
``appliance/data/adapters/``). Relative model paths are relative to CRA_HOME.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from appliance import jsonschemas
from appliance.config import Home, ServingConfig
from appliance.errors import BadInput, NotFound
from appliance.status import AdapterSlot, values

SCHEMA = "recipe.schema.json"
FORMAT_VERSION = 1
SOURCE_RECIPES = Path(str(resources.files("appliance").joinpath("data", "adapters")))
"""The committed recipes (``adapters/<slot>.toml``), shipped in the wheel: links to them in a checkout."""

# The seven linear projections of a Llama/Qwen block: what unsloth trains for "all linear".
LINEAR_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelSpec:
    base: str
    base_sha256: str = ""
    gguf: str = ""
    chat_template: str = "model"
    eos_token: str = ""
    new_tokens: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LoraSpec:
    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    modules_to_save: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrainingSpec:
    method: str
    beta: float = 0.1
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = 0
    batch_size: int = 2
    gradient_accumulation_steps: int = 8
    max_length: int = 4096
    warmup_ratio: float = 0.03
    seed: int = 3407
    save_steps: int = 50
    logging_steps: int = 5
    gguf_outtype: str = "f16"


@dataclass(frozen=True)
class CudaSpec:
    quantization: str = "4bit"
    backend: str = "auto"
    gradient_checkpointing: bool = True
    zero_stage: int = 2


@dataclass(frozen=True)
class Recipe:
    """A checked recipe. ``source`` is the file it came from (None when built in code)."""

    slot: str
    model: ModelSpec
    training: TrainingSpec
    lora: LoraSpec = field(default_factory=LoraSpec)
    cuda: CudaSpec = field(default_factory=CudaSpec)
    description: str = ""
    source: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as trained, for the version's metadata (and ``from_dict``)."""
        training = asdict(self.training)
        if self.training.method != "dpo":
            training.pop("beta")
        return {"format_version": FORMAT_VERSION, "slot": self.slot, "description": self.description,
                "model": asdict(self.model), "lora": asdict(self.lora), "training": training,
                "cuda": asdict(self.cuda)}

    @property
    def sha256(self) -> str:
        """Over the canonical JSON of ``to_dict``: equal recipes hash equal, whatever the file's layout."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def base_path(self, home: Home) -> Path:
        return resolve_path(home, self.model.base)

    def gguf_path(self, home: Home) -> Path | None:
        return resolve_path(home, self.model.gguf) if self.model.gguf else None

    def chat_template_path(self, home: Home) -> Path | None:
        if self.model.chat_template == "model":
            return None
        return resolve_path(home, self.model.chat_template)

    def target_modules(self, *, unsloth: bool = False) -> str | list[str]:
        """peft's ``target_modules``; unsloth wants the projections named."""
        if self.lora.target_modules == "all-linear" and unsloth:
            return list(LINEAR_PROJECTIONS)
        return self.lora.target_modules


def resolve_path(home: Home, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else home.root / path


def _where(source: Path | str | None) -> str:
    return str(source) if source is not None else "recipe"


def recipe_from_dict(data: Any, *, serving: ServingConfig | None = None,
                     source: Path | str | None = None) -> Recipe:
    """A checked ``Recipe`` from TOML-shaped data; ``BadInput`` naming the key and the fix."""
    where = _where(source)
    if isinstance(data, dict) and isinstance(data.get("format_version"), int) \
            and data["format_version"] > FORMAT_VERSION:
        raise BadInput(f"{where}: /format_version {data['format_version']} is newer than this cra reads "
                       f"({FORMAT_VERSION})", hint="upgrade cra on this machine")
    error = jsonschemas.first_error(SCHEMA, data)
    if error is not None:
        raise BadInput(f"{where}: {jsonschemas.pointer(error[0])}: {error[1][:200]}",
                       hint="see adapters/plan.toml in cra's source for a commented example")
    if data["training"]["method"] != "dpo" and "beta" in data["training"]:
        raise BadInput(f"{where}: /training/beta: beta is DPO's; this recipe trains {data['training']['method']}",
                       hint="remove beta, or set method = \"dpo\"")
    recipe = Recipe(
        slot=data["slot"], description=data.get("description", ""),
        model=ModelSpec(**data["model"]), training=TrainingSpec(**data["training"]),
        lora=LoraSpec(**data.get("lora", {})), cuda=CudaSpec(**data.get("cuda", {})),
        source=Path(source) if source is not None else None,
    )
    check_servable(recipe, serving or ServingConfig(), where=where)
    return recipe


def check_servable(recipe: Recipe, serving: ServingConfig, *, where: str = "recipe") -> None:
    """The rules the schema cannot say; each refusal gives its reason."""
    if recipe.lora.r > serving.max_lora_rank:
        raise BadInput(
            f"{where}: /lora/r: rank {recipe.lora.r} is above what the serving engine loads "
            f"(max_lora_rank {serving.max_lora_rank}; vLLM refuses larger adapters at --max-lora-rank)",
            hint="lower lora.r, or raise [serving] max_lora_rank in cra.toml (more GPU memory per adapter)")
    if recipe.lora.modules_to_save:
        raise BadInput(
            f"{where}: /lora/modules_to_save: {', '.join(recipe.lora.modules_to_save)} would be trained in "
            "full and saved beside the LoRA; vLLM and llama.cpp load only LoRA matrices per request, so "
            "the adapter could not be served",
            hint="remove modules_to_save; train the base model outside cra if those modules must change")
    if recipe.model.new_tokens:
        raise BadInput(
            f"{where}: /model/new_tokens: adding tokens resizes the embeddings, which a per-request LoRA "
            "cannot carry (the served base keeps its vocabulary)",
            hint="use tokens the base tokenizer already has (chat markers are usually there)")
    if recipe.cuda.zero_stage != 2:
        raise BadInput(
            f"{where}: /cuda/zero_stage: only DeepSpeed ZeRO-2 is used for several GPUs; ZeRO-3 breaks "
            "gradient flow with LoRA on Qwen3 (seed 004 §3)", hint="set zero_stage = 2 or leave it out")


def load_recipe(path: Path | str, *, serving: ServingConfig | None = None) -> Recipe:
    """Read and check one recipe file."""
    p = Path(path)
    if not p.is_file():
        raise NotFound(f"no recipe file at {p}", path=p, hint="give an adapters/<slot>.toml file")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"not valid TOML: {exc}", path=p) from exc
    except UnicodeDecodeError as exc:
        raise BadInput("not UTF-8 text", path=p) from exc
    return recipe_from_dict(data, serving=serving, source=p)


def recipe_path(home: Home, slot: str) -> Path:
    """Where the recipe of ``slot`` is: CRA_HOME's own, else the committed default."""
    if slot not in values(AdapterSlot):
        raise BadInput(f"unknown adapter slot {slot!r}", hint=f"use one of {', '.join(values(AdapterSlot))}")
    for candidate in (home.adapters / f"{slot}.toml", SOURCE_RECIPES / f"{slot}.toml"):
        if candidate.is_file():
            return candidate
    raise NotFound(f"no recipe for the {slot} slot", path=home.adapters / f"{slot}.toml",
                   hint="write one (copy adapters/plan.toml from cra's source) or pass --recipe FILE")


def slot_recipe(home: Home, slot: str, *, serving: ServingConfig | None = None,
                path: Path | str | None = None) -> Recipe:
    """The recipe ``cra train SLOT`` uses; ``BadInput`` when the file is for another slot."""
    recipe = load_recipe(path or recipe_path(home, slot), serving=serving)
    if recipe.slot != slot:
        raise BadInput(f"{recipe.source}: the recipe is for the {recipe.slot} slot, not {slot}",
                       hint=f"pass the {slot} recipe, or train the {recipe.slot} slot")
    return recipe
