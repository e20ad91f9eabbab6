"""The in-process llama.cpp provider, for real, on the tiny GGUF model built by tests/tinymodel.py.

Nothing is mocked: llama-cpp-python loads the model (and its LoRA), the schema becomes a
grammar, the answers are parsed by the harness's own plan reader and the calls land in a
real SQLite DB.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tinymodel import (  # tests/ is on sys.path (conftest.py)
    check_samples,
    named_files,
    plan_prompt,
    tiny_model,
)

from appliance.db.core import Database
from appliance.db.corpus import register_repo
from appliance.db.runs import RunKey, list_calls, start_run
from appliance.errors import BadInput
from appliance.llm import LLMClient, LLMConfig, LLMError
from appliance.llm.providers import llama_cpp as provider_mod
from appliance.llm.providers.llama_cpp import LlamaCppProvider, check_gguf
from appliance.records import RepoRecord
from harness.plans import plan_json_schema

FILES = ["pkg/cache.py", "pkg/parser.py", "pkg/queue.py"]
TASK = "Fix parser in cache"


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture
def client_for(model, db: Database):
    def make(**config) -> LLMClient:
        cfg = LLMConfig(**{"provider": "llama_cpp", "model": str(model.gguf), "n_ctx": 1024,
                           "retry_backoff_s": 0, **config})
        return LLMClient.from_config(cfg, log=db)
    return make


@pytest.fixture
def run(db: Database):
    register_repo(db, RepoRecord(name="demo", origin_url="file:///demo", head_sha="a" * 40,
                                 default_branch="main", python_version="3.11", test_cmd="pytest"), [], [])
    return start_run(db, RunKey(repo="demo", sha="c" * 40, provider="llama_cpp", model="tiny"))


# ---------------------------------------------------------------------- without a model


def test_a_missing_or_foreign_model_file_is_bad_input_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist") as info:
        check_gguf(tmp_path / "nope.gguf")
    assert "nope.gguf" in str(info.value) and "never downloads" in str(info.value)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(BadInput, match="not GGUF") as info:
        LlamaCppProvider(weights)
    assert "model.safetensors" in str(info.value) and "convert_hf_to_gguf" in str(info.value)
    with pytest.raises(BadInput, match="not a file"):
        check_gguf(tmp_path, what="adapter")


def test_without_llama_cpp_python_the_provider_asks_for_the_extra(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    code = (
        "import sys; sys.modules['llama_cpp'] = None\n"  # what an install without the extra sees
        "from appliance.errors import MissingExtra\n"
        "from appliance.llm.providers.llama_cpp import LlamaCppProvider\n"
        "try:\n"
        f"    LlamaCppProvider({str(gguf)!r})\n"
        "except MissingExtra as exc:\n"
        "    print('MISSING', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    assert "MISSING the llama_cpp provider needs the optional 'llama' extra" in out.stdout
    assert "pip install 'cra[llama]'" in out.stdout


# ------------------------------------------------------------------------ the tiny model


def test_plans_come_back_schema_valid_naming_only_the_given_files(client_for, db, run) -> None:
    client = client_for()
    view = client.bound(run_id=run.id, repo_id=run.repo_id, sha=run.sha, attempt=1)
    out = view.complete(plan_prompt(TASK, FILES), stage="plan", json_schema=plan_json_schema(FILES),
                        temperature=0.2, max_tokens=256, seed=11)

    assert out.ok, out.errors
    assert named_files(out.text) <= set(FILES)
    assert out.finish_reasons == ["stop"] and out.model == str(tiny_model().gguf)
    (row,) = list_calls(db, run_id=run.id)
    assert (row.status, row.stage, row.provider, row.seed) == ("ok", "plan", "llama_cpp", 11)
    assert row.prompt_tokens == out.prompt_tokens > 20
    assert row.completion_tokens == out.completion_tokens > 10
    assert row.responses == [out.text] and row.json_schema["properties"]["steps"]
    assert row.sha == run.sha and row.latency_s > 0


def test_n_samples_are_all_valid_and_a_seed_reproduces_its_sample(client_for, db) -> None:
    client = client_for()
    schema = plan_json_schema(FILES)
    three = client.complete(plan_prompt(TASK, FILES), stage="plan", json_schema=schema,
                            temperature=0.9, n=3, seed=100, max_tokens=256)
    check_samples(three, FILES, 3)
    # A budget too small for any plan: every sample cut short, said so, none passed on as valid.
    cut = client.complete(plan_prompt(TASK, FILES), stage="plan", json_schema=schema,
                          temperature=0.9, n=2, seed=7, max_tokens=12)
    check_samples(cut, FILES, 2)
    assert not cut.ok and cut.finish_reasons == ["length", "length"] and all(cut.errors)
    # Sample i is the call with seed + i: sample 2 alone is the same text.
    alone = client.complete(plan_prompt(TASK, FILES), stage="plan", json_schema=schema,
                            temperature=0.9, n=1, seed=102, max_tokens=256)
    assert alone.text == three.texts[2]
    rows = list_calls(db, stage="plan")
    assert [r.n for r in rows] == [3, 2, 1]
    assert rows[0].completion_tokens > rows[2].completion_tokens  # summed over the samples


def test_the_adapter_is_applied_and_cached_per_model_and_adapter(client_for, model) -> None:
    if model.lora_gguf is None:
        pytest.skip("peft is not installed: the tiny model has no LoRA (pip install 'cra[train]')")
    client = client_for()
    prompt = plan_prompt("Add token in router", ["pkg/router.py", "pkg/token.py", "pkg/store.py"])
    base = client.complete(prompt, stage="plan", temperature=0, seed=1, max_tokens=80)
    tuned = client.complete(prompt, stage="plan", temperature=0, seed=1, max_tokens=80,
                            adapter=str(model.lora_gguf))
    again = client.complete(prompt, stage="plan", temperature=0, seed=1, max_tokens=80)
    assert base.text == again.text  # greedy: the difference below is the adapter, not chance
    assert tuned.text != base.text and tuned.adapter == str(model.lora_gguf)
    cached = provider_mod.cached_models()
    assert (str(model.gguf.resolve()), "") in cached
    assert (str(model.gguf.resolve()), str(model.lora_gguf.resolve())) in cached


def test_a_non_gguf_adapter_is_bad_input(client_for, tmp_path: Path) -> None:
    lora = tmp_path / "adapter_model.safetensors"
    lora.write_bytes(b"not gguf")
    with pytest.raises(BadInput, match="adapter file is not GGUF"):
        client_for().complete(plan_prompt(TASK, FILES), stage="plan", adapter=str(lora))


def test_an_answer_cut_by_max_tokens_is_bad_output(client_for, db) -> None:
    out = client_for().complete(plan_prompt(TASK, FILES), stage="plan", max_tokens=6, seed=3,
                                json_schema=plan_json_schema(FILES))
    assert out.status == "bad_output" and out.finish_reasons == ["length"]
    assert out.errors[0].startswith("not JSON")
    (row,) = list_calls(db)
    assert row.status == "bad_output" and row.completion_tokens == 6


def test_a_timeout_is_recorded_retried_and_leaves_the_model_usable(client_for, db) -> None:
    slow = client_for(timeout_s=1e-6, max_retries=1)
    with pytest.raises(LLMError) as info:
        slow.complete(plan_prompt(TASK, FILES), stage="plan", max_tokens=64, seed=1)
    assert info.value.status == "timeout" and info.value.tries == 2
    rows = list_calls(db)
    assert [r.status for r in rows] == ["timeout", "timeout"] and "no answer within" in rows[0].error
    fine = client_for().complete(plan_prompt(TASK, FILES), stage="plan", seed=1, max_tokens=256,
                                 json_schema=plan_json_schema(FILES))
    assert fine.ok


def test_a_prompt_longer_than_the_context_is_a_bad_request_not_retried(client_for, db) -> None:
    client = client_for(n_ctx=64)
    with pytest.raises(LLMError, match="n_ctx") as info:
        client.complete(plan_prompt(TASK * 20, FILES), stage="plan", max_tokens=16)
    assert info.value.status == "bad_request" and info.value.tries == 1
    assert [r.status for r in list_calls(db)] == ["bad_request"]


def test_the_tiny_model_is_cached_on_disk(model) -> None:
    done = json.loads((model.root / "done.json").read_text())
    assert done["build_seconds"] == model.build_seconds and model.gguf.read_bytes()[:4] == b"GGUF"
