"""Training triples: gold examples of a real commit, run-derived SFT/DPO, the DB, the export."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from repo_builder import RepoBuilder

from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import register_repo
from appliance.db.tasks import TaskRecord, save_task
from appliance.db.triples import (
    TripleRecord,
    content_hash,
    list_plans,
    list_triples,
    save_plan,
    save_triples,
)
from appliance.errors import BadInput
from appliance.records import CommitRecord, FileChange, RepoRecord
from harness.edits import apply_edits, gold_edits, parse_edits, render_edits
from harness.git import git
from harness.index import SymbolIndex, index_path
from harness.planner import PLAN_SYSTEM, first_plan_prompt
from harness.plans import Plan, PlanStep
from harness.retrieve import retrieve
from harness.testrun import is_test_file, split_commit
from harness.triples import (
    EXECUTE_SYSTEM,
    PRECISION_SYSTEM,
    SCOPE_SYSTEM,
    AttemptRecord,
    PairConfig,
    RunRecord,
    build_gold,
    export,
    run_dpo,
    run_sft,
    score_stored_plans,
    stats,
)

CORE = '''class Parser:
    def parse(self, text):
        return text.split()


def unused():
    return None
'''
API = '''from pkg.core import Parser


def load(text):
    return Parser().parse(text)
'''
INSTRUCTION = "Accept a separator in parse and load\n\nCallers can now split on commas."


def commit_record(repo: RepoBuilder, sha: str, parent: str | None) -> CommitRecord:
    ts = int(git(repo.path, "log", "-1", "--format=%at", sha).strip())
    date = git(repo.path, "log", "-1", "--format=%aI", sha).strip()
    message = git(repo.path, "log", "-1", "--format=%B", sha).strip()
    return CommitRecord(sha=sha, parent=parent, author_date=date, author_ts=ts, title=message.split("\n")[0],
                        message=message, files=[FileChange("pkg/core.py", 1, 1, "source")])


@pytest.fixture
def lib(home: Home, db: Database) -> dict[str, str]:
    """A repo package 'lib' with one valid task: the separator commit."""
    repo = RepoBuilder(home.repo_dir("lib"))
    parent = repo.commit("Start the parser", {
        "pkg/__init__.py": "", "pkg/core.py": CORE, "pkg/api.py": API,
        "tests/test_core.py": "def test_parse():\n    assert True\n",
    })
    sha = repo.commit(INSTRUCTION, {
        "pkg/core.py": CORE.replace("def parse(self, text):\n        return text.split()",
                                    "def parse(self, text, sep=None):\n        return text.split(sep)"),
        "pkg/api.py": API.replace("def load(text):\n    return Parser().parse(text)",
                                  "def load(text, sep=None):\n    return Parser().parse(text, sep)"),
        "tests/test_core.py": "def test_parse():\n    assert True\n\n\ndef test_sep():\n    assert True\n",
        "CHANGES.md": "- separators\n",
    })
    register_repo(
        db,
        RepoRecord(name="lib", origin_url="/src/lib", head_sha=sha, default_branch="main", python_version="3.11",
                   test_cmd="pytest"),
        [],
        [commit_record(repo, parent, None), commit_record(repo, sha, parent)],
    )
    split = split_commit(repo.path, parent, sha)
    save_task(db, TaskRecord(repo="lib", sha=sha, parent=parent, status="valid", instruction=INSTRUCTION,
                             test_patch=split.test_patch, gold_patch=split.gold_patch,
                             test_files=["tests/test_core.py"], fail_to_pass=["tests/test_core.py::test_sep"]))
    ts = git(repo.path, "log", "-1", "--format=%at", sha).strip()
    return {"parent": parent, "sha": sha, "path": str(repo.path), "ts": ts}


def test_migration_3_creates_plans_and_triples(db: Database) -> None:
    tables = {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"plans", "triples"} <= tables
    names = {r["version"]: r["name"] for r in db.query("SELECT version, name FROM schema_migrations")}
    assert names[3].startswith("plans and triples")


def test_gold_triples_of_a_real_commit_field_by_field(db: Database, home: Home, lib: dict[str, str]) -> None:
    report = build_gold(db, home, "lib")
    assert report.to_dict() | {"skipped": {}} == {
        "repo": "lib", "tasks": 1, "triples": 4, "duplicates": 0, "plans": 1, "skipped": {}, "errors": []}
    rows = {t.stage: t for t in list_triples(db)}
    assert sorted(rows) == ["execute", "plan", "precision", "scope"]
    for t in rows.values():
        assert (t.kind, t.origin, t.repo, t.sha, t.author_ts, t.source_runs) == (
            "sft", "gold", "lib", lib["sha"], int(lib["ts"]), [])
        assert t.meta == {"parent": lib["parent"]}
        assert t.content_hash == content_hash("sft", t.stage, t.prompt, t.completion)
        assert [m["role"] for m in t.prompt] == ["system", "user"]
        assert t.completion is not None and [m["role"] for m in t.completion] == ["assistant"]

    scope = rows["scope"]
    assert scope.prompt[0]["content"] == SCOPE_SYSTEM
    assert scope.prompt[1]["content"] == (
        f"Task:\n{INSTRUCTION}\n\nRepository files:\npkg/__init__.py\npkg/api.py\npkg/core.py")
    assert json.loads(scope.completion[0]["content"]) == {"files": ["pkg/core.py", "pkg/api.py"]}

    precision = rows["precision"]
    assert precision.prompt[0]["content"] == PRECISION_SYSTEM
    assert precision.prompt[1]["content"] == (
        f"Task:\n{INSTRUCTION}\n\nFiles to change:\n"
        "pkg/core.py\n  Parser: class Parser\n  Parser.parse: def parse(self, text)\n  unused: def unused()\n\n"
        "pkg/api.py\n  load: def load(text)")
    assert json.loads(precision.completion[0]["content"]) == {
        "symbols": {"pkg/core.py": ["Parser.parse"], "pkg/api.py": ["load"]}}

    execute = rows["execute"]
    assert execute.prompt[0]["content"] == EXECUTE_SYSTEM
    user = execute.prompt[1]["content"]
    assert user.startswith(f"Task:\n{INSTRUCTION}\n\nPlan:\n")
    plan_text = user.split("Plan:\n", 1)[1].split("\n\nCode:\n", 1)[0]
    plan = Plan.from_json(plan_text)
    assert [(s.file, s.symbols, s.depends_on) for s in plan.steps] == [
        ("pkg/core.py", ["Parser.parse"], []), ("pkg/api.py", ["load"], [1])]
    assert f"pkg/core.py\n```python\n{CORE.rstrip()}\n```" in user
    assert f"pkg/api.py\n```python\n{API.rstrip()}\n```" in user
    gold = gold_edits(Path(lib["path"]), lib["parent"], lib["sha"], ["pkg/core.py", "pkg/api.py"])
    assert execute.completion[0]["content"] == render_edits(gold)
    # The completion is a working answer: applied to the parent it gives the commit.
    git(lib["path"], "checkout", "-q", lib["parent"])
    assert apply_edits(lib["path"], parse_edits(execute.completion[0]["content"])).ok
    assert git(lib["path"], "diff", lib["sha"], "--", "pkg").strip() == ""

    # The plan triple: the pipeline's own first plan prompt, answered with the gold plan in
    # the JSON the plan schema constrains a model to.
    plan_row = rows["plan"]
    assert plan_row.prompt[0]["content"] == PLAN_SYSTEM.format(kind="step")
    user = plan_row.prompt[1]["content"]
    assert user.startswith(f"Task:\n{INSTRUCTION}\n\nRelated files:\n")
    assert "pkg/core.py\n  Parser: class Parser\n  Parser.parse: def parse(self, text)" in user
    assert "tests/" not in user  # plans change source files; retrieval leaves tests out
    with SymbolIndex(index_path(home, "lib")) as index:
        retrieval = retrieve(index, lib["parent"], INSTRUCTION, exclude=is_test_file)
        messages, files = first_plan_prompt(index, lib["parent"], INSTRUCTION, retrieval)
    assert plan_row.prompt == messages and "pkg/core.py" in user
    answer = json.loads(plan_row.completion[0]["content"])
    assert answer == {"kind": "step", "steps": [
        {"id": 1, "file": "pkg/core.py", "symbols": ["Parser.parse"], "action": "modify",
         "description": "modify Parser.parse", "depends_on": []},
        {"id": 2, "file": "pkg/api.py", "symbols": ["load"], "action": "modify",
         "description": "modify load", "depends_on": [1]}]}
    assert {st["file"] for st in answer["steps"]} <= set(files)
    assert Plan.from_json(plan_row.completion[0]["content"]).files() == ["pkg/core.py", "pkg/api.py"]

    (gold_row,) = list_plans(db, repo="lib")
    assert (gold_row.source, gold_row.kind, gold_row.score) == ("gold", "step", 1.0)


def test_a_gold_plan_that_adds_a_module_is_a_plan_triple_unless_its_path_is_refused(
    db: Database, home: Home, lib: dict[str, str],
) -> None:
    repo = RepoBuilder(home.repo_dir("lib"))
    tasks = {}
    for message, path in [("Add a separator module for the parser", "pkg/sep.py"),
                          ("Add a release helper script", ".github/release.py")]:
        parent = git(repo.path, "rev-parse", "HEAD").strip()
        sha = repo.commit(message, {path: "DEFAULT = None\n", "tests/test_core.py": f"# {path}\n"})
        split = split_commit(repo.path, parent, sha)
        save_task(db, TaskRecord(repo="lib", sha=sha, parent=parent, status="valid", instruction=message,
                                 test_patch=split.test_patch, gold_patch=split.gold_patch,
                                 test_files=["tests/test_core.py"], fail_to_pass=["tests/test_core.py::t"]))
        tasks[path] = sha
    report = build_gold(db, home, "lib")
    # A new module is planned by an add step the schema's pattern accepts; a hidden folder
    # is refused by that pattern, so no constrained model could write that plan.
    assert report.skipped == {"plan: the gold plan names files the plan schema does not allow: <file>": 1}
    (plan_row,) = [t for t in list_triples(db, stage="plan") if t.sha == tasks["pkg/sep.py"]]
    (step,) = json.loads(plan_row.completion[0]["content"])["steps"]
    assert (step["file"], step["action"]) == ("pkg/sep.py", "add")
    assert not [t for t in list_triples(db, stage="plan") if t.sha == tasks[".github/release.py"]]


def test_building_again_adds_nothing(db: Database, home: Home, lib: dict[str, str]) -> None:
    build_gold(db, home, "lib")
    again = build_gold(db, home, "lib")
    assert (again.triples, again.duplicates) == (0, 4)
    assert len(list_plans(db, repo="lib")) == 1
    assert stats(db)["total"] == 4


def test_tasks_that_are_not_valid_are_left_out_unless_asked(db: Database, home: Home, lib: dict[str, str]) -> None:
    db.conn.execute("UPDATE tasks SET status = 'no_fail_to_pass'")
    assert build_gold(db, home, "lib").tasks == 0
    assert build_gold(db, home, "lib", statuses=("valid", "no_fail_to_pass")).triples == 4


def test_content_hash_is_unique_in_the_table(db: Database, lib: dict[str, str]) -> None:
    t = TripleRecord(kind="sft", stage="scope", repo="lib", sha=lib["sha"], author_ts=1,
                     prompt=[{"role": "user", "content": "x"}], completion=[{"role": "assistant", "content": "y"}])
    assert save_triples(db, [t, t]) == 1
    with pytest.raises(sqlite3.IntegrityError):
        db.conn.execute(
            "INSERT INTO triples (kind, stage, origin, repo_id, sha, author_ts, prompt, completion, source_runs,"
            " meta, content_hash, created_at) VALUES ('sft', 'scope', 'gold', 1, 's', 1, '[]', '[]', '[]', '{}', ?, 'now')",
            (t.content_hash,),
        )
    with pytest.raises(BadInput, match="completion"):
        TripleRecord(kind="sft", stage="scope", repo="lib", sha="s", author_ts=1, prompt=[])
    with pytest.raises(BadInput, match="stage"):
        TripleRecord(kind="dpo", stage="review", repo="lib", sha="s", author_ts=1, prompt=[], chosen=[], rejected=[])


# ----------------------------------------------------------------------------- run-derived

PROMPT = [{"role": "user", "content": "fix it"}]
PLAN_PROMPT = [{"role": "user", "content": "plan it"}]


def runs(sha: str) -> list[RunRecord]:
    return [
        RunRecord(1, "lib", sha, 100, [
            AttemptRecord("plan", PLAN_PROMPT, '{"plan": "good"}', resolved=True, alignment=0.9),
            AttemptRecord("execute", PROMPT, "edit A", resolved=True),
        ]),
        RunRecord(2, "lib", sha, 100, [
            AttemptRecord("plan", PLAN_PROMPT, '{"plan": "meh"}', resolved=False, alignment=0.8),
            AttemptRecord("execute", PROMPT, "edit B", resolved=False),
        ]),
        RunRecord(3, "lib", sha, 100, [
            AttemptRecord("plan", PLAN_PROMPT, '{"plan": "bad"}', resolved=False, alignment=0.3),
            AttemptRecord("execute", PROMPT, "edit A", resolved=True),  # same answer as run 1
        ]),
    ]


def test_run_sft_keeps_resolved_calls_and_merges_duplicate_runs() -> None:
    sft = run_sft(runs("s"))
    got = {(t.stage, t.completion[0]["content"]): t.source_runs for t in sft}  # type: ignore[index]
    assert got == {("plan", '{"plan": "good"}'): [1], ("execute", "edit A"): [1, 3]}
    assert all(t.kind == "sft" and t.origin == "run" for t in sft)


def test_run_dpo_pairs_resolved_over_failed_and_plans_by_alignment_margin() -> None:
    pairs = run_dpo(runs("s"))
    got = sorted((t.stage, t.chosen[0]["content"], t.rejected[0]["content"]) for t in pairs)  # type: ignore[index]
    assert got == [
        ("execute", "edit A", "edit B"),
        # 0.9 - 0.3 and 0.8 - 0.3 clear the default 0.2 margin; 0.9 - 0.8 does not.
        ("plan", '{"plan": "good"}', '{"plan": "bad"}'),
        ("plan", '{"plan": "meh"}', '{"plan": "bad"}'),
    ]
    execute = next(t for t in pairs if t.stage == "execute")
    assert execute.source_runs == [1, 2, 3]  # runs 1 and 3 gave the same chosen answer
    plan = next(t for t in pairs if t.stage == "plan")
    assert plan.meta == {"margin": 0.6, "chosen_alignment": 0.9, "rejected_alignment": 0.3}
    # The margin is configurable, and so is the cap per prompt.
    loose = run_dpo(runs("s"), PairConfig(plan_margin=0.05))
    assert len([t for t in loose if t.stage == "plan"]) == 3
    capped = run_dpo(runs("s"), PairConfig(plan_margin=0.05, max_pairs_per_prompt=1))
    (only,) = [t for t in capped if t.stage == "plan"]
    assert only.meta["margin"] == 0.6  # the widest margin is kept
    with pytest.raises(BadInput):
        PairConfig(plan_margin=0.0)


def test_run_dpo_is_deterministic_and_never_pairs_an_answer_with_itself() -> None:
    records = runs("s")
    assert [t.content_hash for t in run_dpo(records)] == [t.content_hash for t in run_dpo(list(reversed(records)))]
    same = [RunRecord(i, "lib", "s", 1, [AttemptRecord("execute", PROMPT, "x", resolved=i == 1)]) for i in (1, 2)]
    assert run_dpo(same) == []


# ----------------------------------------------------------------------------- stats and export


def test_stats_and_export_load_back_with_datasets(
    db: Database, home: Home, lib: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets", reason="datasets belongs to the 'train' extra")
    build_gold(db, home, "lib")
    save_triples(db, run_sft(runs(lib["sha"])) + run_dpo(runs(lib["sha"])))
    counts = stats(db)
    assert counts["by_stage"] == {
        "scope": {"sft": 1, "dpo": 0}, "precision": {"sft": 1, "dpo": 0},
        "execute": {"sft": 2, "dpo": 1}, "plan": {"sft": 2, "dpo": 2},
    }
    assert (counts["total"], counts["by_origin"]) == (9, {"gold": 4, "run": 5})

    out = tmp_path / "export"
    (out).mkdir()
    (out / "scope.dpo.jsonl").write_text("stale\n")  # from an earlier export: removed
    manifest = export(db, out)
    assert sorted(manifest["files"]) == [
        "execute.dpo.jsonl", "execute.sft.jsonl", "plan.dpo.jsonl", "plan.sft.jsonl",
        "precision.sft.jsonl", "scope.sft.jsonl"]
    assert not (out / "scope.dpo.jsonl").exists()
    assert json.loads((out / "manifest.json").read_text())["version"] == 1
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    export(db, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # byte-identical

    cache = str(tmp_path / "hf")
    sft = datasets.load_dataset("json", data_files=str(out / "execute.sft.jsonl"), split="train", cache_dir=cache)
    assert sft.column_names == ["messages"] and sft.num_rows == 2
    gold_row = [r for r in sft if r["messages"][-1]["content"].startswith("pkg/core.py\n<<<<<<< SEARCH")]
    assert len(gold_row) == 1
    assert [m["role"] for m in gold_row[0]["messages"]] == ["system", "user", "assistant"]
    dpo = datasets.load_dataset("json", data_files=str(out / "plan.dpo.jsonl"), split="train", cache_dir=cache)
    assert sorted(dpo.column_names) == ["chosen", "prompt", "rejected"] and dpo.num_rows == 2
    assert dpo[0]["prompt"] == PLAN_PROMPT

    pc = export(db, tmp_path / "pc", sft_format="prompt_completion")
    assert pc["sft_format"] == "prompt_completion"
    scope = datasets.load_dataset("json", data_files=str(tmp_path / "pc" / "scope.sft.jsonl"), split="train",
                                  cache_dir=cache)
    assert sorted(scope.column_names) == ["completion", "prompt"]

    # The chronological cut-off: nothing was authored before the commit.
    cut = export(db, tmp_path / "cut", before_ts=int(lib["ts"]))
    assert set(cut["files"]) == {"execute.sft.jsonl", "execute.dpo.jsonl", "plan.sft.jsonl", "plan.dpo.jsonl"}


def test_export_refuses_a_file_as_target_and_an_unknown_format(db: Database, tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    with pytest.raises(BadInput, match="not a folder"):
        export(db, target)
    with pytest.raises(BadInput, match="SFT format"):
        export(db, tmp_path / "o", sft_format="alpaca")


# ----------------------------------------------------------------------------- scoring stored plans


def test_score_stored_plans_recomputes_every_plan(db: Database, home: Home, lib: dict[str, str]) -> None:
    build_gold(db, home, "lib")
    reversed_plan = Plan(source="model", steps=[
        PlanStep(1, "pkg/api.py", ["load"]), PlanStep(2, "pkg/core.py", ["Parser.parse"])])
    save_plan(db, "lib", lib["sha"], reversed_plan.to_dict(), run_id=7, attempt=2)
    hallucinated = Plan(source="retrieval", steps=[PlanStep(1, "pkg/core.py", ["parse"]), PlanStep(2, "pkg/nope.py")])
    save_plan(db, "lib", lib["sha"], hallucinated.to_dict())
    save_plan(db, "lib", lib["sha"], {"kind": "step", "source": "model", "steps": [{"symbols": ["x"]}]})
    summary = score_stored_plans(db, home, "lib")
    by_source = {(r["source"], r["run_id"]): r for r in summary["rows"]}
    assert by_source[("gold", None)]["score"] == 1.0
    assert by_source[("model", 7)]["score"] == 0.85  # only the order is wrong
    # core.py right, nope.py wrong: files P 1/2 R 1/2; symbols 1/1 planned right, 1/2 found.
    assert by_source[("retrieval", None)]["score"] == round(0.5 * 0.5 + 0.35 * (2 / 3) + 0.15, 4)
    assert summary["plans"] == 4 and summary["scored"] == 3
    assert "has no 'file'" in summary["errors"][0]["error"]
    stored = {p.id: p for p in list_plans(db, repo="lib")}
    model_row = next(p for p in stored.values() if p.run_id == 7)
    assert model_row.score == 0.85 and model_row.score_detail is not None
    assert model_row.score_detail["order_violated"] == [["pkg/core.py", "pkg/api.py"]]
    row = db.one("SELECT file_f1, symbol_f1, order_score FROM plans WHERE run_id = 7")
    assert tuple(row) == (1.0, 1.0, 0.0)
