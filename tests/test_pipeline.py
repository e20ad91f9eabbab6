"""The agent pipeline end to end: a real repo, a real validated task, real sandboxed pytest.

The model is scripted (``appliance.llm.providers.scripted``) with answers that are real
plans and real edits to the real repo, so the orchestration is checked exactly: the repair
loop, pollution stripping, edit application, outcomes and resumption. One run uses the
tiny real GGUF model (llama.cpp) and only has to end as a recorded outcome.

The task comes from ``validate_repo`` on a ``calc`` repo whose commit fixes ``add``, with
the environment built offline from a real wheelhouse (``pip download`` once: network).
The retrieval-planner tests need no environment: they store a valid task directly.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from chat_server import ChatServer
from repo_builder import RepoBuilder
from test_validation import PYPROJECT
from wheels import locked_era

from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import register_repo
from appliance.db.runs import AttemptRecord as RunAttempt
from appliance.db.runs import RunKey, get_run_trace, list_calls, list_runs, save_attempt, start_run
from appliance.db.tasks import TaskRecord, get_task, save_task
from appliance.db.triples import list_plans
from appliance.errors import BadInput
from appliance.llm import LLMClient, LLMConfig, ProviderError
from appliance.llm.providers.scripted import ScriptedProvider
from appliance.records import CommitRecord, FileChange, RepoRecord
from harness.candidate import EvalOptions, evaluate, task_env
from harness.edits import parse_edits
from harness.pipeline import PipelineOptions, run_repo, trace_text
from harness.plans import Plan, files_outside_schema
from harness.sandbox import Limits
from harness.validation import ValidationOptions, validate_repo

network = pytest.mark.network
TIMEOUT_S = 20.0

BUGGY = '"""A calculator."""\n\n\ndef add(a, b):\n    """Add two numbers."""\n    return a - b\n'
FIXED = BUGGY.replace("return a - b", "return a + b")
TESTS = "from calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n"
TEST_ADD = TESTS + "\n\ndef test_add():\n    assert add(2, 3) == 5\n"
INSTRUCTION = "Fix add so it adds\n\nadd() subtracted its arguments."

PLAN = json.dumps({"kind": "step", "steps": [{
    "id": 1, "file": "calc/__init__.py", "symbols": ["add"], "action": "modify",
    "description": "make add return the sum", "depends_on": []}]})
WRONG_EDIT = "calc/__init__.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a * b\n>>>>>>> REPLACE\n"
RIGHT_EDIT_POLLUTED = (
    "Sure! Here is the fix for `add`:\n\n```python\ncalc/__init__.py\n<<<<<<< SEARCH\n"
    "    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n```\n\n"
    "if __name__ == \"__main__\":\n    print(add(2, 3))\n\nHope this helps!"
)
MISSING_EDIT = "calc/__init__.py\n<<<<<<< SEARCH\n    return b - a\n=======\n    return a + b\n>>>>>>> REPLACE\n"


@dataclass
class World:
    home: Home
    db: Database
    sha: str
    parent: str


def _client(db: Database, answers: list, model: str, **config) -> tuple[LLMClient, ScriptedProvider]:
    provider = ScriptedProvider(answers, model=model)
    cfg = LLMConfig(**{"retry_backoff_s": 0, "max_retries": 0, **config})
    return LLMClient(provider, config=cfg, log=db), provider


def _build_repo(root: Path) -> tuple[RepoBuilder, str, str]:
    src = RepoBuilder(root / "src")
    base = src.commit("Start calc", {"pyproject.toml": PYPROJECT, "calc/__init__.py": BUGGY,
                                     "tests/test_calc.py": TESTS})
    sha = src.commit(INSTRUCTION, {"calc/__init__.py": FIXED, "tests/test_calc.py": TEST_ADD})
    return src, base, sha


def _commit(base: str, sha: str, era_key: str | None) -> CommitRecord:
    return CommitRecord(
        sha=sha, parent=base, author_date="2020-09-13T12:00:00+00:00", author_ts=1_600_000_000,
        title="Fix add so it adds", message=INSTRUCTION + "\n",
        files=[FileChange("calc/__init__.py", 1, 1, "source"), FileChange("tests/test_calc.py", 3, 0, "test")],
        era_key=era_key,
    )


def _python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> World:
    root = tmp_path_factory.mktemp("pipeline")
    home = Home(root / "home")
    src, base, sha = _build_repo(root)
    shutil.copytree(src.path, home.repo_dir("calc"))
    era = locked_era(home, "calc", wheel_cache, base)
    db = Database(home.db_path)
    register_repo(db, RepoRecord("calc", str(src.path), sha, "main", _python(), "python -m pytest"),
                  [era], [_commit(base, sha, era.key)])
    counts = validate_repo(home, db, "calc", workers=1,
                           options=ValidationOptions(limits=Limits(timeout_s=TIMEOUT_S)))
    assert counts["valid"] == 1, get_task(db, "calc", sha).reason
    yield World(home, db, sha, base)
    db.close()


def _options() -> PipelineOptions:
    return PipelineOptions(evaluation=EvalOptions(limits=Limits(timeout_s=TIMEOUT_S)))


def _run(world: World, client: LLMClient, **kw):
    return run_repo(world.home, world.db, "calc", client=client, options=_options(), **kw)


# ----------------------------------------------------------------------------- candidate evaluation


@network
def test_the_gold_edit_resolves_and_a_test_tampering_edit_does_not(world: World) -> None:
    task = get_task(world.db, "calc", world.sha)
    env = task_env(world.home, world.db, task)
    assert env.env_key == task.env_key
    opts = EvalOptions(limits=Limits(timeout_s=TIMEOUT_S))
    good = evaluate(world.home, task, parse_edits(RIGHT_EDIT_POLLUTED), env, options=opts)
    assert good.resolved and good.kind == "resolved"
    assert good.fail_to_pass == {"tests/test_calc.py::test_add": "passed"}
    assert good.pass_to_pass == {"tests/test_calc.py::test_zero": "passed"}
    cheat = parse_edits(
        "tests/test_calc.py\n<<<<<<< SEARCH\n    assert add(2, 3) == 5\n=======\n    assert True\n>>>>>>> REPLACE\n"
    )
    bad = evaluate(world.home, task, cheat, env, options=opts)
    assert not bad.resolved and bad.kind == "oracle_tamper"
    assert "tests/test_calc.py: one of the task's test files" in (bad.apply_error or "")
    assert bad.fail_to_pass == {} and "not applied" in bad.output


# ----------------------------------------------------------------------------- orchestration


@network
def test_a_task_resolved_on_the_second_attempt_records_both_attempts(world: World) -> None:
    client, provider = _client(world.db, [PLAN, WRONG_EDIT, PLAN, RIGHT_EDIT_POLLUTED], "repair-twice")
    summary = _run(world, client, max_attempts=3)
    assert provider.remaining == 0
    assert summary["by_status"] == {"resolved": 1} and summary["resolved_rate"] == 1.0
    assert summary["mean_attempts"] == 2.0
    [run] = [r for r in list_runs(world.db, "calc") if r.model == "repair-twice"]
    assert run.status == "resolved" and run.attempts == 2 and run.steps_to_green == 2
    trace = get_run_trace(world.db, run.id)
    first, second = trace.attempts
    assert first.validation["kind"] == "tests_failed" and not first.resolved
    assert first.validation["fail_to_pass"] == {"tests/test_calc.py::test_add": "failed"}
    assert second.resolved and second.validation["kind"] == "resolved"
    assert second.validation["pass_to_pass"] == {"tests/test_calc.py::test_zero": "passed"}
    # Pollution is stripped: what is stored (and was applied) is the block alone.
    assert "Sure!" not in second.edits and "__main__" not in second.edits and "```" not in second.edits
    assert "return a + b" in second.edits
    # The repair prompt shows the model its plan, its edits and the failing test.
    repair = provider.requests[2].messages
    assert repair[-2]["role"] == "assistant" and '"calc/__init__.py"' in repair[-2]["content"]
    assert "return a * b" in repair[-1]["content"] and "test_add" in repair[-1]["content"]
    # Every call, retrieval and plan of the run is kept, by attempt.
    calls = list_calls(world.db, run_id=run.id)
    assert [(c.stage, c.attempt) for c in calls] == [("plan", 1), ("execute", 1), ("plan", 2), ("execute", 2)]
    assert calls[0].json_schema is not None
    assert trace.retrievals and trace.retrievals[0].files[0]["path"] == "calc/__init__.py"
    assert [p["attempt"] for p in trace.plans] == [1, 2] and all(p["score"] is not None for p in trace.plans)
    shown = trace_text(trace)
    assert "status resolved" in shown and "=== attempt 2 ===" in shown and "[retrieve]" in shown
    assert "return a * b" in shown and "tests/test_calc.py::test_add" in shown and "[llm] execute" in shown


@network
def test_an_edit_that_does_not_apply_is_a_recorded_apply_error(world: World) -> None:
    client, _ = _client(world.db, [PLAN, MISSING_EDIT], "no-apply")
    summary = _run(world, client, max_attempts=1)
    assert summary["failure_kinds"] == {"apply_error": 1}
    [run] = [r for r in list_runs(world.db, "calc") if r.model == "no-apply"]
    assert run.status == "failed" and run.failure_kind == "apply_error" and run.attempts == 1
    [attempt] = get_run_trace(world.db, run.id).attempts
    assert attempt.apply_status == "apply_error" and "SEARCH not found" in (attempt.apply_error or "")


@network
def test_garbage_answers_are_recorded_bad_output(world: World) -> None:
    client, _ = _client(world.db, ["I am not sure what you mean.", PLAN, "lorem ipsum dolor"], "garbage")
    _run(world, client, max_attempts=2)
    [run] = [r for r in list_runs(world.db, "calc") if r.model == "garbage"]
    assert run.status == "failed" and run.failure_kind == "bad_output" and run.attempts == 2
    first, second = get_run_trace(world.db, run.id).attempts
    assert first.validation["stage"] == "plan" and first.apply_status == "not_run"
    assert second.validation["stage"] == "execute" and second.apply_status == "no_edits"
    assert [c.status for c in list_calls(world.db, run_id=run.id)] == ["bad_output", "ok", "ok"]


@network
def test_a_server_that_times_out_after_every_retry_is_an_infra_error_a_rerun_retries(world: World) -> None:
    client, _ = _client(world.db, [ProviderError("timeout", "no answer in 300 s")] * 2, "hangs", max_retries=1)
    summary = _run(world, client, max_attempts=3)
    # Not a model failure: no failure kind, no resolved rate of 0, counted apart.
    assert summary["failure_kinds"] == {} and summary["resolved_rate"] is None
    assert summary["by_status"] == {"infra_error": 1} and summary["infra_errors"] == 1
    assert "retry" in summary["note"]
    [run] = [r for r in list_runs(world.db, "calc") if r.model == "hangs"]
    assert run.status == "infra_error" and run.failure_kind == "timeout" and run.attempts == 1
    [attempt] = get_run_trace(world.db, run.id).attempts
    assert attempt.validation["kind"] == "infra_error" and attempt.validation["status"] == "timeout"
    assert [c.status for c in list_calls(world.db, run_id=run.id)] == ["timeout", "timeout"]
    # The server is back: the same command retries the run (by default, no --force needed).
    back, _ = _client(world.db, [PLAN, RIGHT_EDIT_POLLUTED], "hangs")
    again = _run(world, back, max_attempts=3)
    assert (again["ran"], again["skipped"], again["by_status"]) == (1, 0, {"resolved": 1})
    assert again["infra_errors"] == 0 and [c.status for c in list_calls(world.db, run_id=run.id)] == ["ok", "ok"]


@network
def test_a_broken_environment_is_an_infra_error_not_the_models(world: World) -> None:
    # The task's era has lost its lock since validation: no environment can be had for it.
    world.db.conn.execute("UPDATE eras SET status = 'unresolvable'")
    try:
        client, _ = _client(world.db, [PLAN, RIGHT_EDIT_POLLUTED], "no-env")
        summary = _run(world, client, max_attempts=2)
    finally:
        world.db.conn.execute("UPDATE eras SET status = 'locked'")
    [run] = [r for r in list_runs(world.db, "calc") if r.model == "no-env"]
    assert run.status == "infra_error" and run.failure_kind == "env_error", run.summary
    assert summary["resolved_rate"] is None and summary["infra_errors"] == 1


@network
def test_infra_error_runs_never_give_a_rejected_dpo_answer(world: World) -> None:
    from harness.triples import run_dpo, run_records, run_sft

    # Attempt 1 fails its tests (a model failure), attempt 2 meets a dead server: the run is
    # infra_error, and nothing it said may become training data.
    down, _ = _client(world.db, [PLAN, WRONG_EDIT, ProviderError("server_error", "HTTP 502")], "dpo-down")
    _run(world, down, max_attempts=2)
    [infra] = [r for r in list_runs(world.db, "calc") if r.model == "dpo-down"]
    assert infra.status == "infra_error" and infra.failure_kind == "server_error"
    good, _ = _client(world.db, [PLAN, RIGHT_EDIT_POLLUTED], "dpo-up")
    _run(world, good, max_attempts=1)
    records = run_records(world.db, "calc")
    assert infra.id not in {r.run_id for r in records}
    triples = run_sft(records) + run_dpo(records)
    assert triples and not any(infra.id in t.source_runs for t in triples)
    # The control: the same answers from a run the model really failed do make a pair.
    failed, _ = _client(world.db, [PLAN, WRONG_EDIT], "dpo-failed")
    _run(world, failed, max_attempts=1)
    [bad] = [r for r in list_runs(world.db, "calc") if r.model == "dpo-failed"]
    pairs = run_dpo(run_records(world.db, "calc"))
    assert any(bad.id in t.source_runs and t.stage == "execute" for t in pairs)
    assert not any(infra.id in t.source_runs for t in pairs)


@network
def test_force_runs_finished_runs_again(world: World) -> None:
    client, _ = _client(world.db, [PLAN, RIGHT_EDIT_POLLUTED] * 2, "forced")
    assert _run(world, client, max_attempts=1)["ran"] == 1
    assert _run(world, client, max_attempts=1)["skipped"] == 1
    again = _run(world, client, max_attempts=1, force=True)
    assert (again["ran"], again["skipped"], again["by_status"]) == (1, 0, {"resolved": 1})
    [run] = [r for r in list_runs(world.db, "calc") if r.model == "forced"]
    assert len(list_calls(world.db, run_id=run.id)) == 2  # the first try's calls were replaced


@network
def test_a_server_that_dies_mid_run_stops_the_command_and_loses_nothing(world: World) -> None:
    from appliance.errors import InfraError

    server = ChatServer(lambda body, n: PLAN, model="dying", stop_after=1)  # then nothing listens
    cfg = LLMConfig(provider="openai_compat", endpoint=server.url, model="dying", max_retries=1,
                    retry_backoff_s=0, timeout_s=10)
    client = LLMClient.from_config(cfg, log=world.db)
    with pytest.raises(InfraError, match="stopped answering during run"):
        _run(world, client, max_attempts=2, temperatures=[0.2, 0.8])
    runs = [r for r in list_runs(world.db, "calc") if r.model == "dying"]
    assert [(r.status, r.failure_kind) for r in runs] == [("infra_error", "connection_error")]
    calls = list_calls(world.db, run_id=runs[0].id)
    assert [c.status for c in calls] == ["ok", "connection_error", "connection_error"]


@network
def test_temperatures_and_samples_make_one_run_each_and_a_rerun_skips_them(world: World) -> None:
    client, provider = _client(world.db, [PLAN, RIGHT_EDIT_POLLUTED] * 4, "grid")
    first = _run(world, client, temperatures=[0.2, 0.8], samples=2, max_attempts=1)
    assert first["ran"] == 4 and first["by_status"] == {"resolved": 4}
    runs = [r for r in list_runs(world.db, "calc") if r.model == "grid"]
    assert sorted((r.temperature, r.sample) for r in runs) == [(0.2, 0), (0.2, 1), (0.8, 0), (0.8, 1)]
    rows = world.db.one("SELECT (SELECT COUNT(*) FROM attempts), (SELECT COUNT(*) FROM llm_calls),"
                        " (SELECT COUNT(*) FROM plans), (SELECT COUNT(*) FROM retrievals)")
    again, _ = _client(world.db, [], "grid")
    second = _run(world, again, temperatures=[0.2, 0.8], samples=2, max_attempts=1)
    assert second["ran"] == 0 and second["skipped"] == 4 and second["by_status"] == {"resolved": 4}
    assert tuple(world.db.one("SELECT (SELECT COUNT(*) FROM attempts), (SELECT COUNT(*) FROM llm_calls),"
                              " (SELECT COUNT(*) FROM plans), (SELECT COUNT(*) FROM retrievals)")) == tuple(rows)
    assert provider.remaining == 0


@network
def test_parallel_workers_run_in_their_own_slots_and_log_their_own_calls(world: World) -> None:
    def answer(request, _i: int) -> str:  # by stage, so every worker's copy answers alike
        return PLAN if request.json_schema else RIGHT_EDIT_POLLUTED

    client, _ = _client(world.db, answer, "parallel")
    summary = _run(world, client, max_attempts=1, temperatures=(0.2, 0.8), samples=2, workers=2)
    assert (summary["ran"], summary["skipped"], summary["by_status"]) == (4, 0, {"resolved": 4})
    runs = [r for r in list_runs(world.db, "calc") if r.model == "parallel"]
    assert len(runs) == 4 and {r.status for r in runs} == {"resolved"}
    assert sorted(r.summary["slot"] for r in runs) == [0, 0, 1, 1]  # unit i in worker i mod 2
    for r in runs:  # each worker logged through its own connection, under the right run
        assert [(c.stage, c.run_id) for c in list_calls(world.db, run_id=r.id)] == [("plan", r.id), ("execute", r.id)]
    assert len({(r.temperature, r.sample) for r in runs}) == 4
    again = _run(world, client, max_attempts=1, temperatures=(0.2, 0.8), samples=2, workers=2)
    assert (again["ran"], again["skipped"]) == (0, 4)


def test_the_in_process_llama_cpp_provider_refuses_parallel_workers(world: World) -> None:
    client, provider = _client(world.db, [PLAN], "one-at-a-time")
    provider.name = "llama_cpp"  # the check reads only the provider's name
    with pytest.raises(BadInput, match="needs a model server"):
        _run(world, client, workers=2)
    with pytest.raises(BadInput, match="at least 1"):
        _run(world, client, workers=0)
    assert not [r for r in list_runs(world.db, "calc") if r.model == "one-at-a-time"]


@network
def test_an_interrupted_run_is_restarted_clean(world: World) -> None:
    key = RunKey(repo="calc", sha=world.sha, provider="scripted", model="interrupted", temperature=0.2)
    stale = start_run(world.db, key)
    save_attempt(world.db, RunAttempt(run_id=stale.id, attempt=1, apply_status="apply_error",
                                      apply_error="left from a crash"))
    save_attempt(world.db, RunAttempt(run_id=stale.id, attempt=2, apply_status="apply_error"))
    client, _ = _client(world.db, [PLAN, RIGHT_EDIT_POLLUTED], "interrupted")
    _run(world, client, max_attempts=3)
    trace = get_run_trace(world.db, stale.id)
    assert trace.run.status == "resolved" and trace.run.attempts == 1
    assert [a.attempt for a in trace.attempts] == [1] and trace.attempts[0].apply_error is None


# ----------------------------------------------------------------------------- a real model


@network
def test_a_real_llama_cpp_run_on_the_tiny_model_ends_as_a_recorded_outcome(world: World) -> None:
    pytest.importorskip("llama_cpp", reason="the llama extra (llama-cpp-python) is not installed")
    from tinymodel import tiny_model

    model = tiny_model()
    cfg = LLMConfig(provider="llama_cpp", model=str(model.gguf), n_ctx=2048, retry_backoff_s=0, max_retries=0)
    client = LLMClient.from_config(cfg, log=world.db)
    try:
        summary = _run(world, client, max_attempts=1)
    finally:
        client.close()
    [run] = [r for r in list_runs(world.db, "calc") if r.provider == "llama_cpp"]
    assert run.finished or run.status == "error", run
    assert run.status in ("resolved", "failed") and summary["ran"] == 1, run.summary
    calls = list_calls(world.db, run_id=run.id)
    assert calls and calls[0].stage == "plan" and calls[0].model
    trace = get_run_trace(world.db, run.id)
    assert trace.attempts  # the outcome is an attempt row, whatever it was
    if calls[0].status == "ok":
        # A schema-valid answer is either a stored plan naming only files of the repo, or (a
        # random model can write duplicate step ids or a dependency cycle, which no JSON
        # schema rules out) an attempt recorded as a bad plan with the reason.
        if trace.plans:  # every file is the repo's, or a new module an add/test step creates
            plan = Plan.from_dict(trace.plans[0]["plan"])
            assert files_outside_schema(plan, ["calc/__init__.py"]) == [], plan
        else:
            first = trace.attempts[0].validation
            assert first["kind"] == "bad_output" and first["stage"] == "plan" and first["error"], first


# ----------------------------------------------------------------------------- no model (no env)


@pytest.fixture
def planned(home: Home, db: Database, tmp_path: Path) -> tuple[Home, Database, str]:
    src, base, sha = _build_repo(tmp_path)
    shutil.copytree(src.path, home.repo_dir("calc"))
    register_repo(db, RepoRecord("calc", str(src.path), sha, "main", _python(), "python -m pytest"),
                  [], [_commit(base, sha, None)])
    gold = src.git("diff", base, sha, "--", "calc/__init__.py")
    save_task(db, TaskRecord(repo="calc", sha=sha, parent=base, status="valid", instruction=INSTRUCTION,
                             gold_patch=gold, test_files=["tests/test_calc.py"],
                             fail_to_pass=["tests/test_calc.py::test_add"]))
    return home, db, sha


def test_with_no_model_the_retrieval_planner_stores_scored_plans(planned) -> None:
    home, db, _sha = planned
    ticks: list[tuple[int, int]] = []
    summary = run_repo(home, db, "calc", client=None, progress=lambda d, t, r: ticks.append((d, t)))
    assert summary["mode"] == "retrieval" and summary["by_status"] == {"planned": 1}
    assert "no model" in summary["note"] and summary["mean_plan_score"] == 1.0
    assert ticks == [(0, 1), (1, 1)]
    [run] = list_runs(db, "calc")
    assert run.status == "planned" and run.provider == "retrieval"
    [plan] = list_plans(db, repo="calc")
    assert plan.source == "retrieval" and plan.run_id == run.id and plan.score == 1.0
    assert plan.plan["steps"][0]["file"] == "calc/__init__.py" and "add" in plan.plan["steps"][0]["symbols"]
    trace = get_run_trace(db, run.id)
    assert trace.retrievals[0].query and trace.attempts[0].apply_status == "not_run"
    assert list_calls(db) == []  # no model, no call
    assert (home.var / "index" / "calc.db").is_file()
    again = run_repo(home, db, "calc", client=None)
    assert again["skipped"] == 1 and again["ran"] == 0 and len(list_plans(db, repo="calc")) == 1


def test_bad_arguments_are_bad_input_before_any_run(planned) -> None:
    from appliance.errors import BadInput

    home, db, _ = planned
    for kw in ({"samples": 0}, {"max_attempts": 0}, {"temperatures": []}, {"temperatures": [-1]}, {"limit": 0}):
        with pytest.raises(BadInput):
            run_repo(home, db, "calc", client=None, **kw)
    assert list_runs(db, "calc") == []


@network
def test_runs_become_sft_and_dpo_triples_with_the_prompts_the_pipeline_sent(world: World) -> None:
    from harness.triples import build_from_runs

    good, _ = _client(world.db, [PLAN, RIGHT_EDIT_POLLUTED], "triples-good")
    bad, _ = _client(world.db, [PLAN, WRONG_EDIT], "triples-bad")
    _run(world, good, max_attempts=1)
    _run(world, bad, max_attempts=1)
    report = build_from_runs(world.db, "calc")
    assert report["sft"] >= 2 and report["dpo"] >= 1 and report["added"] >= 3
    rows = world.db.query("SELECT kind, stage, prompt, completion, chosen, rejected FROM triples WHERE origin = 'run'")
    execute_dpo = [r for r in rows if r["kind"] == "dpo" and r["stage"] == "execute"]
    assert any("a + b" in r["chosen"] and "a * b" in r["rejected"] for r in execute_dpo)
    [good_run] = [r for r in list_runs(world.db, "calc") if r.model == "triples-good"]
    sent = [c.messages for c in list_calls(world.db, run_id=good_run.id) if c.stage == "execute"]
    assert any(json.loads(r["prompt"]) == sent[0] for r in rows if r["kind"] == "sft" and r["stage"] == "execute")
    assert build_from_runs(world.db, "calc")["added"] == 0  # rerun: nothing new


def test_an_unreachable_endpoint_fails_the_command_at_once_naming_it(planned, capsys) -> None:
    import socket

    from appliance.cli import main

    _, db, _ = planned
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    assert main(["harness", "run", "calc", "--endpoint", url, "--model", "coder"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and url in err and "not available" in err
    assert list_runs(db, "calc") == [] and list_calls(db) == []  # nothing recorded as a failure


def test_a_piped_run_prints_progress_lines(planned, capsys) -> None:
    from appliance.cli import main

    assert main(["harness", "run", "calc"]) == 0
    err = capsys.readouterr().err
    assert "run: 0/1 (0%)" in err and "run: 1/1 (100%)" in err


# ----------------------------------------------------------------------------- routed adapters


@network
def test_routed_adapters_give_each_stage_its_slots_version_and_name_the_run(world: World, tmp_path: Path) -> None:
    from curated import staged_files, version_meta

    from appliance.adapters import registry
    from appliance.adapters.routes import routes_for

    for slot in ("plan", "execute-code"):
        registry.register(world.db, world.home, slot, staged_files(tmp_path / slot, slot), version_meta())
        registry.promote(world.db, world.home, slot)
    client, _ = _client(world.db, [PLAN, RIGHT_EDIT_POLLUTED], "routed")
    client.routes = routes_for(world.db, world.home, "active")
    summary = _run(world, client, max_attempts=1)
    assert summary["adapter"] == "active:execute-code@v1,plan@v1" and summary["ran"] == 1
    [run] = [r for r in list_runs(world.db, "calc") if r.model == "routed"]
    assert run.adapter == summary["adapter"] and run.status == "resolved"
    assert [(c.stage, c.adapter) for c in list_calls(world.db, run_id=run.id)] == [
        ("plan", "plan@v1"), ("execute", "execute-code@v1")]
    # After a promote the same task runs again under the new versions, not skipped as done.
    registry.register(world.db, world.home, "plan", staged_files(tmp_path / "plan2", "plan2"), version_meta())
    registry.promote(world.db, world.home, "plan")
    client, _ = _client(world.db, [PLAN, RIGHT_EDIT_POLLUTED], "routed")
    client.routes = routes_for(world.db, world.home, "active")
    again = _run(world, client, max_attempts=1)
    assert again["ran"] == 1 and again["adapter"] == "active:execute-code@v1,plan@v2"
    for slot in ("plan", "execute-code"):  # the first versions were the first active: back to the base
        while registry.current(world.db, slot) is not None:
            registry.rollback(world.db, world.home, slot, reason="test done")


@network
def test_harness_run_with_active_adapters_runs_their_base_in_process(world: World, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("llama_cpp", reason="the llama extra (llama-cpp-python) is not installed")
    from curated import staged_tiny_lora, version_meta
    from tinymodel import tiny_model

    from appliance.adapters import registry
    from appliance.cli import main

    model = tiny_model()
    if model.lora_gguf is None:
        pytest.skip("peft is not installed: the tiny model has no LoRA (pip install 'cra[train]')")
    monkeypatch.setenv("CRA_HOME", str(world.home.root))
    (world.home.root / "cra.toml").write_text("[llm]\nn_ctx = 2048\nmax_retries = 0\nretry_backoff_s = 0\n")
    try:
        version = registry.register(world.db, world.home, "plan", staged_tiny_lora(tmp_path / "tiny", model),
                                    version_meta(model_base=str(model.hf_dir), base_gguf=str(model.gguf)))
        registry.promote(world.db, world.home, "plan", version.version)
        code = main(["harness", "run", "calc", "--adapters", "active", "--max-attempts", "1", "--json"])
    finally:
        (world.home.root / "cra.toml").unlink()
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["provider"] == "llama_cpp" and summary["model"] == str(model.gguf.resolve())
    assert summary["adapter"].startswith("active:") and f"plan@v{version.version}" in summary["adapter"]
    [run] = [r for r in list_runs(world.db, "calc") if r.adapter == summary["adapter"]]
    calls = list_calls(world.db, run_id=run.id)
    assert calls[0].stage == "plan" and calls[0].adapter == f"plan@v{version.version}"
