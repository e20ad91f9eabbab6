"""``adapter=SLOT`` made concrete: each stage gets its slot's registered version, in each
engine's own request field.

In-process llama.cpp runs for real on the tiny model with its real LoRA registered as a
version. llama-server's per-request ``lora`` list is checked against a small server of
our own that answers like llama-server (``/v1/models``, ``/lora-adapters``; the fake of
``test_openai_compat_provider``), recording the request bodies the provider sends.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from curated import staged_files, staged_tiny_lora, version_meta
from test_openai_compat_provider import FakeServer, _chat_answer
from tinymodel import plan_prompt, tiny_model

from appliance.adapters import registry
from appliance.adapters.routes import routes_for
from appliance.config import Home
from appliance.db.core import Database
from appliance.errors import BadInput
from appliance.llm import LLMClient, LLMConfig
from appliance.llm.routing import AdapterRoutes, AdapterTarget

PROMPT = plan_prompt("Add token in router", ["pkg/router.py", "pkg/token.py", "pkg/store.py"])


@pytest.fixture
def tiny_plan_version(db: Database, home: Home, tmp_path: Path):
    """The tiny model's own LoRA, registered and promoted as plan-v1."""
    pytest.importorskip("llama_cpp", reason="the llama extra (llama-cpp-python) is not installed")
    model = tiny_model()
    if model.lora_gguf is None:
        pytest.skip("peft is not installed: the tiny model has no LoRA (pip install 'cra[train]')")
    meta = version_meta(model_base=str(model.hf_dir), base_gguf=str(model.gguf))
    registry.register(db, home, "plan", staged_tiny_lora(tmp_path / "v1", model), meta)
    registry.promote(db, home, "plan")
    return model


def test_each_stage_uses_its_slots_version_in_process(db: Database, home: Home, tiny_plan_version) -> None:
    from appliance.llm.providers.llama_cpp import LlamaCppProvider

    provider = LlamaCppProvider(tiny_plan_version.gguf, n_ctx=1024)
    routed = LLMClient(provider, log=db, routes=routes_for(db, home, "active"))
    assert routed.adapter_label == "active:plan@v1"
    plan = routed.complete(PROMPT, stage="plan", temperature=0, seed=1, max_tokens=60)
    execute = routed.complete(PROMPT, stage="execute", temperature=0, seed=1, max_tokens=60)  # no version: base
    explicit = routed.complete(PROMPT, stage="testgen", adapter="plan", temperature=0, seed=1, max_tokens=60)
    base = LLMClient(provider).complete(PROMPT, stage="plan", temperature=0, seed=1, max_tokens=60)
    assert plan.text == explicit.text != base.text == execute.text
    assert (plan.adapter, execute.adapter) == ("plan@v1", None)
    assert [r[0] for r in db.query("SELECT adapter FROM llm_calls ORDER BY id")] == ["plan@v1", "", "plan@v1"]
    with pytest.raises(BadInput, match="not an adapter slot"):
        routed.complete(PROMPT, stage="plan", adapter="tiny-lora")


def test_an_adapter_is_only_applied_to_the_base_it_was_trained_on(db: Database, home: Home, tmp_path: Path,
                                                                   tiny_plan_version) -> None:
    from appliance.llm.providers.llama_cpp import LlamaCppProvider

    other = tmp_path / "other.gguf"
    other.write_bytes(tiny_plan_version.gguf.read_bytes())
    client = LLMClient(LlamaCppProvider(other, n_ctx=1024), log=db, routes=routes_for(db, home),
                       config=LLMConfig(max_retries=0))
    with pytest.raises(BadInput, match="was trained for the base"):
        client.complete(PROMPT, stage="plan", max_tokens=8)


def test_a_version_without_a_gguf_copy_cannot_run_in_process(db: Database, home: Home, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the llama extra (llama-cpp-python) is not installed")
    from appliance.llm.providers.llama_cpp import LlamaCppProvider

    model = tiny_model()
    staging = staged_files(tmp_path / "v1", "x")
    (staging / "adapter.gguf").unlink()
    registry.register(db, home, "plan", staging, version_meta(base_gguf=str(model.gguf)))
    registry.promote(db, home, "plan")
    client = LLMClient(LlamaCppProvider(model.gguf, n_ctx=1024), routes=routes_for(db, home))
    with pytest.raises(BadInput, match="has no GGUF copy"):
        client.complete(PROMPT, stage="plan", max_tokens=8)


# ------------------------------------------------------------------------------ llama-server


def test_llama_server_gets_the_adapters_id_in_the_requests_lora_list(tmp_path: Path) -> None:
    from appliance.llm.providers.openai_compat import OpenAICompatProvider

    v1, v2 = tmp_path / "plan-v1.gguf", tmp_path / "exec-v4.gguf"
    # Answers like llama-server: one model name, its --lora files under /lora-adapters.
    server = FakeServer([(200, _chat_answer("ok"))] * 3, models=["qwen3-4b"], pages={"/lora-adapters": [
        {"id": i, "path": str(p), "scale": 0.0} for i, p in enumerate((v1, v2))]})
    try:
        routes = AdapterRoutes({
            "plan": AdapterTarget("plan", "plan@v1", "plan-v1", gguf=str(v1)),
            "execute-code": AdapterTarget("execute-code", "execute-code@v4", "execute-code-v4", gguf=str(v2)),
            "scope": AdapterTarget("scope", "scope@v2", "scope-v2", gguf=str(tmp_path / "not-served.gguf"))})
        client = LLMClient(OpenAICompatProvider(server.url, "qwen3-4b"), routes=routes,
                           config=LLMConfig(max_retries=0))
        client.complete(PROMPT, stage="plan")
        client.complete(PROMPT, stage="execute")
        client.complete(PROMPT, stage="testgen")  # no slot: the base, no lora list
        assert [(b["model"], b.get("lora")) for b in server.bodies] == [
            ("qwen3-4b", [{"id": 0, "scale": 1.0}]), ("qwen3-4b", [{"id": 1, "scale": 1.0}]), ("qwen3-4b", None)]
        with pytest.raises(BadInput, match="serves neither a model named 'scope-v2' nor its LoRA file"):
            client.complete(PROMPT, stage="scope")
    finally:
        server.close()


def test_routes_name_the_versions_and_skip_slots_without_one(db: Database, home: Home, tmp_path: Path) -> None:
    assert routes_for(db, home).label == ""
    for slot in ("plan", "execute-code"):
        registry.register(db, home, slot, staged_files(tmp_path / slot, slot), version_meta())
        registry.promote(db, home, slot)
    registry.register(db, home, "plan", staged_files(tmp_path / "plan2", "plan2"), version_meta())
    assert routes_for(db, home).label == "active:execute-code@v1,plan@v1"
    assert routes_for(db, home, "candidate").label == "candidate:execute-code@v1,plan@v2"
    target = routes_for(db, home).for_stage("execute")
    assert target is not None and target.name == "execute-code-v1"
    assert target.gguf == str(home.adapters / "execute-code" / "v1" / "adapter.gguf")
