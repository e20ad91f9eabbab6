"""Gate 2 from stored runs: resolved rate, pass@k, steps to green, repeat-error rate per task.

The runs are recorded the pipeline's way (``training_world.World``: start_run, each
attempt's calls, plan and outcome, finish_run), so what each metric must come to is known
by construction; the real pipeline's runs feed the same code in test_eval_loop.py.
"""

from __future__ import annotations

import pytest
from training_world import BASE_TS, DAY, World

from appliance.config import EvaluationConfig
from appliance.db.core import Database
from appliance.db.evaluation import TaskRef
from appliance.db.runs import RunKey, finish_run, start_run
from appliance.evaluation.endtoend import repeats, task_results

SAME = {"kind": "tests_failed", "failing": "tests/test_m.py::test_a",
        "test_output": "E   KeyError: 'x'\n"}
OTHER = {"kind": "tests_failed", "failing": "tests/test_m.py::test_b",
         "test_output": "E   ValueError: bad\n"}
APPLY = {"kind": "apply_error", "apply_status": "apply_error", "apply_error": "block 1 (src/m.py): SEARCH not found"}


def _metrics(db: Database, task: TaskRef, **config) -> dict[str, tuple[float | None, dict]]:
    cfg = EvaluationConfig(**{"samples": 3, "max_attempts": 3, **config})
    return {r.metric: (r.value, r.detail) for r in task_results(db, "candidate", task, model="coder-3b", adapter="",
                                                                   config=cfg)}


def test_repeats_count_a_failure_seen_before_in_the_same_run() -> None:
    assert repeats(["a", "a", "b", "a"]) == (2, 3)
    assert repeats(["a"]) == (0, 0) and repeats([]) == (0, 0)


def test_a_task_s_runs_become_its_gate_2_metrics(db: Database) -> None:
    w = World(db)
    shas = w.repo("lib", 3)
    task = TaskRef(BASE_TS, "lib", shas[0])
    # Three samples: resolved at the second attempt; failed three times the same way;
    # failed with three different errors.
    w.run("lib", 0, status="resolved", attempts=[SAME, {"resolved": True}])
    w.run("lib", 0, attempts=[SAME, SAME, SAME])
    w.run("lib", 0, attempts=[SAME, OTHER, APPLY])
    m = _metrics(db, task)
    assert m["resolved_rate"][0] == pytest.approx(1 / 3)
    assert m["pass_at_k"][0] == pytest.approx(1 / 3)  # k = 1
    assert m["steps_to_green"][0] == pytest.approx((2 + 4 + 4) / 3)  # a failed run counts max_attempts + 1
    # Repairs that failed: 0 (run 1's only failure was its first), 2 of 2 repeated, 0 of 2 repeated.
    assert m["repeat_error_rate"][0] == pytest.approx(2 / 4)
    assert m["repeat_error_rate"][1]["repeated"] == 2 and len(m["resolved_rate"][1]["run_ids"]) == 3
    assert _metrics(db, task, pass_k=2)["pass_at_k"][0] == pytest.approx(2 / 3)  # 1 - C(2,2)/C(3,2)


def test_infrastructure_failures_are_left_out_never_counted_as_failures(db: Database) -> None:
    w = World(db)
    shas = w.repo("lib", 2)
    w.run("lib", 1, status="resolved", attempts=[{"resolved": True}])
    broken = start_run(db, RunKey(repo="lib", sha=shas[1], provider="scripted", model="coder-3b", sample=1))
    finish_run(db, broken.id, status="infra_error", attempts=1, failure_kind="server_error")
    m = _metrics(db, TaskRef(BASE_TS + DAY, "lib", shas[1]), samples=2)
    assert m["resolved_rate"][0] == 1.0 and m["resolved_rate"][1]["left_out"] == {broken.id: "infra_error"}
    assert m["repeat_error_rate"][0] is None and "no failed repair" in m["repeat_error_rate"][1]["unmeasured"]
    assert m["pass_at_k"][0] == 1.0
    # A task with no finished run has no values at all, and says why.
    nothing = _metrics(db, TaskRef(BASE_TS, "lib", shas[0]))
    assert all(v is None and d["unmeasured"] == "no finished run" for v, d in nothing.values())
