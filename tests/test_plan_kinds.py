"""The spec's three plan kinds on real commits: step, meta (the approach) and test (which
tests to add or change), each with its gold from the commit and its own score.

The repo is built in the test: a feature commit that changes two modules (one importing
the other) and adds tests to an existing test file and a new one, so the test plan's gold
comes from the commit's test patch alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo_builder import RepoBuilder
from test_pipeline import INSTRUCTION, PLAN, RIGHT_EDIT_POLLUTED, World, _client, _options, world  # noqa: F401

from appliance.db.runs import list_calls, list_runs
from appliance.db.triples import list_plans
from appliance.llm import LLMClient, LLMConfig
from appliance.llm.providers.scripted import ScriptedProvider
from harness.alignment import score_plan, score_plan_kind
from harness.groundtruth import gold_plan, ground_truth, truth_of_tests
from harness.index import SymbolIndex
from harness.pipeline import PipelineOptions, run_repo
from harness.planner import existing_tests, first_plan_prompt, model_plan
from harness.plans import Plan, PlanStep, plan_json_schema
from harness.retrieve import retrieve
from harness.testrun import is_test_file
from harness.triples import GoldOptions, gold_examples

UNITS = '"""Units."""\n\n\ndef to_cm(inches):\n    return inches * 2.54\n'
CONVERT = ('"""Conversions."""\nfrom pkg.units import to_cm\n\n\n'
           'def length(value, unit):\n    return to_cm(value) if unit == "in" else value\n')
TEST_CONVERT = "from pkg.convert import length\n\n\ndef test_cm():\n    assert length(2, 'cm') == 2\n"
FEATURE = "Support feet in length()\n\nlength() should convert feet to centimetres too."


@pytest.fixture
def feature(tmp_path: Path) -> tuple[RepoBuilder, str, str]:
    repo = RepoBuilder(tmp_path / "lib")
    parent = repo.commit("Start", {"pkg/__init__.py": "", "pkg/units.py": UNITS, "pkg/convert.py": CONVERT,
                                   "tests/test_convert.py": TEST_CONVERT})
    sha = repo.commit(FEATURE, {
        "pkg/units.py": UNITS + "\n\ndef feet_to_cm(feet):\n    return feet * 30.48\n",
        "pkg/convert.py": CONVERT.replace("from pkg.units import to_cm", "from pkg.units import feet_to_cm, to_cm")
        .replace('return to_cm(value) if unit == "in" else value',
                 'if unit == "ft":\n        return feet_to_cm(value)\n'
                 '    return to_cm(value) if unit == "in" else value'),
        "tests/test_convert.py": TEST_CONVERT + "\n\ndef test_feet():\n    assert length(1, 'ft') == 30.48\n",
        "tests/test_units.py": "from pkg.units import feet_to_cm\n\n\ndef test_feet_to_cm():\n"
                               "    assert feet_to_cm(2) == 60.96\n",
    })
    return repo, parent, sha


def test_the_test_plan_gold_is_the_commit_test_patch(feature) -> None:
    repo, parent, sha = feature
    tests = truth_of_tests(repo.path, parent, sha)
    assert tests.files == ["tests/test_convert.py", "tests/test_units.py"]
    assert tests.symbols == {"tests/test_convert.py": ["test_feet"], "tests/test_units.py": ["test_feet_to_cm"]}
    assert tests.added == ["tests/test_units.py"]
    plan = gold_plan(tests, kind="test")
    assert plan.kind == "test" and [s.action for s in plan.steps] == ["test", "test"]
    assert "add tests: test_feet_to_cm" in plan.steps[1].description
    # The source side is untouched by the rule: its truth has no test file.
    truth = ground_truth(repo.path, parent, sha)
    assert truth.files == ["pkg/units.py", "pkg/convert.py"]  # units first: convert imports it
    meta = gold_plan(truth, kind="meta")
    assert [s.symbols for s in meta.steps] == [[], []] and meta.steps[1].depends_on == [1]


def test_each_kind_is_scored_against_its_own_gold(feature) -> None:
    repo, parent, sha = feature
    truth = ground_truth(repo.path, parent, sha)
    tests = truth_of_tests(repo.path, parent, sha)
    # An approach naming the right modules in the right order is perfect without symbols ...
    meta = Plan([PlanStep(1, "pkg/units.py"), PlanStep(2, "pkg/convert.py", depends_on=[1])], kind="meta")
    assert score_plan_kind(meta, truth).score == 1.0
    # ... which a step plan without symbols is not.
    assert score_plan(Plan(meta.steps, kind="step"), truth).score == pytest.approx(0.65)
    reversed_meta = Plan([PlanStep(1, "pkg/convert.py"), PlanStep(2, "pkg/units.py")], kind="meta")
    assert score_plan_kind(reversed_meta, truth).score == pytest.approx(0.85)
    # A test plan's test steps count, against the test patch: one file of two, its test named.
    test_plan = Plan([PlanStep(1, "tests/test_convert.py", ["test_feet"], action="test")], kind="test")
    scored = score_plan_kind(test_plan, tests)
    assert scored.files.recall == 0.5 and scored.files.precision == 1.0
    assert scored.symbols.matched == ["tests/test_convert.py::test_feet"]
    # The same plan scored as a step plan against the source truth would see nothing.
    assert score_plan(test_plan, truth).score == 0.0


def test_a_test_plan_prompt_shows_the_related_tests_and_its_schema_names_test_files(feature, tmp_path) -> None:
    repo, parent, _ = feature
    with SymbolIndex(tmp_path / "ix.db") as ix:
        ix.index_commit(repo.path, parent)
        retrieval = retrieve(ix, parent, FEATURE, exclude=is_test_file)
        step_msgs, step_files = first_plan_prompt(ix, parent, FEATURE, retrieval)
        test_msgs, files = first_plan_prompt(ix, parent, FEATURE, retrieval, kind="test")
        meta_msgs, meta_files = first_plan_prompt(ix, parent, FEATURE, retrieval, kind="meta")
        assert files == existing_tests(ix, parent) == ["tests/test_convert.py"]
    assert "tests/test_convert.py" not in step_files and meta_files == step_files
    assert '"kind": "test"' in test_msgs[0]["content"] and "test plan" in test_msgs[0]["content"]
    assert "Related tests:\ntests/test_convert.py\n  test_cm: def test_cm()" in test_msgs[1]["content"]
    assert "approach" in meta_msgs[0]["content"] and meta_msgs[1] == step_msgs[1]
    # A new test module is allowed by the schema's path pattern, an existing source file is not.
    schema = plan_json_schema(files, kind="test", new_files=True)
    answer = json.dumps({"kind": "test", "steps": [
        {"id": 1, "file": "tests/test_units.py", "symbols": ["test_feet_to_cm"], "action": "test",
         "description": "feet", "depends_on": []}]})
    source_step = json.dumps({"kind": "test", "steps": [
        {"id": 1, "file": "pkg/units.py", "symbols": [], "action": "modify", "description": "", "depends_on": []}]})
    client = LLMClient(ScriptedProvider([answer, source_step]), config=LLMConfig(max_retries=0, retry_backoff_s=0))
    ok = model_plan(client, test_msgs, files, kind="test")
    assert ok.ok and ok.plan is not None and ok.plan.files() == ["tests/test_units.py"]
    refused = model_plan(client, test_msgs, files, kind="test")
    assert not refused.ok and "pkg/units.py" in (refused.error or "")
    assert schema["properties"]["kind"]["enum"] == ["test"]


def test_a_repo_without_tests_can_still_get_a_test_plan_schema() -> None:
    schema = plan_json_schema([], kind="test", new_files=True)
    assert schema["properties"]["steps"]["items"]["properties"]["file"] == {
        "type": "string", "pattern": schema["properties"]["steps"]["items"]["properties"]["file"]["pattern"]}


def test_gold_triples_for_every_plan_kind(feature, tmp_path) -> None:
    repo, parent, sha = feature
    with SymbolIndex(tmp_path / "ix.db") as ix:
        only_step = gold_examples(repo.path, repo="lib", sha=sha, parent=parent, instruction=FEATURE,
                                  author_ts=1, index=ix)
        every = gold_examples(repo.path, repo="lib", sha=sha, parent=parent, instruction=FEATURE, author_ts=1,
                              index=ix, options=GoldOptions(plan_kinds=("step", "meta", "test")))
    plans = [t for t in every.triples if t.stage == "plan"]
    assert len([t for t in only_step.triples if t.stage == "plan"]) == 1 and len(plans) == 3
    answers = [json.loads(t.completion[0]["content"]) for t in plans]
    assert [a["kind"] for a in answers] == ["step", "meta", "test"]
    assert [s["file"] for s in answers[2]["steps"]] == ["tests/test_convert.py", "tests/test_units.py"]
    assert len({t.content_hash for t in every.triples}) == len(every.triples)
    with pytest.raises(Exception, match="unknown plan kind"):
        GoldOptions(plan_kinds=("approach",))


META = json.dumps({"kind": "meta", "steps": [{"id": 1, "file": "calc/__init__.py", "symbols": [], "action": "modify",
                                               "description": "fix the sum", "depends_on": []}]})
TESTS = json.dumps({"kind": "test", "steps": [{"id": 1, "file": "tests/test_calc.py", "symbols": ["test_add"],
                                                "action": "test", "description": "2 + 3", "depends_on": []}]})


@pytest.mark.network
def test_a_run_also_asks_for_the_extra_plan_kinds_and_scores_them(world: World) -> None:  # noqa: F811
    client, provider = _client(world.db, [META, TESTS, PLAN, RIGHT_EDIT_POLLUTED], "three-kinds")
    options = PipelineOptions(evaluation=_options().evaluation, extra_kinds=("meta", "test"))
    summary = run_repo(world.home, world.db, "calc", client=client, options=options)
    assert provider.remaining == 0 and summary["by_status"] == {"resolved": 1}
    [run] = [r for r in list_runs(world.db, "calc") if r.model == "three-kinds"]
    assert run.summary["extra_plans"] == {"meta": {"score": 1.0}, "test": {"score": 1.0}}
    stored = {p.kind: p for p in list_plans(world.db, repo="calc") if p.run_id == run.id}
    assert set(stored) == {"step", "meta", "test"} and stored["test"].score == 1.0
    assert [c.stage for c in list_calls(world.db, run_id=run.id)] == ["plan", "plan", "plan", "execute"]
    assert "Related tests:" in provider.requests[1].messages[1]["content"]
    assert INSTRUCTION.split("\n")[0] in provider.requests[0].messages[1]["content"]
    with pytest.raises(Exception, match="unknown plan kind"):
        PipelineOptions(extra_kinds=("sketch",))
