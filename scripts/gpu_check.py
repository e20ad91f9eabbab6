"""The CUDA paths end to end, on a GPU box, with nothing downloaded (run by scripts/gpu-check.sh).

1. a small random-weight Llama is built here (tests/tinymodel.py's tokenizer and config);
2. ``cra train`` trains two adapters on it with unsloth QLoRA (4-bit), one per slot, from
   two curated datasets that answer differently;
3. both are promoted and ``cra serve --engine vllm`` serves them with ``--enable-lora``;
4. the same prompt at temperature 0 through each slot's adapter must give different
   answers, and different from the base;
5. a third adapter trained while serving is loaded by vLLM at run time
   (``/v1/load_lora_adapter``), and promoting it unloads the old one
   (``/v1/unload_lora_adapter``): no restart, and the stage answers with the new version.

Exits 1 with one line saying what is missing where there is no CUDA, vLLM or unsloth.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def fail(message: str) -> None:
    print(f"gpu-check: {message}", file=sys.stderr)
    sys.exit(1)


def step(message: str) -> None:
    print(f"gpu-check: {message}", flush=True)


def preflight() -> None:
    import importlib.util

    try:
        import torch
    except ImportError:
        fail("torch is not installed: pip install 'cra[train,gpu]' on this CUDA box")
    if not torch.cuda.is_available():
        fail("no CUDA GPU here (torch.cuda.is_available() is False): run this on a machine with one")
    for module, why in (("vllm", "serving"), ("unsloth", "QLoRA training"), ("bitsandbytes", "4-bit weights"),
                        ("trl", "training"), ("peft", "LoRA")):
        if importlib.util.find_spec(module) is None:
            fail(f"{module} ({why}) is not installed: pip install 'cra[train,gpu]'")
    step(f"CUDA {torch.version.cuda} on {torch.cuda.get_device_name(0)}")


def build_base(folder: Path) -> Path:
    """Random weights, head_dim 64 (what vLLM's attention kernels and bitsandbytes' blocks take)."""
    import torch
    from tinymodel import build_tokenizer, llama_config
    from transformers import LlamaForCausalLM

    base = folder / "base"
    torch.manual_seed(0)
    tokenizer = build_tokenizer(base)
    config = llama_config(tokenizer, hidden_size=256, intermediate_size=512, layers=2, heads=4, kv_heads=2,
                          max_positions=2048)
    LlamaForCausalLM(config).save_pretrained(base, safe_serialization=True)
    return base


def recipe(slot: str, base: Path) -> str:
    return f"""format_version = 1
slot = "{slot}"
[model]
base = "{base}"
eos_token = "<|im_end|>"
[lora]
r = 16
alpha = 32
dropout = 0.0
[training]
method = "sft"
learning_rate = 2e-3
max_steps = 60
batch_size = 8
gradient_accumulation_steps = 1
max_length = 512
warmup_ratio = 0.0
seed = 7
save_steps = 30
logging_steps = 10
[cuda]
quantization = "4bit"
backend = "unsloth"
"""


def cra(home: Path, *args: str) -> str:
    env = {**os.environ, "CRA_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        fail(f"cra {' '.join(args)} failed: {proc.stderr.strip()[-1500:]}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    def __init__(self, home: Path, port: int):
        env = {**os.environ, "CRA_HOME": str(home), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--engine", "vllm", "--port",
                                      str(port), "--json"], env=env, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(x) for x in self.proc.stdout or []], daemon=True).start()

    def event(self, timeout: float) -> dict:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            self.stop()
            fail(f"cra serve --engine vllm said nothing in {timeout:g} s (see var/serve/vllm-*.log)")
        raise AssertionError

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=120)


def main() -> int:
    preflight()
    from curated import plan_sft_rows, write_dataset
    from tinymodel import plan_prompt

    from appliance.adapters import registry
    from appliance.adapters.routes import routes_for
    from appliance.config import Home
    from appliance.db.core import Database
    from appliance.llm import LLMClient, LLMConfig
    from appliance.llm.providers.openai_compat import OpenAICompatProvider

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cra-gpu-check-") as tmp:
        home = Home(Path(tmp) / "home")
        home.adapters.mkdir(parents=True)
        base = build_base(Path(tmp))
        step(f"built a random-weight Llama in {base}")
        port = free_port()
        (home.root / "cra.toml").write_text(
            "[training]\ngguf = false\n\n[serving]\nengine = \"vllm\"\npoll_s = 1.0\nstartup_timeout_s = 900\n"
            "extra_args = [\"--enforce-eager\", \"--max-model-len\", \"1024\", \"--gpu-memory-utilization\", \"0.5\"]\n")
        with Database(home.db_path) as db:
            for slot, last in (("plan", True), ("scope", False)):
                (home.adapters / f"{slot}.toml").write_text(recipe(slot, base))
                dataset = write_dataset(db, home, slot=slot, kind="sft",
                                        train=plan_sft_rows(64, seed=3, last_file=last))
                out = json.loads(cra(home.root, "train", slot, "--dataset", str(dataset), "--json"))
                backend = out["outcome"]["backend"]
                if backend != "unsloth":
                    fail(f"cra train {slot} used {backend}, not unsloth")
                step(f"trained {out['name']} with {backend} on {out['outcome']['device']}: "
                     f"{out['outcome']['steps']} steps, {out['outcome']['tokens_per_s']} tok/s")
                cra(home.root, "adapters", "promote", slot, "--reason", "gpu-check")

            server = Serve(home.root, port)
            try:
                ready = server.event(timeout=900)
                if ready.get("kind") != "ready":
                    fail(f"cra serve did not come up: {ready}")
                step(f"vLLM serves {[m['name'] for m in ready['models']]} at {ready['endpoint']}")
                prompt = plan_prompt("Fix router in store", ["pkg/router.py", "pkg/token.py", "pkg/store.py"])
                provider = OpenAICompatProvider(ready["endpoint"], ready["base"])
                routed = LLMClient(provider, config=LLMConfig(max_retries=0), routes=routes_for(db, home))
                answers = {slot: routed.complete(prompt, stage="plan", adapter=slot, temperature=0, seed=1,
                                                 max_tokens=64).text for slot in ("plan", "scope")}
                answers["base"] = LLMClient(provider, config=LLMConfig(max_retries=0)).complete(
                    prompt, stage="plan", temperature=0, seed=1, max_tokens=64).text
                for name, text in answers.items():
                    step(f"{name:>5}: {text[:100]!r}")
                if len(set(answers.values())) != 3:
                    fail("the per-request answers do not differ: the adapters are not applied per request")
                # A new version while serving: vLLM loads it at run time (no restart) ...
                dataset = write_dataset(db, home, slot="plan", kind="sft", train=plan_sft_rows(64, seed=9,
                                                                                             last_file=False),
                                        tag="-v2")
                cra(home.root, "train", "plan", "--dataset", str(dataset))
                if server.event(timeout=300).get("kind") != "updated":
                    fail("vLLM did not load the new candidate without a restart")
                candidate = LLMClient(provider, config=LLMConfig(max_retries=0),
                                      routes=routes_for(db, home, "candidate")).complete(
                    prompt, stage="plan", temperature=0, seed=1, max_tokens=64).text
                # ... and a promote to it unloads the old one, again without a restart.
                registry.promote(db, home, "plan", reason="gpu-check: promote while serving")
                if server.event(timeout=300).get("kind") != "updated":
                    fail("vLLM did not take the promote without a restart")
                active = LLMClient(provider, config=LLMConfig(max_retries=0), routes=routes_for(db, home)).complete(
                    prompt, stage="plan", temperature=0, seed=1, max_tokens=64).text
                if active != candidate or active == answers["plan"]:
                    fail("after the promote the plan stage does not answer with plan-v2")
                step("a new candidate loaded and a promote applied by vLLM at run time, no restart")
            finally:
                server.stop()
    step(f"all good in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
