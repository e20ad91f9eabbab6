"""The Execute stage on a real repo: the prompt, pollution stripping, exact and tolerant
application, and every kind of unusable answer as a recorded status."""

from __future__ import annotations

from pathlib import Path

import pytest
from repo_builder import RepoBuilder

from appliance.db.core import Database
from appliance.db.runs import list_calls
from appliance.llm import LLMClient, LLMConfig, LLMError, ProviderError
from appliance.llm.providers.scripted import ScriptedProvider
from harness.edits import apply_edits
from harness.executor import execute, judge_answer, plan_context
from harness.plans import Plan, PlanStep
from harness.triples import execute_messages

CALC = '"""A calculator."""\n\n\ndef add(a, b):\n    """Add two numbers."""\n    return a - b\n'
TASK = "Fix add so it adds"
PLAN = Plan(steps=[PlanStep(id=1, file="calc/__init__.py", symbols=["add"], description="return the sum")])
BLOCK = "calc/__init__.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n"


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    r = RepoBuilder(tmp_path / "calc")
    sha = r.commit("Start calc", {"calc/__init__.py": CALC, "README": "calc\n"})
    return r.path, sha


def _client(db: Database, answers: list) -> tuple[LLMClient, ScriptedProvider]:
    provider = ScriptedProvider(answers)
    return LLMClient(provider, config=LLMConfig(retry_backoff_s=0, max_retries=0), log=db), provider


def test_prose_fences_and_runnable_code_around_blocks_are_stripped(repo) -> None:
    path, sha = repo
    polluted = (
        "Sure, here is the change.\n\n```python\n" + BLOCK + "```\n\n"
        "if __name__ == '__main__':\n    print(add(1, 2))\n\nLet me know!\n"
    )
    result = judge_answer(polluted, path, sha)
    assert result.status == "applied" and result.ok and result.error is None
    assert result.rendered == BLOCK and result.text == polluted
    assert apply_edits(path, result.edits).ok
    assert (path / "calc/__init__.py").read_text() == CALC.replace("a - b", "a + b")


def test_whitespace_drift_still_applies_tolerantly(repo) -> None:
    path, sha = repo
    drift = BLOCK.replace("    return a - b\n=", "  return a - b   \n=").replace("    return a + b", "  return a + b")
    result = judge_answer(drift, path, sha)
    assert result.status == "applied" and result.apply is not None and result.apply.fuzzy == [1]
    assert apply_edits(path, result.edits).ok
    assert "    return a + b\n" in (path / "calc/__init__.py").read_text()  # re-indented like the file


@pytest.mark.parametrize("answer, status, why", [
    (BLOCK.replace("return a - b\n=", "return b - a\n="), "apply_error", "SEARCH not found"),
    ("missing.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n", "apply_error", "does not exist"),
    ("I think add should add. Change the minus to a plus.", "no_edits", "no search/replace block"),
    ("calc/__init__.py\n<<<<<<< SEARCH\n    return a - b\n=======\n", "bad_output", "not closed"),
    ("", "no_edits", "no search/replace block"),
])
def test_unusable_answers_get_a_status_and_a_reason(repo, answer: str, status: str, why: str) -> None:
    path, sha = repo
    result = judge_answer(answer, path, sha)
    assert result.status == status and not result.ok and why in (result.error or "")
    assert (path / "calc/__init__.py").read_text() == CALC


def test_execute_uses_the_training_prompt_and_logs_the_call(repo, db: Database) -> None:
    path, sha = repo
    client, provider = _client(db, ["```\n" + BLOCK + "```"])
    result = execute(client, TASK, PLAN, path, sha, temperature=0.3, seed=11)
    assert result.status == "applied" and result.rendered == BLOCK
    assert provider.requests[0].messages == execute_messages(TASK, PLAN, [("calc/__init__.py", CALC)])
    assert result.messages == provider.requests[0].messages and provider.requests[0].json_schema is None
    [call] = list_calls(db)
    assert call.stage == "execute" and call.id == result.call_id and call.seed == 11


def test_a_failed_execute_call_raises_llm_error_for_the_pipeline(repo, db: Database) -> None:
    path, sha = repo
    client, _ = _client(db, [ProviderError("server_error", "HTTP 503")])
    with pytest.raises(LLMError) as info:
        execute(client, TASK, PLAN, path, sha)
    assert info.value.status == "server_error" and info.value.stage == "execute"
    assert [c.status for c in list_calls(db)] == ["server_error"]


def test_context_is_whole_files_or_excerpts_around_the_plan_symbols(tmp_path: Path) -> None:
    r = RepoBuilder(tmp_path / "big")
    body = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(200))
    sha = r.commit("Start", {"big.py": body})
    plan = Plan(steps=[PlanStep(id=1, file="big.py", symbols=["f150"]), PlanStep(id=2, file="new.py", action="add")])
    assert plan_context(r.path, sha, plan) == [("big.py", body)]  # fits: whole, new file absent
    excerpt = plan_context(r.path, sha, plan, spans={"big.py": [(601, 602)]}, max_chars=500, excerpt_lines=5)
    [(header, code)] = excerpt
    assert header.startswith("big.py (lines 596-607 of") and "def f150():" in code and "def f10()" not in code
