"""One LoRA training run, in this process: trl's ``SFTTrainer`` / ``DPOTrainer`` over peft.

``trainer.train`` decides *what* is trained (recipe, dataset, base, where the result
goes); this module only runs it, from a ``FitPlan`` that is plain JSON so the same code
runs under ``accelerate launch`` on several GPUs (``appliance.training.worker``).

Backends (``choose_backend``), all imported lazily:

* ``peft``: the CPU (and any machine without CUDA) path, float32, for real; on CUDA with
  ``quantization = "none"``, bf16.
* ``peft-4bit``: CUDA QLoRA through bitsandbytes (NF4, double quantisation, bf16 compute).
* ``unsloth``: CUDA QLoRA through unsloth's ``FastLanguageModel`` (4-bit, the seven linear
  projections), preferred when installed (seed 004 §3).

Checkpoints: every ``save_steps``, with optimizer and scheduler state, so ``--resume``
continues at the same step and ends at the same final step count. Ctrl-C asks the
trainer to save a checkpoint at the end of the current step and stop (``Stopper``); a
second Ctrl-C stops at once.

Tokens per second: the non-padding tokens of every batch trained on (the trainer's own
``num_input_tokens_seen``), over the time spent inside ``trainer.train``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any, Self

from appliance.errors import BadInput, MissingExtra
from appliance.offline import OFFLINE_ENV
from appliance.training.datasets import read_rows
from appliance.training.recipe import LINEAR_PROJECTIONS
from appliance.training.tokens import token_lengths


@dataclass
class FitPlan:
    """Everything one training run needs, as JSON-able values (absolute paths)."""

    recipe: dict[str, Any]          # Recipe.to_dict()
    base: str                       # the frozen base model folder
    kind: str                       # sft / dpo
    train_file: str
    valid_file: str | None
    checkpoints: str                # the trainer's output_dir
    adapter_dir: str                # where the PEFT adapter is saved when training ends
    backend: str = "peft"           # peft / peft-4bit / unsloth
    resume: bool = False
    keep_checkpoints: int = 2
    chat_template: str | None = None   # a .jinja file replacing the tokenizer's template
    progress_file: str | None = None   # JSON lines of TrainProgress (several-GPU runs)
    deepspeed: str | None = None       # a DeepSpeed config (several-GPU runs)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> FitPlan:
        return cls(**json.loads(text))


@dataclass
class TrainProgress:
    """One progress report: after every logging step and at the end."""

    step: int
    total: int
    loss: float | None = None
    tokens_per_s: float | None = None
    epoch: float | None = None


@dataclass
class FitOutcome:
    """What a run did. ``interrupted``: stopped by Ctrl-C after saving a checkpoint."""

    steps: int
    total_steps: int
    interrupted: bool
    resumed_from_step: int | None
    train_loss: float | None
    eval: dict[str, float] = field(default_factory=dict)
    loss_curve: list[list[float]] = field(default_factory=list)  # [[step, loss], ...]
    tokens: int = 0
    train_s: float = 0.0  # inside trainer.train(): the training loop and its checkpoints
    setup_s: float = 0.0  # before it: reading rows, loading the model, the length check, the trainer
    save_s: float = 0.0   # after it: the validation pass and saving the adapter
    tokens_per_s: float | None = None
    backend: str = "peft"
    device: str = "cpu"
    libraries: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # trained on, and dropped as too long

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[TrainProgress], None]


# ------------------------------------------------------------------------------ backends


def cuda_available() -> bool:
    try:
        import torch
    except ImportError as exc:
        raise MissingExtra("LoRA training", "train", detail=str(exc)) from exc
    return bool(torch.cuda.is_available())


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def choose_backend(cuda: dict[str, Any], *, has_cuda: bool, several_gpus: bool = False) -> str:
    """Which backend a recipe's ``[cuda]`` table gets on this machine.

    Without CUDA it is always peft (float32): 4-bit quantisation and unsloth are CUDA-only.
    unsloth trains on one GPU; several GPUs go through accelerate with peft + bitsandbytes.
    """
    if not has_cuda:
        return "peft"
    if cuda.get("quantization", "4bit") != "4bit":
        return "peft"
    wanted = cuda.get("backend", "auto")
    if wanted == "unsloth" or (wanted == "auto" and not several_gpus and _importable("unsloth")):
        if several_gpus:
            raise BadInput("unsloth trains on one GPU; this run uses several",
                           hint="set [cuda] backend = \"auto\" or \"peft\" (accelerate + DeepSpeed ZeRO-2), "
                                "or limit the GPUs with CUDA_VISIBLE_DEVICES=0")
        if not _importable("unsloth"):
            raise MissingExtra("QLoRA training with unsloth", "gpu", detail="unsloth is not installed")
        return "unsloth"
    if not _importable("bitsandbytes"):
        raise MissingExtra("4-bit QLoRA training on CUDA", "gpu", detail="bitsandbytes is not installed")
    return "peft-4bit"


def library_versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "transformers", "peft", "trl", "accelerate", "unsloth", "bitsandbytes", "deepspeed"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _load(plan: FitPlan) -> tuple[Any, Any, Any]:
    """(model, tokenizer, peft_config or None when the model already carries its LoRA)."""
    recipe = plan.recipe
    lora, cuda, training = recipe["lora"], recipe["cuda"], recipe["training"]
    if plan.backend == "unsloth":
        from unsloth import FastLanguageModel  # first: it patches transformers and trl

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=plan.base, max_seq_length=training["max_length"], load_in_4bit=True, dtype=None,
            local_files_only=True)
        model = FastLanguageModel.get_peft_model(
            model, r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
            target_modules=list(LINEAR_PROJECTIONS) if lora["target_modules"] == "all-linear"
            else lora["target_modules"],
            bias="none", use_gradient_checkpointing="unsloth" if cuda["gradient_checkpointing"] else False,
            random_state=training["seed"])
        if plan.kind == "dpo":
            from unsloth import PatchDPOTrainer

            PatchDPOTrainer()
        return model, tokenizer, None
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    if plan.backend == "peft-4bit":
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["dtype"] = torch.bfloat16
    elif torch.cuda.is_available():
        kwargs["dtype"] = torch.bfloat16
    else:
        kwargs["dtype"] = torch.float32
    model = AutoModelForCausalLM.from_pretrained(plan.base, **kwargs)
    if plan.backend == "peft-4bit":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cuda["gradient_checkpointing"])
    tokenizer = AutoTokenizer.from_pretrained(plan.base, local_files_only=True)
    config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                        target_modules=lora["target_modules"], bias="none", task_type="CAUSAL_LM")
    return model, tokenizer, config


def _prepare_tokenizer(tokenizer: Any, plan: FitPlan) -> None:
    """The recipe's chat template and end-of-turn token, set explicitly (seed 004 §3: Qwen3's
    silent tokenizer bug leaves generation running past the turn without it)."""
    eos = plan.recipe["model"].get("eos_token") or ""
    if eos:
        if eos not in tokenizer.get_vocab():
            raise BadInput(f"eos_token {eos!r} is not in the base tokenizer's vocabulary",
                           hint="name a token the tokenizer has (adding one would need new embeddings, "
                                "which a LoRA cannot carry)")
        tokenizer.eos_token = eos
    if plan.chat_template:
        tokenizer.chat_template = Path(plan.chat_template).read_text(encoding="utf-8")
    if not getattr(tokenizer, "chat_template", None):
        raise BadInput(f"the base tokenizer in {plan.base} has no chat template",
                       hint="set [model] chat_template to a .jinja file in the recipe")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def drop_long(rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> tuple[list[dict[str, Any]], int]:
    """(rows that fit ``max_length`` tokens, how many did not). A row that does not fit is
    dropped and counted, never truncated: a cut answer would teach the model to stop mid-way
    (the same rule ``cra curate-data`` follows with the recipe's tokenizer)."""
    sequences: list[tuple[int, list[dict[str, Any]], list[dict[str, Any]]]] = []
    for i, row in enumerate(rows):
        if "messages" in row:
            sequences.append((i, [], row["messages"]))
        else:
            sequences += [(i, row["prompt"], row[k]) for k in ("completion", "chosen", "rejected") if k in row]
    lengths = token_lengths(tokenizer, [p for _, p, _ in sequences], [a for _, _, a in sequences])
    longest: dict[int, int] = {}
    for (i, _, _), n in zip(sequences, lengths, strict=True):
        longest[i] = max(longest.get(i, 0), n)
    kept = [row for i, row in enumerate(rows) if longest.get(i, 0) <= max_length]
    return kept, len(rows) - len(kept)


# ------------------------------------------------------------------------------ callbacks


class Stopper:
    """Ctrl-C (SIGINT) and SIGTERM ask for a checkpoint and a clean stop; a second one is immediate."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _callbacks(stopper: Stopper, outcome: FitOutcome, progress: Progress | None,
               progress_file: str | None) -> list[Any]:
    from transformers import TrainerCallback

    started = [time.monotonic(), 0]  # when this session's loop began, and the tokens seen before it

    def tokens(state: Any) -> int:
        return int(state.num_input_tokens_seen) - started[1]

    class Report(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            started[:] = [time.monotonic(), int(state.num_input_tokens_seen)]
            outcome.total_steps = int(state.max_steps)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            outcome.tokens = tokens(state)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if stopper.requested:
                control.should_save = True
                control.should_training_stop = True

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kw: Any) -> None:
            if not state.is_world_process_zero:
                return
            logs = logs or {}
            loss = logs.get("loss")
            if loss is not None:
                outcome.loss_curve.append([int(state.global_step), round(float(loss), 6)])
            elapsed = time.monotonic() - started[0]
            seen = tokens(state)
            report = TrainProgress(
                step=int(state.global_step), total=int(state.max_steps),
                loss=float(loss) if loss is not None else None,
                tokens_per_s=round(seen / elapsed, 1) if elapsed > 0 and seen else None,
                epoch=float(state.epoch) if state.epoch is not None else None)
            if progress is not None:
                progress(report)
            if progress_file:
                with open(progress_file, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(asdict(report)) + "\n")

    return [Report()]


# ----------------------------------------------------------------------------------- fit


def last_checkpoint(folder: Path) -> Path | None:
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()
             and (p / "trainer_state.json").is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _arguments(plan: FitPlan, config_cls: Any, *, has_cuda: bool) -> Any:
    t, cuda = plan.recipe["training"], plan.recipe["cuda"]
    kwargs: dict[str, Any] = {
        "output_dir": plan.checkpoints, "per_device_train_batch_size": t["batch_size"],
        "per_device_eval_batch_size": t["batch_size"],
        "gradient_accumulation_steps": t["gradient_accumulation_steps"], "learning_rate": t["learning_rate"],
        "warmup_steps": t["warmup_ratio"],  # a float below 1 is a ratio of the total steps
        "seed": t["seed"], "data_seed": t["seed"], "logging_steps": t["logging_steps"],
        "save_strategy": "steps", "save_steps": t["save_steps"], "save_total_limit": plan.keep_checkpoints,
        "report_to": "none", "disable_tqdm": True, "max_length": t["max_length"], "use_cpu": not has_cuda,
        "bf16": has_cuda, "dataloader_num_workers": 0,
        # The trainer counts the real (non-padding) tokens of every batch it trains on, on every
        # process, and keeps the count in its checkpoints: tokens per second come from it.
        "include_num_input_tokens_seen": "non_padding",
    }
    # On the CPU recomputing activations only costs time; on CUDA it is what fits 4B in 16 GB.
    # (transformers 5 renamed the setting; trl's own default for the old name is True.)
    checkpointing = bool(has_cuda and cuda["gradient_checkpointing"] and plan.backend != "unsloth")
    if "activation_checkpointing" in {f.name for f in fields(config_cls)}:
        kwargs.update(gradient_checkpointing=None, activation_checkpointing=checkpointing)
    else:
        kwargs["gradient_checkpointing"] = checkpointing
    if t["max_steps"] > 0:
        kwargs["max_steps"] = t["max_steps"]
    else:
        kwargs["num_train_epochs"] = t["epochs"]
    if plan.kind == "dpo":
        kwargs["beta"] = t["beta"]
    else:
        kwargs["completion_only_loss"] = None  # prompt/completion rows: loss on the completion only
    if plan.deepspeed:
        kwargs["deepspeed"] = plan.deepspeed
    return config_cls(**kwargs)


def fit(plan: FitPlan, progress: Progress | None = None) -> FitOutcome:
    """Train the LoRA ``plan`` describes, save it into ``plan.adapter_dir``; see the module doc."""
    os.environ.update(OFFLINE_ENV)  # before the imports below: they read it then
    try:
        import datasets
        import torch  # noqa: F401
        import transformers
        from datasets import Dataset
        from transformers.trainer_callback import PrinterCallback
        from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer
    except ImportError as exc:
        raise MissingExtra("LoRA training", "train", detail=str(exc)) from exc
    begun = time.monotonic()
    # Their progress bars would interleave with cra's own (loss, tokens/s) on the terminal.
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    has_cuda = cuda_available()
    rows = read_rows(Path(plan.train_file), plan.kind)
    if not rows:
        raise BadInput("the dataset's train.jsonl has no rows", path=plan.train_file)
    valid = read_rows(Path(plan.valid_file), plan.kind) if plan.valid_file and Path(plan.valid_file).is_file() else []
    checkpoints = Path(plan.checkpoints)
    resume_from = last_checkpoint(checkpoints) if plan.resume else None
    if plan.resume and resume_from is None:
        raise BadInput(f"nothing to resume: no checkpoint in {checkpoints}",
                       hint="run without --resume to start from the base model")

    model, tokenizer, peft_config = _load(plan)
    _prepare_tokenizer(tokenizer, plan)
    max_length = plan.recipe["training"]["max_length"]
    rows, too_long = drop_long(rows, tokenizer, max_length)
    valid, valid_too_long = drop_long(valid, tokenizer, max_length)
    if not rows:
        raise BadInput(f"every row of {Path(plan.train_file).name} is longer than max_length {max_length} tokens",
                       path=plan.train_file, hint="raise [training] max_length in the recipe, or curate shorter rows")
    if plan.kind == "dpo":
        args = _arguments(plan, DPOConfig, has_cuda=has_cuda)
        trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                             eval_dataset=Dataset.from_list(valid) if valid else None,
                             processing_class=tokenizer, peft_config=peft_config)
    else:
        args = _arguments(plan, SFTConfig, has_cuda=has_cuda)
        if plan.recipe["model"].get("eos_token"):
            args.eos_token = plan.recipe["model"]["eos_token"]
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                             eval_dataset=Dataset.from_list(valid) if valid else None,
                             processing_class=tokenizer, peft_config=peft_config)
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout; cra reports progress itself
    outcome = FitOutcome(steps=0, total_steps=0, interrupted=False,
                         resumed_from_step=int(resume_from.name.split("-")[-1]) if resume_from else None,
                         train_loss=None, backend=plan.backend, device="cuda" if has_cuda else "cpu",
                         libraries=library_versions(),
                         rows={"train": len(rows), "valid": len(valid), "too_long": too_long + valid_too_long})
    if resume_from is not None:  # the loss curve so far, from the checkpoint's own record
        history = json.loads((resume_from / "trainer_state.json").read_text(encoding="utf-8")).get("log_history", [])
        outcome.loss_curve = [[int(h["step"]), round(float(h["loss"]), 6)] for h in history if "loss" in h]
    with Stopper() as stopper:
        for callback in _callbacks(stopper, outcome, progress, plan.progress_file):
            trainer.add_callback(callback)
        called = time.monotonic()
        outcome.setup_s = round(called - begun, 3)
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        outcome.train_s = round(time.monotonic() - called, 3)
        outcome.steps = int(trainer.state.global_step)
        outcome.interrupted = stopper.requested
    outcome.tokens_per_s = round(outcome.tokens / outcome.train_s, 1) if outcome.train_s > 0 else None
    outcome.train_loss = float(result.training_loss) if result.training_loss is not None else None
    if outcome.interrupted:
        return outcome
    ended = time.monotonic()
    if valid:
        outcome.eval = {k: round(float(v), 6) for k, v in trainer.evaluate().items()
                        if isinstance(v, int | float)}
    if trainer.is_world_process_zero():
        adapter_dir = Path(plan.adapter_dir)
        trainer.model.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)
        (adapter_dir / "README.md").unlink(missing_ok=True)  # peft's model card: the metadata says more
    outcome.save_s = round(time.monotonic() - ended, 3)
    return outcome
