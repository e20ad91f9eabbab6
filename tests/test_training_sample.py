"""The raw database of real harness runs on the shipped sample, read back as a training plan
and curated datasets.

The sample (``corpus/samples/inkwell.bundle``) is packaged, validated (real sandboxed
pytest) and run by the real pipeline twice per task: once by a scripted model that answers
each task with its gold plan and gold edits (the commit is the teacher), so its runs
resolve through real validation, and once by a model whose edits never apply. Then the
logs must say that the second model's execute stage is the weak one, and curate-data must
build the execute-code dataset from the gold and resolved-run triples.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.config import Home
from appliance.db.core import Database
from appliance.db.triples import list_triples
from appliance.demo import SAMPLE_BUNDLE
from appliance.llm import LLMClient, LLMConfig
from appliance.llm.providers.scripted import ScriptedProvider
from appliance.training.logs import LogAnalysisAPI
from harness.candidate import EvalOptions
from harness.pipeline import PipelineOptions, run_repo
from harness.sandbox import Limits

pytestmark = [pytest.mark.network, pytest.mark.slow]

BAD_EDIT = "src/inkwell/__init__.py\n<<<<<<< SEARCH\nthis line is not in the file\n=======\nx = 1\n>>>>>>> REPLACE\n"


def _gold_answers(db: Database) -> dict[str, dict[str, str]]:
    """{instruction: {"plan": gold plan JSON, "execute": gold edits}} from the gold triples."""
    out: dict[str, dict[str, str]] = {}
    tasks = {r["sha"]: r["instruction"] for r in db.query("SELECT sha, instruction FROM tasks")}
    for t in list_triples(db, kind="sft"):
        if t.stage in ("plan", "execute") and t.sha in tasks and t.completion:
            out.setdefault(tasks[t.sha].strip(), {})[t.stage] = t.completion[0]["content"]
    return {k: v for k, v in out.items() if {"plan", "execute"} <= set(v)}


def _client(db: Database, answers: dict[str, dict[str, str]], model: str, *, good: bool) -> LLMClient:
    def answer(request, _i: int) -> str:
        text = "\n".join(str(m.get("content", "")) for m in request.messages)
        for instruction, gold in answers.items():
            if instruction in text:
                if request.json_schema:
                    return gold["plan"]
                return gold["execute"] if good else BAD_EDIT
        return "{}"

    return LLMClient(ScriptedProvider(answer, model=model), config=LLMConfig(retry_backoff_s=0, max_retries=0), log=db)


def test_runs_on_the_sample_become_a_plan_and_datasets(home: Home, wheel_cache: Path, capsys) -> None:
    assert main(["corpus", "add", str(SAMPLE_BUNDLE), "--name", "inkwell", "--no-index",
                 "--find-links", str(wheel_cache)]) == 0
    assert main(["harness", "validate", "inkwell", "--limit", "5", "--workers", "2", "--json"]) == 0
    assert main(["triples", "build", "inkwell", "--json"]) == 0
    capsys.readouterr()
    with Database(home.db_path) as db:
        answers = _gold_answers(db)
        assert len(answers) >= 2
        options = PipelineOptions(evaluation=EvalOptions(limits=Limits(timeout_s=60)))
        good = run_repo(home, db, "inkwell", client=_client(db, answers, "teacher-397b", good=True),
                        max_attempts=1, options=options)
        bad = run_repo(home, db, "inkwell", client=_client(db, answers, "coder-3b", good=False),
                       max_attempts=2, options=options)
        assert good["by_status"].get("resolved", 0) >= 2, good
        assert bad["failure_kinds"] == {"apply_error": bad["runs"]}, bad
        api = LogAnalysisAPI(db)
        weak = api.stages(api.slice(model="coder-3b"))
        assert weak["execute"].measures["apply_error_rate"].value == 1.0
        assert weak["validate"].measures["repeat_error_rate"].value == 1.0  # the same apply error again
        strong = api.validate(api.slice(model="teacher-397b")).measures["resolved_rate"]
        assert strong.n == good["runs"] and strong.count == good["by_status"]["resolved"]
        assert api.scope().counts["tasks"] >= 2  # every task's retrieval, against its commit's files
        assert main(["triples", "build", "inkwell", "--json"]) == 0  # + run-derived SFT and DPO
        capsys.readouterr()
    (home.root / "cra.toml").write_text('[training]\nteacher_models = ["teacher-*"]\n')
    assert main(["train-plan", "--model", "coder-3b", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["ranking"][0] == "execute" and plan["slots"][0]["slot"] == "execute-code"
    failures = plan["stages"][0]["failures"]
    assert failures[0]["signature"].startswith("apply_error: SEARCH not found")
    execute = plan["slots"][0]
    # The teacher's resolved answers are the gold ones, sent with the very prompt the gold
    # triples use: one row each (content hash), kept as gold.
    assert execute["sft"]["by_source"]["gold"] >= 2 and execute["sft"]["by_source"]["self"] == 0
    assert execute["dpo"]["by_source"]["teacher"] >= 1  # resolved teacher edits over the failed ones
    assert main(["curate-data", "--plan", str(plan["id"]), "--slot", "execute-code", "--cutoff", "2099-01-01",
                 "--json"]) == 2  # a future cutoff holds nothing out
    assert main(["curate-data", "--plan", str(plan["id"]), "--slot", "execute-code", "--cutoff", "2026-01-01",
                 "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert [(d["slot"], d["kind"]) for d in built] == [("execute-code", "sft"), ("execute-code", "dpo")]
    sft = built[0]
    assert sft["source_mix"]["gold"] >= 2 and built[1]["source_mix"]["teacher"] >= 1
    assert any("only 1 domain" in n for n in sft["notes"])
    rows = [json.loads(line) for line in (home.root / sft["path"] / "train.jsonl").read_text().splitlines()]
    assert all(r["repo"] == "inkwell" and r["sha"] and r["author_ts"] for r in rows)
