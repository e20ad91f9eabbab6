"""A tiny chat model in GGUF, built on this machine with no download, for real LLM tests.

The recipe (DESIGN.md, "Facts checked on this machine"):

1. a 512-token byte-level BPE trained with ``tokenizers`` on cra's own source files;
2. ``LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
   num_attention_heads=4, num_key_value_heads=2)`` (about 140k parameters), trained for a
   few seconds on plan-shaped chat examples so that, under a JSON schema, it writes short
   plans that end (a random model fills strings until ``max_tokens`` runs out);
3. a LoRA on top (peft, when installed) trained to prefer the *last* file of the list, so
   a test can see that the adapter really is applied;
4. llama.cpp's ``convert_hf_to_gguf.py`` / ``convert_lora_to_gguf.py`` from the
   llama-cpp-python sdist of the installed version turn both into GGUF. The converter
   refuses a BPE pre-tokenizer it does not know by hash; ours is GPT-2's byte-level
   regex, so the conversion is told "gpt-2".

The model carries a ChatML chat template, so ``create_chat_completion`` and the OpenAI
server format prompts the way the training text was formatted.

Building takes about a minute on 2 cores, so the result is cached per process and on
disk under ``.pytest_cache/cra-tinymodel/<key>/`` where the key hashes this file and the
library versions: change the recipe and the next run rebuilds. The llama.cpp converter
scripts are cached next to it (``llama.cpp-<version>/``); they come from
``$CRA_LLAMA_CPP_SRC`` (a llama.cpp checkout) or, once, from ``pip download`` of the
sdist (the only network use, skipped with ``CRA_TEST_OFFLINE=1``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from appliance.demo_model import (  # one chat format for both tiny models
    BOS,
    CHAT_TEMPLATE,
    EOS,
    IM_START,
)
from appliance.training.gguf import convert_lora, convert_model

REPO = Path(__file__).resolve().parent.parent
CACHE_ROOT = REPO / ".pytest_cache" / "cra-tinymodel"
RECIPE_VERSION = 1

PLAN_SYSTEM = "You are the planner. Answer with a JSON plan."

# What the model and its adapter are trained on, and what tests should ask.
WORDS = ["parser", "cache", "config", "loader", "report", "client", "index", "store",
         "router", "schema", "token", "queue"]
VERBS = ["Fix", "Add", "Handle", "Support", "Remove", "Rename"]


def _pytest():
    """pytest, imported when a test needs to skip: scripts/gpu_check.py imports this module too."""
    import pytest

    return pytest


@dataclass(frozen=True)
class TinyModel:
    """The built artefacts; every path exists."""

    root: Path
    hf_dir: Path
    gguf: Path
    lora_gguf: Path | None  # None when peft is not installed
    build_seconds: float


def plan_prompt(task: str, files: list[str]) -> list[dict[str, str]]:
    """The prompt shape the tiny model was trained on (and tests should use)."""
    listing = "\n".join(f"- {f}" for f in files)
    return [
        {"role": "system", "content": PLAN_SYSTEM},
        {"role": "user", "content": f"Task: {task}\nFiles:\n{listing}"},
    ]


def named_files(text: str) -> set[str]:
    """The files a schema-valid plan answer names.

    Read from the JSON, not through ``Plan.from_json``: the schema constrains the shape and
    the file names, but a sampled answer from a random tiny model may still repeat a step
    id or point at a missing step, which the planner rightly rejects as a bad plan.
    """
    steps = json.loads(text)["steps"]
    assert steps, text
    return {step["file"] for step in steps}



def check_samples(completion: Any, files: list[str], n: int) -> None:
    """``n`` sampled plan answers, each in the schema naming only ``files``, or cut short by
    the token budget (``finish_reason == "length"``) and then reported as failing it.

    The grammar keeps every sample to the schema; only the budget can cut one short, and a
    freshly built tiny model (CI builds it anew) may ramble through symbol lists at 0.9.
    """
    assert len(completion.texts) == n and len(completion.errors) == n
    for text, error, finish in zip(completion.texts, completion.errors, completion.finish_reasons, strict=True):
        if error is None:
            assert named_files(text) <= set(files)
        else:
            assert finish == "length", (error, finish)
    assert completion.ok == all(e is None for e in completion.errors)

def _plan_answer(files: list[str], pick: str, symbol: str, verb: str) -> str:
    step = {"id": 1, "file": pick, "symbols": [symbol], "action": "modify",
            "description": f"{verb.lower()} {symbol}", "depends_on": []}
    return json.dumps({"kind": "step", "steps": [step]})


def plan_examples(seed: int, *, last_file: bool, count: int) -> list[list[dict[str, str]]]:
    """``count`` chat examples (system, user, assistant) in the shape the model was trained on;
    with ``last_file`` the answer picks the last file, as the tiny LoRA does."""
    return _examples(random.Random(seed), last_file=last_file, count=count)


def _examples(rng: random.Random, *, last_file: bool, count: int) -> list[list[dict[str, str]]]:
    """Chat examples: a task and a file list -> a one-step plan.

    The base model picks the first file; the adapter's data picks the last one, so the
    two are told apart by output alone.
    """
    out = []
    for _ in range(count):
        n = rng.randint(2, 4)
        words = rng.sample(WORDS, n)
        files = [f"pkg/{w}.py" for w in words]
        verb = rng.choice(VERBS)
        symbol = rng.choice(words)
        pick = files[-1] if last_file else files[0]
        task = f"{verb} {symbol} in {words[0]}"
        out.append(plan_prompt(task, files) + [
            {"role": "assistant", "content": _plan_answer(files, pick, symbol, verb)}])
    return out


_NEEDS = {
    "llama_cpp": "pip install 'cra[llama]' (builds llama-cpp-python, ~6 minutes)",
    "torch": "pip install torch==2.13.0 (the CPU build; never a bare 'torch')",
    "transformers": "pip install 'cra[train]'",
    "tokenizers": "pip install 'cra[train]'",
}


def require_build_deps(*, building: bool = True) -> None:
    """Skip (with the reason) when a library the tests or the recipe need is missing.

    A cached model needs only llama_cpp to run; torch and friends (seconds to import)
    only to build one.
    """
    for module, why in _NEEDS.items():
        if building or module == "llama_cpp":
            _pytest().importorskip(module, reason=f"the tiny test model needs {module}: {why}")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _key() -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    for dist in ("torch", "transformers", "tokenizers", "peft", "llama_cpp_python"):
        h.update(f"{dist}={_version(dist)};".encode())
    return h.hexdigest()[:16]


@functools.cache
def tiny_model() -> TinyModel:
    """The tiny model, built once per recipe; skips the test when it cannot be built."""
    final = CACHE_ROOT / _key()
    marker = final / "done.json"
    require_build_deps(building=not marker.is_file())
    if marker.is_file():
        info = json.loads(marker.read_text())
        lora = final / "lora.gguf"
        return TinyModel(final, final / "hf", final / "model.gguf",
                         lora if lora.is_file() else None, float(info["build_seconds"]))
    converter = converter_dir()
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=CACHE_ROOT))
    started = time.monotonic()
    try:
        _build(work, converter)
        seconds = round(time.monotonic() - started, 1)
        (work / "done.json").write_text(json.dumps({"recipe": RECIPE_VERSION, "build_seconds": seconds}))
        if final.exists():  # a concurrent build won; keep its result
            shutil.rmtree(work)
        else:
            os.replace(work, final)
        _prune(keep=final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return tiny_model.__wrapped__()


def _prune(keep: Path) -> None:
    """Remove models built by older recipes (each is a finished ``<key>/done.json``)."""
    for d in CACHE_ROOT.iterdir():
        if d != keep and len(d.name) == 16 and (d / "done.json").is_file():
            shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------ llama.cpp converter


def converter_dir() -> Path:
    """A folder holding convert_hf_to_gguf.py, convert_lora_to_gguf.py, conversion/, gguf-py/."""
    env = os.environ.get("CRA_LLAMA_CPP_SRC")
    if env:
        path = Path(env)
        if not (path / "convert_hf_to_gguf.py").is_file():
            _pytest().fail(f"CRA_LLAMA_CPP_SRC={env} has no convert_hf_to_gguf.py")
        return path
    version = _version("llama_cpp_python")
    cached = CACHE_ROOT / f"llama.cpp-{version}"
    if (cached / "convert_hf_to_gguf.py").is_file():
        return cached
    if os.environ.get("CRA_TEST_OFFLINE") == "1":
        _pytest().skip("the llama.cpp converter is not cached and CRA_TEST_OFFLINE=1 forbids "
                    "downloading the llama-cpp-python sdist (set CRA_LLAMA_CPP_SRC)")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_ROOT) as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"llama-cpp-python=={version}", "-d", tmp],
            check=False, capture_output=True, text=True, timeout=600,
        )
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if not sdists:
            _pytest().skip(f"cannot get the llama-cpp-python {version} sdist for its converter: "
                        f"{(proc.stderr or proc.stdout).strip()[-300:]}")
        staging = Path(tmp) / "out"
        _extract_converter(sdists[0], staging)
        os.replace(staging, cached)
    return cached


def _extract_converter(sdist: Path, dest: Path) -> None:
    from appliance.errors import ConfigError
    from appliance.training.gguf import extract_converter

    try:
        extract_converter(sdist, dest)
    except ConfigError as exc:
        _pytest().skip(str(exc))


# The converter identifies BPE pre-tokenizers by the hash of a test encoding; ours is
# byte-level BPE with GPT-2's split regex, which it cannot know, so it is told "gpt-2"
# (appliance.training.gguf patches that in-process; the cached sdist stays pristine).
PRE_TOKENIZER = "gpt-2"


# ------------------------------------------------------------------------------ build


def _source_texts() -> list[str]:
    files = sorted((REPO / "appliance").rglob("*.py")) + sorted((REPO / "harness").rglob("*.py"))
    return [p.read_text(encoding="utf-8", errors="replace") for p in files]


def build_tokenizer(out: Path, extra_texts: list[str] = ()):  # type: ignore[assignment]
    """A byte-level BPE of 512 tokens with ChatML markers, trained on cra's own source files
    (and ``extra_texts``), saved with the ChatML chat template into ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=[BOS, EOS, IM_START],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_source_texts() + list(extra_texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS,
                                   pad_token=EOS, unk_token=None)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast


def llama_config(tokenizer, *, hidden_size: int = 64, intermediate_size: int = 128, layers: int = 2,
                 heads: int = 4, kv_heads: int = 2, max_positions: int = 1024):
    """A small Llama for ``tokenizer``: 64/128/2 layers is about 140k parameters."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def _build(work: Path, converter: Path) -> None:
    import torch
    from transformers import LlamaForCausalLM

    rng = random.Random(1234)
    torch.manual_seed(1234)
    hf = work / "hf"
    base_data = _examples(rng, last_file=False, count=96)
    lora_data = _examples(rng, last_file=True, count=96)

    # 1. tokenizer: byte-level BPE, 512 tokens, ChatML markers as special tokens.
    fast = build_tokenizer(hf, [json.dumps(ex) for ex in base_data[:32]])

    # 2. the model, trained on plan examples (loss on the assistant answer only).
    model = LlamaForCausalLM(llama_config(fast))
    _train(model, fast, base_data, steps=120, lr=1e-2)  # loss ~0.2, ~15 s
    model.save_pretrained(hf, safe_serialization=True)
    convert_model(converter, hf, work / "model.gguf", outtype="f32", log=work / "convert.log",
                  pre_tokenizer=PRE_TOKENIZER)

    # 3. a LoRA that prefers the last file (only with peft installed).
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        return
    lora_model = get_peft_model(
        LlamaForCausalLM.from_pretrained(hf),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                        "gate_proj", "up_proj", "down_proj"],
                   lora_dropout=0.0, task_type="CAUSAL_LM"),
    )
    _train(lora_model, fast, lora_data, steps=80, lr=2e-2)
    lora_dir = work / "lora"
    lora_model.save_pretrained(lora_dir)
    convert_lora(converter, lora_dir, hf, work / "lora.gguf", outtype="f32", log=work / "convert-lora.log")


def _train(model, tokenizer, data: list[list[dict[str, str]]], *, steps: int, lr: float) -> None:
    """Plain full-batch-ish AdamW: a few seconds on the CPU for 140k parameters."""
    import torch

    rows = []
    for ex in data:
        prompt = tokenizer.apply_chat_template(ex[:-1], tokenize=False, add_generation_prompt=True)
        answer = ex[-1]["content"] + EOS
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        rows.append((p_ids + a_ids, [-100] * len(p_ids) + a_ids))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(rows), (8,), generator=gen)
        out = model(input_ids=input_ids[idx], attention_mask=attention[idx], labels=labels[idx])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
