"""LogAnalysisAPI and `cra train-plan` over databases whose answers are known by construction."""

from __future__ import annotations

import json
import re

import pytest
from training_world import World, write_catalog

from appliance.cli import main
from appliance.config import Home, TrainingConfig
from appliance.db import logs as log_sql
from appliance.db.core import Database
from appliance.training.logs import LogAnalysisAPI
from appliance.training.plan import build_plan, check_plan, content_hash, make_plan
from appliance.training.stats import wilson

OK = {"resolved": True}
FAIL = {"failing": "tests/test_m.py::test_m", "test_output": "E   AssertionError: assert 3 == 4"}
NOT_APPLIED = {"apply_status": "apply_error", "kind": "apply_error",
               "apply_error": "block 1 (src/m.py): SEARCH not found at line 7"}


@pytest.fixture
def world(db: Database) -> World:
    w = World(db)
    w.repo("alpha", 20)
    return w


def _weak_execute(w: World) -> None:
    """20 tasks: retrieval finds everything, plans score 0.9, but 16 of 20 edits do not apply."""
    for i in range(20):
        if i < 16:
            w.run("alpha", i, status="failed", attempts=[NOT_APPLIED])
        else:
            w.run("alpha", i, status="resolved", attempts=[OK])


def test_the_weakest_stage_by_construction_comes_first(world: World) -> None:
    _weak_execute(world)
    api = LogAnalysisAPI(world.db, domains={})
    reports = api.stages()
    assert reports["scope"].measures["file_recall"].value == 1.0 and reports["scope"].counts["tasks"] == 20
    assert reports["scope"].measures["file_precision"].value == 0.5  # 1 of the 2 files retrieved is right
    assert reports["precision"].measures["symbol_recall"].value == 1.0
    assert reports["plan"].measures["alignment"].value == pytest.approx(0.9)
    apply = reports["execute"].measures["apply_error_rate"]
    assert (apply.count, apply.n, apply.value) == (16, 20, 0.8)
    assert (apply.lo, apply.hi) == pytest.approx(wilson(16, 20))
    resolved = reports["validate"].measures["resolved_rate"]
    assert (resolved.count, resolved.n) == (4, 20)
    ranking = api.rank(reports)
    assert [r["stage"] for r in ranking][:2] == ["execute", "validate"]
    first = ranking[0]
    assert first["quality"]["value"] == pytest.approx(0.2)
    assert {"scope", "precision", "plan"} <= set(first["weaker_than"])  # intervals wholly below
    groups = api.failure_groups()
    assert groups[0].signature == "apply_error: SEARCH not found at line N"
    assert (groups[0].attempts, groups[0].runs) == (16, 16) and groups[0].stage == "execute"
    assert groups[0].example_runs == sorted(groups[0].example_runs)[:3]


def test_infrastructure_failures_are_counted_apart_never_as_model_failures(world: World) -> None:
    for i in range(6):
        world.run("alpha", i, status="resolved", attempts=[OK])
    for i in range(6, 10):
        world.run("alpha", i, status="failed", attempts=[FAIL])
    for i in range(10, 13):
        world.run("alpha", i, status="infra_error", attempts=[{"kind": "llm_error"}])
    world.run("alpha", 13, status="error", attempts=[{"kind": "env_error"}])
    report = LogAnalysisAPI(world.db, domains={}).validate()
    resolved = report.measures["resolved_rate"]
    assert (resolved.count, resolved.n) == (6, 10)
    assert report.counts["infra_error"] == 3 and report.counts["harness_error"] == 1
    assert "3 infra_error" in report.notes[0]


def test_repairs_steps_to_green_and_repeated_errors(world: World) -> None:
    # 3 runs repaired at attempt 2, 2 runs failing twice the same way, 1 failing two different ways.
    for i in range(3):
        world.run("alpha", i, status="resolved", attempts=[FAIL, OK])
    for i in range(3, 5):
        world.run("alpha", i, status="failed", attempts=[FAIL, FAIL])
    world.run("alpha", 5, status="failed", attempts=[FAIL, NOT_APPLIED])
    world.run("alpha", 6, status="resolved", attempts=[OK])
    m = LogAnalysisAPI(world.db, domains={}).validate().measures
    assert (m["repair_success"].count, m["repair_success"].n) == (3, 6)
    assert m["steps_to_green"].value == pytest.approx((2 + 2 + 2 + 1) / 4)
    assert (m["repeat_error_rate"].count, m["repeat_error_rate"].n) == (2, 6)


def test_pollution_bad_plans_and_no_edits(world: World) -> None:
    polluted = {"resolved": True, "answer": "Sure!\n```\nsrc/m.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n```"}
    world.run("alpha", 0, status="resolved", attempts=[polluted])
    world.run("alpha", 1, status="resolved", attempts=[OK])
    world.run("alpha", 2, status="failed", attempts=[{"kind": "bad_output", "stage": "plan"}])
    world.run("alpha", 3, status="failed", attempts=[{"kind": "bad_output", "stage": "execute",
                                                      "apply_status": "no_edits"}])
    api = LogAnalysisAPI(world.db, domains={})
    ex = api.execute().measures
    assert (ex["pollution_stripped_share"].count, ex["pollution_stripped_share"].n) == (1, 2)
    assert (ex["no_edits_rate"].count, ex["no_edits_rate"].n) == (1, 3)
    bad = api.plan().measures["bad_output_rate"]
    assert (bad.count, bad.n) == (1, 4)


def test_slices_by_repo_domain_model_adapter_and_time(db: Database) -> None:
    w = World(db)
    w.repo("alpha", 4)
    w.repo("beta", 4)
    for i in range(4):
        w.run("alpha", i, status="resolved", attempts=[OK], started=f"2024-01-0{i + 1}T00:00:00+00:00")
        w.run("beta", i, status="failed", attempts=[FAIL], model="coder-7b", adapter="v2",
              started=f"2024-02-0{i + 1}T00:00:00+00:00")
    api = LogAnalysisAPI(db, domains={"alpha": "fail-fast", "beta": "lora"})
    rate = lambda f: api.validate(f).measures["resolved_rate"]
    assert rate(api.slice(repo="alpha")).value == 1.0 and rate(api.slice(repo="beta")).value == 0.0
    assert rate(api.slice(domain="lora")).n == 4 and rate(api.slice(domain="lora")).value == 0.0
    assert rate(api.slice(model="coder-7b")).n == 4 and rate(api.slice(adapter="")).value == 1.0
    assert rate(api.slice(since="2024-01-03", until="2024-02-02")).n == 3  # alpha 3, 4 and beta 1
    by_domain = api.breakdown("domain", stages=["validate"])
    assert {d: r["validate"].measures["resolved_rate"].value for d, r in by_domain.items()} == {
        "fail-fast": 1.0, "lora": 0.0}
    assert api.values("model") == ["coder-3b", "coder-7b"]


def test_the_plan_artifact_is_schema_checked_stored_once_and_identical_for_the_same_db(world: World) -> None:
    _weak_execute(world)
    world.triples("alpha", [{"i": i, "prompt": f"task {i}", "answer": f"edit {i}"} for i in range(5)])
    config = TrainingConfig(min_sft={"execute-code": 3})
    first = make_plan(world.db, config)
    second = make_plan(world.db, config)
    assert first.created and not second.created and first.id == second.id
    assert first.plan == second.plan and first.row.content_hash == content_hash(first.plan)
    plan = first.plan
    check_plan(plan)
    assert plan["ranking"][0] == "execute" and plan["slots"][0]["slot"] == "execute-code"
    execute = plan["slots"][0]
    assert execute["sft"]["rows"] == 5 and execute["sft"]["by_source"]["gold"] == 5
    assert execute["sft"]["by_repo"] == {"alpha": 5} and execute["sft"]["enough"] is True
    assert execute["build"] == ["sft"]
    assert plan["stages"][0]["failures"][0]["example_runs"]
    assert "T" not in json.dumps(plan["params"])  # no timestamps in the content
    world.run("alpha", 0, status="resolved", attempts=[OK])
    assert make_plan(world.db, config).created  # new evidence, new plan


def test_a_broken_plan_file_is_refused_with_the_place(world: World, tmp_path) -> None:
    plan = build_plan(world.db, TrainingConfig())
    plan["slots"][0]["priority"] = 0
    from appliance.errors import BadInput

    with pytest.raises(BadInput, match=r"slots/0/priority"):
        check_plan(plan)


def test_train_plan_cli_tables_json_and_out_file(home: Home, world: World, capsys) -> None:
    _weak_execute(world)
    write_catalog(home.root, {"alpha": "fail-fast"})
    out = home.root / "plan.json"
    assert main(["train-plan", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "stages, weakest first" in text and "apply_error_rate" in text and "SEARCH not found" in text
    assert "execute-code" in text and "cra curate-data --plan 1" in text
    assert main(["train-plan", "--json", "--domain", "fail-fast"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ranking"][0] == "execute" and data["params"]["domain"] == "fail-fast"
    saved = json.loads(out.read_text())
    assert saved["id"] == 1 and re.fullmatch(r"[0-9a-f]{64}", saved["content_hash"])
    assert main(["train-plan", "--since", "yesterday"]) == 2
    assert "not a date" in capsys.readouterr().err


def test_every_log_query_is_covered_by_an_index(world: World) -> None:
    """No query scans a table it joins to: only the outer table may be read whole."""
    _weak_execute(world)
    f = log_sql.RunFilter(model="coder-3b", since="2000-01-01")
    queries = []
    real_query, real_one = world.db.query, world.db.one

    def spy(sql, params=()):
        queries.append((sql, params))
        return real_query(sql, params)

    world.db.query = spy  # type: ignore[method-assign]
    world.db.one = lambda sql, params=(): (queries.append((sql, params)), real_one(sql, params))[1]  # type: ignore[method-assign]
    LogAnalysisAPI(world.db, domains={}).stages(f)
    world.db.query, world.db.one = real_query, real_one  # type: ignore[method-assign]
    assert len(queries) >= 6
    for sql, params in queries:
        plan = [r[3] for r in world.db.query(f"EXPLAIN QUERY PLAN {sql}", params)]
        scans = [p for p in plan if p.startswith("SCAN") and "USING" not in p and "CONSTANT ROW" not in p
                 and "VIRTUAL TABLE" not in p
                 and not p.startswith("SCAN firsts")]
        assert len(scans) <= 1, (sql, plan)
        assert all(s.startswith("SCAN ru") for s in scans), (sql, plan)


def test_error_signatures_group_what_repeats_and_split_what_differs() -> None:
    from appliance.training.signatures import signature

    def tests_failed(output: str, test: str = "t.py::test_a") -> str:
        return signature({"kind": "tests_failed", "fail_to_pass": {test: "failed", "t.py::test_z": "passed"}},
                         {"test_output": output})

    key_a = tests_failed("...\nE       KeyError: 'alpha'\n")
    assert key_a == tests_failed("E   KeyError: 'beta'") == "tests_failed: t.py::test_a: KeyError: '…'"
    assert tests_failed("FAILED t.py::test_a - ValueError: bad value 12 at 0x7f3a") == (
        "tests_failed: t.py::test_a: ValueError: bad value N at 0xN")
    assert key_a != tests_failed("E   KeyError: 'alpha'", test="t.py::test_b")
    assert key_a != tests_failed("E   TypeError: 'alpha'")
    apply = {"apply_status": "apply_error"}
    assert signature({"kind": "apply_error"}, apply | {"apply_error": "block 3 (src/a.py): SEARCH not found"}) == \
        signature({"kind": "apply_error"}, apply | {"apply_error": "block 1 (lib/b.py): SEARCH not found"})
    assert signature({"kind": "llm_error", "stage": "plan", "status": "timeout"}, {}) == "llm_error[plan]: timeout"
