"""The LLM client's contract, on a real DB: logging, retries, schema checks, settings, runs.

The provider here is the scripted one, so each failure happens exactly when the test
says; the same client code runs against real models in test_llama_cpp_provider.py and
test_openai_compat_provider.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.db.core import Database
from appliance.db.corpus import register_repo
from appliance.db.runs import (
    AttemptRecord,
    CallRecord,
    RunKey,
    finish_run,
    get_run,
    get_run_trace,
    list_calls,
    list_runs,
    log_retrieval,
    save_attempt,
    start_run,
    summarize_runs,
)
from appliance.db.triples import save_plan
from appliance.errors import BadInput, ConfigError, CraError, InfraError
from appliance.llm import Completion, LLMClient, LLMConfig, LLMError, LLMUnavailable, ProviderError
from appliance.llm.calllog import MemoryCallLog
from appliance.llm.providers.scripted import ScriptedProvider, ScriptExhausted, scripted
from appliance.records import RepoRecord
from harness.plans import Plan, plan_json_schema

FILES = ["pkg/core.py", "pkg/util.py"]
GOOD_PLAN = json.dumps({"kind": "step", "steps": [
    {"id": 1, "file": "pkg/core.py", "symbols": ["parse"], "action": "modify",
     "description": "fix parse", "depends_on": []}]})
PROMPT = [{"role": "system", "content": "plan"}, {"role": "user", "content": "Fix the parser"}]


@pytest.fixture
def repo(db: Database) -> str:
    register_repo(db, RepoRecord(name="demo", origin_url="file:///demo", head_sha="a" * 40,
                                 default_branch="main", python_version="3.11",
                                 test_cmd="pytest", source="added"), [], [])
    return "demo"


def _key(repo: str, **kw) -> RunKey:
    return RunKey(**{"repo": repo, "sha": "b" * 40, "provider": "scripted", "model": "m",
                     "temperature": 0.2, "sample": 0, **kw})


def _client(provider, db=None, **config) -> tuple[LLMClient, list[float]]:
    sleeps: list[float] = []
    cfg = LLMConfig(**{"retry_backoff_s": 0.5, **config})
    return LLMClient(provider, config=cfg, log=db, sleep=sleeps.append), sleeps


# ------------------------------------------------------------------------- logging


def test_a_call_is_logged_with_its_run_task_and_attempt(db: Database, repo: str) -> None:
    run = start_run(db, _key(repo))
    client, _ = _client(scripted(GOOD_PLAN, model="tiny"), db)
    view = client.bound(run_id=run.id, repo_id=run.repo_id, sha=run.sha).bound(attempt=2)
    schema = plan_json_schema(FILES)

    out = view.complete(PROMPT, stage="plan", temperature=0.7, json_schema=schema, seed=42,
                        max_tokens=300)

    assert isinstance(out, Completion) and out.ok and out.text == GOOD_PLAN
    assert Plan.from_json(out.text).files() == ["pkg/core.py"]
    (row,) = list_calls(db, run_id=run.id)
    assert (row.stage, row.attempt, row.try_no, row.sha, row.repo_id) == ("plan", 2, 1, run.sha, run.repo_id)
    assert (row.provider, row.model, row.adapter, row.status) == ("scripted", "tiny", "", "ok")
    assert (row.temperature, row.seed, row.n, row.max_tokens) == (0.7, 42, 1, 300)
    assert row.messages == PROMPT and row.responses == [GOOD_PLAN] and row.json_schema == schema
    assert row.prompt_tokens == 4 and row.completion_tokens == out.completion_tokens > 0
    assert row.id == out.call_id and row.latency_s >= 0 and row.error is None


def test_a_call_outside_any_run_is_still_logged(db: Database) -> None:
    client, _ = _client(scripted("hello"), db)
    out = client.complete(PROMPT, stage="scope", adapter="slot-a")
    (row,) = list_calls(db)
    assert row.run_id is None and row.sha is None and row.adapter == "slot-a" == out.adapter
    assert row.seed == out.seed and row.json_schema is None  # a seed is always chosen and kept


def test_n_samples_are_one_row_with_every_answer(db: Database) -> None:
    provider = scripted("a", "b", "c")
    client, _ = _client(provider, db)
    out = client.complete(PROMPT, stage="execute", n=3, seed=5)
    assert out.texts == ["a", "b", "c"] and len(provider.requests) == 1
    (row,) = list_calls(db, stage="execute")
    assert row.n == 3 and row.responses == ["a", "b", "c"] and row.finish_reasons == ["stop"] * 3


# ------------------------------------------------------------------------- failures


def test_timeouts_are_retried_and_each_try_is_recorded(db: Database) -> None:
    provider = scripted(ProviderError("timeout", "no answer within 5 s"),
                        ProviderError("server_error", "HTTP 503"), GOOD_PLAN)
    client, sleeps = _client(provider, db, max_retries=2)
    out = client.complete(PROMPT, stage="plan", seed=1)
    assert out.text == GOOD_PLAN
    rows = list_calls(db)
    assert [(r.try_no, r.status) for r in rows] == [(1, "timeout"), (2, "server_error"), (3, "ok")]
    assert "no answer within 5 s" in rows[0].error and rows[0].responses == []
    assert sleeps == [0.5, 1.0]  # backoff doubles
    assert all(r.seed == 1 for r in rows)  # a retry asks the same question


def test_retries_are_bounded_then_a_typed_failure(db: Database) -> None:
    provider = scripted(*[ProviderError("timeout", "slow")] * 3)
    client, _ = _client(provider, db, max_retries=1)
    with pytest.raises(LLMError) as info:
        client.bound(attempt=3).complete(PROMPT, stage="plan")
    err = info.value
    assert (err.status, err.stage, err.tries) == ("timeout", "plan", 2)
    assert "after 2 tries" in str(err) and "scripted" in str(err)
    assert provider.remaining == 1  # the third answer was never asked for
    rows = list_calls(db)
    assert [r.status for r in rows] == ["timeout", "timeout"] and err.call_ids == [r.id for r in rows]
    assert {r.attempt for r in rows} == {3}


def test_a_bad_request_is_not_retried(db: Database) -> None:
    client, sleeps = _client(scripted(ProviderError("bad_request", "HTTP 400: too long"), "x"), db)
    with pytest.raises(LLMError, match="bad_request") as info:
        client.complete(PROMPT, stage="plan")
    assert [r.status for r in list_calls(db)] == ["bad_request"] and sleeps == []
    # The server answered and refused the request: that is no outage.
    assert not isinstance(info.value, InfraError)


@pytest.mark.parametrize("status", ["timeout", "server_error", "connection_error"])
def test_a_server_failing_every_retry_is_an_infrastructure_error(db: Database, status: str) -> None:
    client, _ = _client(scripted(*[ProviderError(status, "down")] * 2), db, max_retries=1)
    with pytest.raises(LLMUnavailable) as info:
        client.complete(PROMPT, stage="execute")
    err = info.value
    assert isinstance(err, InfraError) and isinstance(err, LLMError)  # kept apart, still an LLMError
    assert (err.status, err.tries, err.exit_code) == (status, 2, 1)


def test_a_library_failure_is_not_an_infrastructure_error(db: Database) -> None:
    def crash(request):
        raise RuntimeError("llama_decode returned -1")

    client, _ = _client(ScriptedProvider([crash]), db)
    with pytest.raises(LLMError) as info:
        client.complete(PROMPT, stage="plan")
    assert not isinstance(info.value, InfraError)


def test_preflight_passes_a_provider_with_nothing_to_ping() -> None:
    client, _ = _client(scripted("a"))
    client.preflight()  # in process: nothing to reach


def test_garbage_under_a_schema_is_recorded_as_bad_output_not_raised(db: Database) -> None:
    client, _ = _client(scripted("Sure! Here is the plan: step one, edit things.", GOOD_PLAN), db)
    out = client.complete(PROMPT, stage="plan", n=2, json_schema=plan_json_schema(FILES))
    assert out.status == "bad_output" and not out.ok
    assert out.errors[0].startswith("not JSON") and out.errors[1] is None
    assert out.valid_texts() == [GOOD_PLAN]
    (row,) = list_calls(db)  # not retried: a model that answered is not a transport failure
    assert row.status == "bad_output" and "sample 0: not JSON" in row.error


def test_json_that_breaks_the_schema_is_bad_output_naming_the_field(db: Database) -> None:
    wrong_file = GOOD_PLAN.replace("pkg/core.py", "pkg/elsewhere.py")
    client, _ = _client(scripted(wrong_file), db)
    out = client.complete(PROMPT, stage="plan", json_schema=plan_json_schema(FILES))
    assert out.status == "bad_output" and "steps/0/file" in out.errors[0]


def test_a_library_failure_becomes_a_recorded_error(db: Database) -> None:
    def explode(request):
        raise RuntimeError("llama_decode returned -3")

    client, _ = _client(scripted(explode), db)
    with pytest.raises(LLMError, match="llama_decode returned -3") as info:
        client.complete(PROMPT, stage="plan")
    assert info.value.status == "error" and isinstance(info.value, CraError)
    (row,) = list_calls(db)
    assert row.status == "error" and "RuntimeError" in row.error


def test_the_users_errors_are_raised_as_they_are_and_still_recorded(db: Database) -> None:
    client, _ = _client(ScriptedProvider(lambda req, i: (_ for _ in ()).throw(
        BadInput("the adapter file does not exist", path="/nope.gguf"))), db)
    with pytest.raises(BadInput, match="/nope.gguf"):
        client.complete(PROMPT, stage="plan", adapter="/nope.gguf")
    assert [r.status for r in list_calls(db)] == ["error"]


@pytest.mark.parametrize("kwargs, message", [
    ({"messages": []}, "non-empty list"),
    ({"messages": [{"role": "user"}]}, "message 0"),
    ({"stage": ""}, "names its stage"),
    ({"n": 0}, "n must be"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": -1}, "temperature"),
    ({"json_schema": "plan"}, "json_schema"),
])
def test_bad_arguments_are_bad_input_before_any_request(kwargs, message) -> None:
    provider = scripted("never")
    client, _ = _client(provider)
    args = {"messages": PROMPT, "stage": "plan", **kwargs}
    with pytest.raises(BadInput, match=message):
        client.complete(args.pop("messages"), **args)
    assert provider.requests == []


def test_an_exhausted_script_is_a_loud_test_error() -> None:
    client, _ = _client(scripted("one"), MemoryCallLog())
    client.complete(PROMPT, stage="plan")
    with pytest.raises(ScriptExhausted):
        client.complete(PROMPT, stage="plan")
    assert [r.status for r in client.log.records] == ["ok", "error"]


# ------------------------------------------------------------------------- settings


def test_llm_settings_default_to_no_model() -> None:
    cfg = LLMConfig()
    assert not cfg.configured and cfg.endpoint == "" and cfg.max_retries == 2
    with pytest.raises(ConfigError, match="no LLM is configured"):
        LLMClient.from_config(cfg, log=None)


def test_llm_settings_table_rejects_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    from appliance.config import Home, load_settings

    home = Home(tmp_path)
    home.config_path.write_text('[llm]\nprovider = "openai_compat"\nmodel = "qwen"\n'
                                'endpoint = "http://127.0.0.1:8000/v1"\nmax_retries = 4\n')
    cfg = load_settings(home).llm
    assert cfg.configured and cfg.max_retries == 4
    home.config_path.write_text("[llm]\ntemprature = 0.2\n")
    with pytest.raises(ConfigError, match="unknown setting 'llm.temprature'"):
        load_settings(home)
    with pytest.raises(ConfigError, match="provider 'gpt'"):
        LLMConfig(provider="gpt")
    with pytest.raises(ConfigError, match="needs an endpoint"):
        LLMConfig(provider="openai_compat", model="m")
    with pytest.raises(BadInput, match="not an http"):
        LLMConfig(provider="openai_compat", model="m", endpoint="127.0.0.1:8000")
    with pytest.raises(ConfigError, match="max_retries"):
        LLMConfig(max_retries=-1)
    with pytest.raises(ConfigError, match="structured_output"):
        LLMConfig(structured_output="grammar")


def test_every_llm_setting_has_help() -> None:
    from dataclasses import fields

    assert all(f.metadata.get("help") for f in fields(LLMConfig))


def test_cli_flags_pick_the_provider() -> None:
    base = LLMConfig(model="served-name")
    assert base.with_flags(model="/m.gguf").provider == "llama_cpp"
    remote = base.with_flags(endpoint="http://10.0.0.5:8000/v1")
    assert (remote.provider, remote.model, remote.endpoint) == ("openai_compat", "served-name",
                                                                 "http://10.0.0.5:8000/v1")
    assert base.with_flags() is base
    # A bad --endpoint is the flag's fault: the error names it, not cra.toml.
    with pytest.raises(BadInput, match=r"^--endpoint 'ftp://x' is not an http\(s\) URL") as info:
        base.with_flags(endpoint="ftp://x", model="m")
    assert not isinstance(info.value, ConfigError) and "cra.toml" not in str(info.value)


def test_a_missing_model_file_is_bad_input_naming_it(tmp_path) -> None:
    path = tmp_path / "models" / "qwen.gguf"
    with pytest.raises(BadInput, match="qwen.gguf") as info:
        LLMClient.from_config(LLMConfig(provider="llama_cpp", model=str(path)), log=None)
    assert "never downloads" in str(info.value)


# ---------------------------------------------------------------------------- runs


def test_runs_are_resumable_by_their_key(db: Database, repo: str) -> None:
    first = start_run(db, _key(repo))
    assert first.status == "running" and first.adapter == ""
    other_sample = start_run(db, _key(repo, sample=1))
    other_adapter = start_run(db, _key(repo, adapter="scope-v2"))
    assert len({first.id, other_sample.id, other_adapter.id}) == 3

    # Interrupted: the same key starts over, its partial children gone.
    client, _ = _client(scripted("a"), db)
    client.bound(run_id=first.id).complete(PROMPT, stage="plan")
    log_retrieval(db, first.id, attempt=1, query="fix", files=[], symbols=[], seconds=0.1)
    save_attempt(db, AttemptRecord(run_id=first.id, attempt=1, apply_status="apply_error"))
    again = start_run(db, _key(repo))
    assert again.id == first.id and again.attempts == 0
    trace = get_run_trace(db, first.id)
    assert trace.calls == trace.retrievals == trace.attempts == []

    # Finished: returned as it is, for the caller to skip.
    finish_run(db, first.id, status="failed", attempts=1, failure_kind="apply_error")
    done = start_run(db, _key(repo))
    assert done.id == first.id and done.finished and done.failure_kind == "apply_error"


def test_a_run_trace_holds_everything_in_order(db: Database, repo: str) -> None:
    run = start_run(db, _key(repo))
    client, _ = _client(scripted("plan 1", "edits 1", "plan 2", "edits 2"), db)
    for attempt in (1, 2):
        step = client.for_run(run, attempt=attempt)
        log_retrieval(db, run.id, attempt=attempt, query="Fix the parser",
                      files=[{"path": "pkg/core.py", "score": 3.2}],
                      symbols=[{"path": "pkg/core.py", "name": "parse", "score": 2.0}], seconds=0.01)
        step.complete(PROMPT, stage="plan")
        plan_id = save_plan(db, "demo", run.sha, Plan.from_json(GOOD_PLAN).to_dict(), run_id=run.id,
                            attempt=attempt)
        step.complete(PROMPT, stage="execute")
        save_attempt(db, AttemptRecord(
            run_id=run.id, attempt=attempt, plan_id=plan_id, edits="pkg/core.py\n<<<<<<< SEARCH\n...",
            apply_status="applied", validation={"f2p": {"t::a": "failed" if attempt == 1 else "passed"}},
            test_output="x" * 100_000 if attempt == 1 else "1 passed", resolved=attempt == 2))
    finish_run(db, run.id, status="resolved", attempts=2, summary={"seconds": 1.5})

    trace = get_run_trace(db, run.id)
    assert trace.run.status == "resolved" and trace.run.steps_to_green == 2
    assert trace.run.summary == {"seconds": 1.5} and trace.run.attempts == 2
    steps = trace.by_attempt()
    assert sorted(steps) == [1, 2]
    assert [c.stage for c in steps[1]["calls"]] == ["plan", "execute"]
    assert [c.responses for c in steps[2]["calls"]] == [["plan 2"], ["edits 2"]]
    assert steps[2]["attempt"].resolved and not steps[1]["attempt"].resolved
    assert steps[1]["plans"][0]["plan"]["steps"][0]["file"] == "pkg/core.py"
    assert steps[1]["retrievals"][0].files[0]["score"] == 3.2
    capped = steps[1]["attempt"].test_output
    assert len(capped) < 70_000 and "characters cut" in capped
    assert json.loads(json.dumps(trace.to_dict()))["run"]["id"] == run.id


def test_runs_are_listed_and_summarised(db: Database, repo: str) -> None:
    a = start_run(db, _key(repo, sample=0))
    b = start_run(db, _key(repo, sample=1))
    c = start_run(db, _key(repo, sample=2))
    start_run(db, _key(repo, sample=3))  # still running
    finish_run(db, a.id, status="resolved", attempts=1)
    finish_run(db, b.id, status="resolved", attempts=3)
    finish_run(db, c.id, status="failed", attempts=3, failure_kind="tests_failed")
    runs = list_runs(db, repo)
    assert [r.sample for r in runs] == [0, 1, 2, 3]
    assert [r.id for r in list_runs(db, repo, status="resolved")] == [a.id, b.id]
    summary = summarize_runs(runs)
    assert summary["by_status"] == {"resolved": 2, "failed": 1, "running": 1}
    assert summary["resolved_rate"] == round(2 / 3, 4) and summary["mean_attempts"] == round(7 / 3, 3)
    assert summary["mean_steps_to_green"] == 2.0 and summary["failure_kinds"] == {"tests_failed": 1}
    assert summary["infra_errors"] == 0
    assert get_run(db, c.id).finished_at is not None


def test_infra_error_runs_are_counted_apart_and_retried_by_a_rerun(db: Database, repo: str) -> None:
    good = start_run(db, _key(repo, sample=0))
    down = start_run(db, _key(repo, sample=1))
    finish_run(db, good.id, status="resolved", attempts=1)
    finish_run(db, down.id, status="infra_error", attempts=1, failure_kind="connection_error")
    summary = summarize_runs(list_runs(db, repo))
    # An outage is not a 0: the rate is over the runs the model finished.
    assert summary["resolved_rate"] == 1.0 and summary["infra_errors"] == 1
    assert summary["failure_kinds"] == {} and summary["by_status"] == {"resolved": 1, "infra_error": 1}
    assert not get_run(db, down.id).finished
    again = start_run(db, _key(repo, sample=1))
    assert again.id == down.id and again.status == "running" and again.failure_kind is None


def test_force_restarts_a_finished_run_clean(db: Database, repo: str) -> None:
    run = start_run(db, _key(repo))
    client, _ = _client(scripted("a"), db)
    client.bound(run_id=run.id).complete(PROMPT, stage="plan")
    finish_run(db, run.id, status="failed", attempts=1, failure_kind="tests_failed")
    assert start_run(db, _key(repo)).finished  # without force: kept, for the caller to skip
    again = start_run(db, _key(repo), force=True)
    assert again.id == run.id and again.status == "running" and get_run_trace(db, run.id).calls == []


def test_a_call_record_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError):
        CallRecord(stage="plan", provider="p", model="m", messages=[], temperature=0, status="meh",
                   latency_s=0)
    with pytest.raises(ValueError):
        AttemptRecord(run_id=1, attempt=1, apply_status="half")
