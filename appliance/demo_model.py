"""A tiny local model for ``cra demo`` and the CPU tests: built here, never downloaded.

The recipe is the test suite's (DESIGN.md, "Facts checked on this machine"): a byte-level
BPE tokenizer trained with ``tokenizers``, a ``LlamaConfig`` of about 200k parameters
trained for a minute on the CPU, llama.cpp's converter for the GGUF copy. What this one is
trained on makes the difference: *synthetic* tasks on made-up repositories, asked with
cra's own prompts for every stage (scope, precision, the three plan kinds, execute:
``harness.triples`` and ``harness.planner`` build them), each answered briefly in the
stage's format. So the model knows the formats and stops, which keeps a whole demo to
minutes on two cores, and it has learnt one generic habit (the module a task names is
the module to change) but nothing of any real repository: whatever an adapter trained on
a repo's history adds is the adapter's doing.

``build(out, converter)`` writes ``out/hf`` (the frozen base ``cra train`` starts from,
with a ChatML chat template and ``<|im_end|>`` as end of turn) and ``out/model.gguf`` (what
llama.cpp serves), and ``out/done.json`` last: a folder with it is complete and reused.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import MissingExtra

RECIPE_VERSION = 1
BOS, EOS, IM_START = "<s>", "<|im_end|>", "<|im_start|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
VOCAB = 1024
MAX_TOKENS = 2048  # positions the model is trained for
STEPS = 300
SEED = 1234

_PACKAGES = ("quill", "atlas", "ember", "delta", "orbit", "cobalt", "prism", "vertex")
_MODULES = ("parser", "cache", "config", "loader", "report", "client", "index", "store", "router", "schema",
            "token", "queue", "format", "render", "slug", "wrap", "table", "color", "units", "paths")
_VERBS = ("Fix", "Add", "Handle", "Support", "Raise an error for", "Rename")
_OBJECTS = ("empty input", "unicode text", "a separator argument", "None values", "long lines", "tabs")


@dataclass(frozen=True)
class DemoModel:
    root: Path
    hf_dir: Path
    gguf: Path
    build_seconds: float


def _fn(module: str, rng: random.Random) -> str:
    return f"{rng.choice(('make', 'read', 'split', 'join', 'check', 'clean'))}_{module}"


def examples(count: int, seed: int = SEED) -> list[list[dict[str, str]]]:
    """``count`` chat examples (system, user, assistant) over every stage's prompt."""
    from harness.planner import META_SYSTEM, TEST_SYSTEM, plan_messages
    from harness.plans import Plan, PlanStep
    from harness.triples import execute_messages, precision_messages, scope_messages

    rng = random.Random(seed)
    out: list[list[dict[str, str]]] = []
    for i in range(count):
        pkg = rng.choice(_PACKAGES)
        mods = rng.sample(_MODULES, rng.randint(3, 7))
        files = [f"src/{pkg}/{m}.py" for m in mods] + [f"src/{pkg}/__init__.py"]
        target = rng.choice(mods)
        path = f"src/{pkg}/{target}.py"
        fn = _fn(target, rng)
        task = f"{rng.choice(_VERBS)} {rng.choice(_OBJECTS)} in {fn}()\n\nThe {target} module's {fn} needs it."
        outlines = {f: [f"{_fn(f.rsplit('/', 1)[-1][:-3], rng)}: def x(text)"] for f in files[:4]}
        outlines[path] = [f"{fn}: def {fn}(text)"]
        stage = i % 6
        if stage == 0:
            msgs = scope_messages(task, sorted(files))
            answer = json.dumps({"files": [path]})
        elif stage == 1:
            msgs = precision_messages(task, {path: [f"{fn}: def {fn}(text)"]})
            answer = json.dumps({"symbols": {path: [fn]}})
        elif stage in (2, 3, 4):
            kind = ("step", "meta", "test")[stage - 2]
            tests = {f"tests/test_{target}.py": [f"test_{fn}: def test_{fn}()"]} if kind == "test" else None
            msgs = plan_messages(task, outlines, kind=kind, tests=tests)
            if kind == "meta":
                msgs[0]["content"] = META_SYSTEM
            elif kind == "test":
                msgs[0]["content"] = TEST_SYSTEM
            file, syms, action = (f"tests/test_{target}.py", [f"test_{fn}"], "test") if kind == "test" \
                else (path, [] if kind == "meta" else [fn], "modify")
            answer = json.dumps({"kind": kind, "steps": [{"id": 1, "file": file, "symbols": syms, "action": action,
                                                           "description": f"change {fn}", "depends_on": []}]})
        else:
            code = f'"""{target.title()}."""\n\n\ndef {fn}(text):\n    return text.strip()\n'
            plan = Plan([PlanStep(1, path, [fn], "modify", f"change {fn}")], kind="step", source="gold")
            msgs = execute_messages(task, plan, [(path, code)])
            answer = (f"{path}\n<<<<<<< SEARCH\n    return text.strip()\n=======\n"
                      f"    return text.strip() or ''\n>>>>>>> REPLACE\n")
        out.append([*msgs, {"role": "assistant", "content": answer}])
    return out


def _require() -> tuple[Any, Any]:
    try:
        import tokenizers
        import torch
        import transformers
    except ImportError as exc:
        raise MissingExtra("building the demo model", "train", detail=str(exc)) from exc
    return torch, (tokenizers, transformers)


def build(out: Path, converter: Path, *, steps: int = STEPS) -> DemoModel:
    """Build (or reuse) the model in ``out``; ``converter`` is a folder with llama.cpp's
    ``convert_hf_to_gguf.py`` (``appliance.training.gguf.find_converter``)."""
    done = out / "done.json"
    if done.is_file() and json.loads(done.read_text()).get("recipe") == RECIPE_VERSION:
        info = json.loads(done.read_text())
        return DemoModel(out, out / "hf", out / "model.gguf", float(info["build_seconds"]))
    torch, (tokenizers, transformers) = _require()
    from appliance.training.gguf import convert_model

    started = time.monotonic()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = random.Random(SEED)
    torch.manual_seed(SEED)
    data = examples(600)
    hf = out / "hf"
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=[BOS, EOS, IM_START],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([m["content"] for ex in data for m in ex] + _sources(), trainer=trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS,
                                                pad_token=EOS, unk_token=None)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(hf)
    config = transformers.LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=MAX_TOKENS, bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(config)
    _train(model, fast, data, steps=steps, rng=rng)
    model.save_pretrained(hf, safe_serialization=True)
    convert_model(converter, hf, out / "model.gguf", outtype="f32", log=out / "convert.log", pre_tokenizer="gpt-2")
    seconds = round(time.monotonic() - started, 1)
    done.write_text(json.dumps({"recipe": RECIPE_VERSION, "build_seconds": seconds, "steps": steps}))
    return DemoModel(out, hf, out / "model.gguf", seconds)


def _sources() -> list[str]:
    root = Path(__file__).resolve().parents[1]
    files = sorted((root / "appliance").rglob("*.py")) + sorted((root / "harness").rglob("*.py"))
    return [p.read_text(encoding="utf-8", errors="replace") for p in files]


def _train(model: Any, tokenizer: Any, data: list[list[dict[str, str]]], *, steps: int, rng: random.Random) -> None:
    """AdamW on the answers only (the prompt's tokens are masked), batches of 8."""
    import torch

    rows = []
    for ex in data:
        prompt = tokenizer.apply_chat_template(ex[:-1], tokenize=False, add_generation_prompt=True)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tokenizer(ex[-1]["content"] + EOS, add_special_tokens=False)["input_ids"]
        ids = (p_ids + a_ids)[-MAX_TOKENS:]
        labels = ([-100] * len(p_ids) + a_ids)[-MAX_TOKENS:]
        rows.append((ids, labels))
    pad = tokenizer.pad_token_id
    # One thread: on a busy two-core box a second one costs six times the CPU in contention
    # (measured: 0.19 s of CPU a step with one thread, 1.26 s with two).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=1e-3)
    model.train()
    for _ in range(steps):
        batch = rng.sample(rows, 8)
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    torch.set_num_threads(threads)
