"""What ``cra train`` costs over a plain trl script doing the same training.

Baseline: a plain trl script (below, ``PLAIN``) with the same base model, the same rows,
the same LoRA (r, alpha, dropout, all linear layers) and the same ``SFTConfig`` settings
(steps, batch, accumulation, learning rate, warm-up, seed, max length, checkpoint
interval, float32: trl's own default of bf16 autocast runs about half as fast on a CPU),
the way a user would write it: load, ``SFTTrainer(...).train()``, save.
cra: ``cra train plan --dataset ID --json`` on a recipe with those settings.

Both run in fresh processes, one of each per round, and the medians
are compared (each round alternates which goes first). Figures:

* **training tokens/s** (the target): tokens trained on divided by the time inside
  ``trainer.train()`` (the loop with its checkpoints), cra's callbacks, progress and
  token counting included. Target: cra at least 0.9 of plain trl.
* **whole job**: tokens divided by the process's wall time, imports and model loading
  included on both sides; cra's extra work (recipe and dataset checks, the base model's
  hash, the length check, the GGUF copy, registering the version) is listed separately.
  On a run of seconds these fixed costs dominate; on a real run of hours they vanish.

The model is a randomly initialised Llama (tests/tinymodel.py's tokenizer and config
builders; ``--size small`` is 4 layers of 256, about 5M parameters), the rows are plan
examples; nothing is downloaded except, once, the llama-cpp-python sdist for its GGUF
converter when it is not cached (set CRA_LLAMA_CPP_SRC to avoid that, or --no-gguf).

    python benchmarks/train.py                  # small model, 40 steps, 2 rounds
    python benchmarks/train.py --steps 80 --repeat 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

TARGET = 0.9
SIZES = {"tiny": {"hidden_size": 64, "intermediate_size": 128, "layers": 2, "heads": 4, "kv_heads": 2},
         "small": {"hidden_size": 256, "intermediate_size": 688, "layers": 4, "heads": 4, "kv_heads": 2}}

PLAIN = r'''
import json, sys, time
t0 = time.monotonic()
a = json.loads(sys.argv[1])
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

rows = [json.loads(line) for line in open(a["train"], encoding="utf-8")]
rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
tokenizer = AutoTokenizer.from_pretrained(a["base"])
model = AutoModelForCausalLM.from_pretrained(a["base"], dtype=torch.float32)
config = SFTConfig(
    output_dir=a["out"], max_steps=a["steps"], per_device_train_batch_size=a["batch"],
    gradient_accumulation_steps=a["accum"], learning_rate=a["lr"], warmup_steps=a["warmup"], seed=a["seed"],
    data_seed=a["seed"], logging_steps=a["logging"], save_steps=a["save"], save_total_limit=2, report_to="none",
    max_length=a["max_length"], use_cpu=True, gradient_checkpointing=None, activation_checkpointing=False,
    eos_token="<|im_end|>", bf16=False)  # trl defaults to bf16; cra trains float32 on the CPU
trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                     peft_config=LoraConfig(r=a["r"], lora_alpha=a["alpha"], lora_dropout=0.0,
                                            target_modules="all-linear", task_type="CAUSAL_LM"))
t1 = time.monotonic()
trainer.train()
train_s = time.monotonic() - t1
trainer.model.save_pretrained(a["out"] + "/adapter")
tokens = max(h.get("num_tokens", 0) for h in trainer.state.log_history)
print(json.dumps({"train_s": train_s, "tokens": tokens, "steps": trainer.state.global_step,
                  "wall_s": time.monotonic() - t0}))
'''


def build_model(folder: Path, size: str) -> Path:
    """A random-weight Llama with tinymodel's tokenizer: what we train on, built here."""
    import torch
    from tinymodel import build_tokenizer, llama_config
    from transformers import LlamaForCausalLM

    base = folder / f"base-{size}"
    torch.manual_seed(0)
    tokenizer = build_tokenizer(base)
    LlamaForCausalLM(llama_config(tokenizer, **SIZES[size])).save_pretrained(base, safe_serialization=True)
    return base


def setup(work: Path, base: Path, args: argparse.Namespace) -> tuple[Path, int, dict]:
    from curated import plan_sft_rows, write_dataset

    from appliance.config import Home
    from appliance.db.core import Database

    home = Home(work / "home")
    home.adapters.mkdir(parents=True)
    if args.gguf:
        from tinymodel import converter_dir

        (home.root / "cra.toml").write_text(f'[training]\nllama_cpp_dir = "{converter_dir()}"\n')
    else:
        (home.root / "cra.toml").write_text("[training]\ngguf = false\n")
    s = {"steps": args.steps, "batch": 4, "accum": 1, "lr": 2e-3, "warmup": 0.0, "seed": 11, "logging": 5,
         "save": max(1, args.steps // 2), "max_length": 256, "r": 16, "alpha": 32}
    (home.adapters / "plan.toml").write_text(f"""format_version = 1
slot = "plan"
[model]
base = "{base}"
eos_token = "<|im_end|>"
[lora]
r = {s['r']}
alpha = {s['alpha']}
dropout = 0.0
[training]
method = "sft"
learning_rate = {s['lr']}
max_steps = {s['steps']}
batch_size = {s['batch']}
gradient_accumulation_steps = {s['accum']}
max_length = {s['max_length']}
warmup_ratio = {s['warmup']}
seed = {s['seed']}
save_steps = {s['save']}
logging_steps = {s['logging']}
gguf_outtype = "f32"
""")
    with Database(home.db_path) as db:
        dataset = write_dataset(db, home, slot="plan", kind="sft", train=plan_sft_rows(args.rows))
        path = db.one("SELECT path FROM training_datasets WHERE id = ?", (dataset,))[0]
    return home.root, dataset, {**s, "train": str(home.root / path / "train.jsonl"), "base": str(base)}


def run_cra(home: Path, dataset: int) -> dict:
    env = {**os.environ, "CRA_HOME": str(home), "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", "train", "plan", "--dataset", str(dataset), "--json"],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"cra train failed: {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout)
    o = out["outcome"]
    return {"train_s": o["train_s"], "tokens": o["tokens"], "steps": o["steps"], "wall_s": wall,
            "setup_s": o["setup_s"], "save_s": o["save_s"], **out["timings"]}


def run_plain(settings: dict, out: Path) -> dict:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", PLAIN, json.dumps({**settings, "out": str(out)})],
                          capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": ""})
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"the plain trl script failed: {proc.stderr.strip()[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**result, "wall_s": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-gguf", dest="gguf", action="store_false", help="Skip cra's GGUF copy.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cra-bench-train-") as tmp:
        work = Path(tmp)
        base = build_model(work, args.size)
        home, dataset, settings = setup(work, base, args)
        cra, plain = [], []
        for i in range(args.repeat):
            # Alternate who goes first: a shared box's load comes in waves.
            for who in (("cra", "plain") if i % 2 == 0 else ("plain", "cra")):
                if who == "cra":
                    cra.append(run_cra(home, dataset))
                else:
                    plain.append(run_plain(settings, work / f"plain-{i}"))
            if not args.json:
                print(f"round {i + 1}: cra {cra[-1]['tokens'] / cra[-1]['train_s']:,.0f} tok/s, "
                      f"plain trl {plain[-1]['tokens'] / plain[-1]['train_s']:,.0f} tok/s", file=sys.stderr)

    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    loop = {"cra": med(cra, "tokens") / med(cra, "train_s"), "plain": med(plain, "tokens") / med(plain, "train_s")}
    whole = {"cra": med(cra, "tokens") / med(cra, "wall_s"), "plain": med(plain, "tokens") / med(plain, "wall_s")}
    report = {
        "model": args.size, "steps": args.steps, "rows": args.rows, "repeat": args.repeat, "gguf": args.gguf,
        "tokens": {"cra": med(cra, "tokens"), "plain": med(plain, "tokens")},
        "train_s": {"cra": med(cra, "train_s"), "plain": med(plain, "train_s")},
        "wall_s": {"cra": med(cra, "wall_s"), "plain": med(plain, "wall_s")},
        "loop_tokens_per_s": loop, "loop_ratio": round(loop["cra"] / loop["plain"], 3),
        "job_tokens_per_s": whole, "job_ratio": round(whole["cra"] / whole["plain"], 3),
        "cra_extras_s": {k: med(cra, k) for k in ("prepare_s", "setup_s", "save_s", "gguf_s")},
        "target": TARGET, "runs": {"cra": cra, "plain": plain},
    }
    report["meets_target"] = report["loop_ratio"] >= TARGET
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["meets_target"] else 1
    print(f"cra train vs a plain trl script: {args.size} model, {args.steps} steps, {args.rows} rows, "
          f"medians of {args.repeat} alternating rounds")
    print(f"  tokens trained          cra {report['tokens']['cra']:>10,.0f}   plain {report['tokens']['plain']:>10,.0f}")
    print(f"  training loop tok/s     cra {loop['cra']:>10,.1f}   plain {loop['plain']:>10,.1f}   "
          f"ratio {report['loop_ratio']:.3f} (target >= {TARGET})")
    print(f"  whole job tok/s         cra {whole['cra']:>10,.1f}   plain {whole['plain']:>10,.1f}   "
          f"ratio {report['job_ratio']:.3f}")
    print(f"  whole job wall s        cra {report['wall_s']['cra']:>10.1f}   plain {report['wall_s']['plain']:>10.1f}")
    extras = report["cra_extras_s"]
    print(f"  cra outside the loop: checks + base hash {extras['prepare_s']:.1f} s, rows + model + length check "
          f"{extras['setup_s']:.1f} s, save {extras['save_s']:.1f} s, GGUF copy {extras['gguf_s']:.1f} s")
    return 0 if report["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
