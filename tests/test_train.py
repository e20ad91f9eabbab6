"""``cra train``, for real: peft + trl LoRA training on the tiny model, GGUF, llama.cpp inference.

The base is the tiny Llama of ``tests/tinymodel.py`` (it picks the *first* file of a
plan prompt); the curated datasets teach the adapter to pick the *last* one, so a test
can see in llama.cpp's output that the trained LoRA is applied. Checks that refuse bad
input run before any training and take no time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from curated import plan_dpo_rows, plan_sft_rows, tiny_recipe, triple_rows, write_dataset
from test_triples import lib  # noqa: F401  (a repo package with one valid task)
from tinymodel import converter_dir, plan_prompt, tiny_model

from appliance.adapters import registry
from appliance.adapters.routes import routes_for
from appliance.config import Home
from appliance.db.core import Database
from appliance.errors import BadInput, ConfigError, NotFound
from appliance.hashing import sha256_tree, tree_digest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def trained(trained_plan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Home, Database]:
    """A copy of the session's home whose plan slot has v1 from ``cra train``."""
    root = tmp_path / "home"
    shutil.copytree(trained_plan, root)
    monkeypatch.setenv("CRA_HOME", str(root))
    db = Database(Home(root).db_path)
    yield Home(root), db
    db.close()


def _setup(home: Home) -> None:
    (home.root / "cra.toml").write_text(f'[training]\nllama_cpp_dir = "{converter_dir()}"\n')


# ------------------------------------------------------------------------- what a version holds


def test_sft_training_registers_a_candidate_with_its_hashes_metrics_and_a_gguf(trained) -> None:
    home, db = trained
    model = tiny_model()
    [v1] = registry.versions(db, "plan")
    assert (v1.version, v1.method, v1.rank) == (1, "sft", 8)
    assert registry.current(db, "plan", "candidate") == v1 and registry.current(db, "plan") is None
    folder = home.root / v1.path
    assert {"adapter_config.json", "adapter_model.safetensors", "adapter.gguf", "metadata.json",
            "tokenizer.json", "chat_template.jinja"} <= set(v1.files)
    assert (folder / "adapter.gguf").read_bytes()[:4] == b"GGUF"
    assert registry.verify(home, v1).ok
    # The frozen base's hash, the dataset's id and hash, the recipe, the metrics.
    assert v1.base_sha256 == tree_digest(sha256_tree(model.hf_dir, hidden=False))
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["base_sha256"] == v1.base_sha256 and meta["dataset_id"] == v1.dataset_id == 1
    assert meta["dataset_hash"] == v1.dataset_hash and meta["recipe"]["training"]["max_steps"] == 16
    m = v1.metrics
    assert m["steps"] == m["total_steps"] == 16 and m["device"] == "cpu" and m["backend"] == "peft"
    assert [step for step, _ in m["loss_curve"]] == list(range(2, 17, 2))
    assert m["loss_curve"][-1][1] < m["loss_curve"][0][1]  # it learned something
    assert m["tokens"] > 0 and m["tokens_per_s"] > 0 and m["eval"]["eval_loss"] > 0 and m["wall_s"] > m["train_s"]
    assert not (home.var / "train").exists() or not any((home.var / "train").iterdir())  # checkpoints removed


def _answers(client, prompts: list, **kw) -> list[str]:
    return [client.complete(p, stage="plan", temperature=0, seed=3, max_tokens=90, **kw).text for p in prompts]


def _prompts() -> list:
    sets = [["pkg/router.py", "pkg/token.py", "pkg/store.py"], ["pkg/cache.py", "pkg/queue.py"],
            ["pkg/index.py", "pkg/client.py", "pkg/report.py", "pkg/schema.py"], ["pkg/loader.py", "pkg/config.py"],
            ["pkg/store.py", "pkg/parser.py", "pkg/router.py"], ["pkg/token.py", "pkg/index.py"]]
    return [(plan_prompt(f"Fix {files[0].split('/')[1][:-3]} in {files[-1].split('/')[1][:-3]}", files), files)
            for files in sets]


def test_the_trained_lora_changes_what_llama_cpp_answers(trained) -> None:
    pytest.importorskip("llama_cpp", reason="the llama extra (llama-cpp-python) is not installed")
    from appliance.llm import LLMClient
    from appliance.llm.providers.llama_cpp import LlamaCppProvider

    home, db = trained
    model = tiny_model()
    registry.promote(db, home, "plan", reason="test")
    provider = LlamaCppProvider(model.gguf, n_ctx=1024)
    tuned = LLMClient(provider, log=db, routes=routes_for(db, home, "active"))
    base = LLMClient(provider, log=db)
    cases = _prompts()
    prompts = [p for p, _ in cases]
    tuned_text = _answers(tuned, prompts)
    base_text = _answers(base, prompts)
    # Greedy decoding with one seed is deterministic, so a difference is the adapter's doing.
    assert _answers(base, prompts[:1]) == base_text[:1] and _answers(tuned, prompts[:1]) == tuned_text[:1]
    assert sum(a != b for a, b in zip(tuned_text, base_text, strict=True)) >= len(cases) // 2, (tuned_text, base_text)
    logged = [r[0] for r in db.query("SELECT adapter FROM llm_calls ORDER BY id")]
    assert logged[: 2 * len(cases)] == ["plan@v1"] * len(cases) + [""] * len(cases)


# ------------------------------------------------------------------------------------- DPO


def test_dpo_training_from_preference_pairs(home: Home, db: Database) -> None:
    pytest.importorskip("llama_cpp", reason="the llama extra (llama-cpp-python) is not installed")
    from appliance.cli import main
    from appliance.llm import LLMClient
    from appliance.llm.providers.llama_cpp import LlamaCppProvider

    model = tiny_model()
    _setup(home)
    tiny_recipe(home, model, method="dpo", steps=8, save_steps=8, learning_rate=5e-3)
    dataset = write_dataset(db, home, slot="plan", kind="dpo", train=plan_dpo_rows(32),
                            valid=plan_dpo_rows(4, seed=5))
    assert main(["train", "plan", "--dataset", str(dataset), "--json"]) == 0
    [v1] = registry.versions(db, "plan")
    assert v1.method == "dpo" and v1.metrics["steps"] == 8 and v1.recipe["training"]["beta"] == 0.1
    assert "eval_rewards/accuracies" in v1.metrics["eval"] or "eval_loss" in v1.metrics["eval"]
    registry.promote(db, home, "plan")
    provider = LlamaCppProvider(model.gguf, n_ctx=1024)
    prompts = [p for p, _ in _prompts()]
    tuned = _answers(LLMClient(provider, routes=routes_for(db, home)), prompts)
    assert tuned != _answers(LLMClient(provider), prompts)


# ----------------------------------------------------------------------- from real gold triples


def test_training_on_gold_triples_of_a_real_commit(home: Home, db: Database, lib) -> None:  # noqa: F811
    from appliance.db.triples import list_triples
    from appliance.training.trainer import train
    from harness.triples import build_gold

    model = tiny_model()
    _setup(home)
    build_gold(db, home, "lib")
    [execute] = list_triples(db, stage="execute")
    recipe = tiny_recipe(home, model, slot="execute-code", steps=4, save_steps=4)
    dataset = write_dataset(db, home, slot="execute-code", kind="sft", train=triple_rows([execute]) * 4)
    # The real prompt (instruction, plan, the files' text) does not fit 256 tokens: refused, not cut.
    with pytest.raises(BadInput, match="longer than max_length 256 tokens"):
        train(home, db, "execute-code", dataset)
    recipe.write_text(recipe.read_text().replace("max_length = 256", "max_length = 1024"))
    result = train(home, db, "execute-code", dataset)
    assert result.version.name == "execute-code-v1" and result.outcome.steps == 4
    assert result.outcome.rows == {"train": 4, "valid": 0, "too_long": 0}
    rows = db.query("SELECT triple_id FROM training_dataset_rows WHERE dataset_id = ?", (dataset,))
    assert {r[0] for r in rows} == {execute.id}  # the provenance the version points back to


# ---------------------------------------------------------------------------------- resume


def _cra(home: Home, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CRA_HOME": str(home.root), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(home: Home, proc: subprocess.Popen[str], above: int = 0, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [int(p.parent.name.split("-")[-1]) for p in (home.var / "train").glob("*/checkpoints/*/trainer_state.json")]
        if any(s > above for s in steps):
            return max(steps)
        if proc.poll() is not None:
            pytest.fail(f"training ended before a checkpoint: {proc.communicate()}")
        time.sleep(0.2)
    pytest.fail("no checkpoint appeared")


def test_a_killed_training_resumes_from_its_checkpoint_with_the_same_final_step_count(
        home: Home, db: Database) -> None:
    model = tiny_model()
    _setup(home)
    tiny_recipe(home, model, steps=12, save_steps=2)
    dataset = write_dataset(db, home, slot="plan", kind="sft", train=plan_sft_rows(24))
    first = _cra(home, "train", "plan", "--dataset", str(dataset))
    _wait_for_checkpoint(home, first)
    first.send_signal(signal.SIGKILL)  # no chance to clean up
    first.wait()
    refused = _cra(home, "train", "plan", "--dataset", str(dataset))
    out, err = refused.communicate(timeout=300)
    assert refused.returncode == 2 and "--resume" in err and len(err.strip().splitlines()) == 1, err
    # Ctrl-C: a checkpoint at the step it stopped, exit 130 and the command to continue.
    second = _cra(home, "train", "plan", "--dataset", str(dataset), "--resume")
    at = _wait_for_checkpoint(home, second, above=_wait_for_checkpoint(home, second))
    second.send_signal(signal.SIGINT)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 130, err
    assert "training stopped at step" in err and f"--dataset {dataset} --resume" in err
    stopped = int(err.split("stopped at step ")[1].split()[0])
    assert at <= stopped < 12
    third = _cra(home, "train", "plan", "--dataset", str(dataset), "--resume", "--json")
    out, err = third.communicate(timeout=600)
    assert third.returncode == 0, err
    result = json.loads(out)
    assert result["outcome"]["steps"] == 12 and result["outcome"]["resumed_from_step"] == stopped
    # The loss curve covers the whole run, the steps before the resume included.
    assert [step for step, _ in result["outcome"]["loss_curve"]] == list(range(2, 13, 2))
    assert registry.find(db, "plan", 1).metrics["steps"] == 12


# ------------------------------------------------------------------------ refused before training


def test_a_dataset_of_another_slot_or_kind_is_refused(home: Home, db: Database) -> None:
    from appliance.training.trainer import train

    model = tiny_model()
    _setup(home)
    tiny_recipe(home, model)
    other = write_dataset(db, home, slot="scope", kind="sft", train=plan_sft_rows(2))
    with pytest.raises(BadInput, match="curated for the scope slot, not plan"):
        train(home, db, "plan", other)
    dpo = write_dataset(db, home, slot="plan", kind="dpo", train=plan_dpo_rows(2))
    with pytest.raises(BadInput, match="is DPO data; the plan recipe trains SFT"):
        train(home, db, "plan", dpo)
    with pytest.raises(NotFound, match="no training dataset 99"):
        train(home, db, "plan", 99)


def test_only_the_frozen_base_model_is_trained_from(home: Home, db: Database, tmp_path: Path) -> None:
    from appliance.training.trainer import train

    model = tiny_model()
    _setup(home)
    base = tmp_path / "base"
    shutil.copytree(model.hf_dir, base)
    recipe = tiny_recipe(home, model)
    recipe.write_text(recipe.read_text().replace(str(model.hf_dir), str(base)))
    dataset = write_dataset(db, home, slot="plan", kind="sft", train=plan_sft_rows(2))
    # A folder holding a LoRA is an adapter, not a base.
    (base / "adapter_config.json").write_text("{}")
    with pytest.raises(BadInput, match="holds a LoRA adapter, not a base model"):
        train(home, db, "plan", dataset)
    (base / "adapter_config.json").unlink()
    # A version trained on this path records its hash; a changed (merged?) model is refused.
    from curated import staged_files, version_meta

    meta = version_meta(model_base=str(base))
    meta.base_sha256 = tree_digest(sha256_tree(base, hidden=False))
    registry.register(db, home, "plan", staged_files(tmp_path / "v1", "x"), meta)
    weights = next(base.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x01\x02\x03\x04")
    with pytest.raises(BadInput, match="base model changed since plan@v1"):
        train(home, db, "plan", dataset)
    # Pinning the new hash accepts it on purpose; a pin that does not match is refused.
    recipe.write_text(recipe.read_text().replace('chat_template = "model"',
                                                 f'base_sha256 = "{"0" * 64}"\nchat_template = "model"'))
    with pytest.raises(BadInput, match="the recipe pins 0000000000000000"):
        train(home, db, "plan", dataset)


def test_without_a_converter_for_the_gguf_copy_training_does_not_start(
        home: Home, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.training.trainer import train

    model = tiny_model()
    monkeypatch.delenv("CRA_LLAMA_CPP_SRC", raising=False)
    tiny_recipe(home, model)
    dataset = write_dataset(db, home, slot="plan", kind="sft", train=plan_sft_rows(2))
    with pytest.raises(ConfigError, match="convert_lora_to_gguf.py"):
        train(home, db, "plan", dataset)
    assert registry.versions(db) == [] and not (home.var / "train").exists()


def test_a_malformed_dataset_line_is_refused_with_its_line_number(home: Home, db: Database) -> None:
    from appliance.training.datasets import read_rows

    path = home.root / "train.jsonl"
    rows = plan_sft_rows(2)
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"prompt": rows[1]["prompt"]}) + "\n")
    with pytest.raises(BadInput, match="line 2 is not a SFT row"):
        read_rows(path, "sft")
    path.write_text(json.dumps(rows[0]) + "\n{oops\n")
    with pytest.raises(BadInput, match="line 2 is not JSON"):
        read_rows(path, "sft")


def test_several_gpus_get_accelerate_with_a_deepspeed_zero2_config_cra_writes(tmp_path: Path) -> None:
    import yaml

    from appliance.training.distributed import launch_command, write_configs

    accelerate, deepspeed = write_configs(tmp_path, 4)
    config = yaml.safe_load(accelerate.read_text())
    assert config["distributed_type"] == "DEEPSPEED" and config["num_processes"] == 4
    assert config["deepspeed_config"]["deepspeed_config_file"] == str(deepspeed)
    ds = json.loads(deepspeed.read_text())
    assert ds["zero_optimization"]["stage"] == 2  # never 3: it breaks LoRA gradients on Qwen3
    assert ds["train_micro_batch_size_per_gpu"] == "auto"  # the trainer fills in the recipe's values
    cmd = launch_command(accelerate, tmp_path / "plan.json", tmp_path / "outcome.json")
    assert cmd[1:5] == ["-m", "accelerate.commands.launch", "--config_file", str(accelerate)]
    assert cmd[5:7] == ["-m", "appliance.training.worker"]


def test_cra_train_on_what_cra_curate_data_built_from_a_real_commit(home: Home, db: Database, lib,  # noqa: F811
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The whole chain through the CLI: gold triples -> train-plan -> curate-data -> train."""
    from appliance.cli import main

    model = tiny_model()
    _setup(home)
    tiny_recipe(home, model, slot="execute-code", steps=4, save_steps=4)
    recipe = home.adapters / "execute-code.toml"
    recipe.write_text(recipe.read_text().replace("max_length = 256", "max_length = 1024"))
    assert main(["triples", "build", "lib"]) == 0
    assert main(["train-plan", "--json"]) == 0
    capsys.readouterr()
    assert main(["curate-data", "--plan", "1", "--slot", "execute-code", "--cutoff", "2021-01-01",
                 "--tokenizer", str(model.hf_dir), "--max-tokens", "1024", "--json"]) == 0
    [dataset] = [d for d in json.loads(capsys.readouterr().out) if d["kind"] == "sft"]
    assert main(["train", "execute-code", "--dataset", str(dataset["id"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["name"] == "execute-code-v1" and result["outcome"]["steps"] == 4
    version = registry.find(db, "execute-code", "candidate")
    assert version.dataset_id == dataset["id"] and version.dataset_hash
    meta = json.loads((home.root / version.path / "metadata.json").read_text())
    assert meta["dataset_content_hash"] == dataset["content_hash"]


def test_ctrl_c_during_a_cycles_training_names_the_cycle_to_rerun(home: Home, db: Database) -> None:
    """The cycle resumes the checkpoint itself: its message names ``cra cycle``, not ``cra train``."""
    from appliance.config import load_settings
    from appliance.errors import Interrupted
    from appliance.evaluation import cycle

    model = tiny_model()
    _setup(home)
    tiny_recipe(home, model, steps=12, save_steps=2)
    dataset = write_dataset(db, home, slot="plan", kind="sft", train=plan_sft_rows(24))
    sent = []

    def tick(what: str, done: int, total: int) -> None:
        if done >= 1 and not sent:  # a real Ctrl-C, once training has begun
            sent.append(done)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted) as stopped:
        cycle.train(home, db, load_settings(home), "plan", dataset, tick=tick)
    assert sent and "training stopped at step" in stopped.value.message
    assert stopped.value.hint == "continue with: cra cycle --slot plan (the same command)"
    assert registry.versions(db, "plan") == []  # nothing registered from a stopped run
