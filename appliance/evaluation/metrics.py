"""What an evaluation measures, per task: the spec's two gates (seed 004 §4).

**Stage level (Gate 1)**: each stage asked on its own, on a held-out commit, with the very
prompt its gold triples are built with (``harness.triples``, ``harness.planner``), through
the adapter the side routes its slot to, and scored against the commit:

* ``scope_recall``: the share of the commit's changed non-test Python files among the
  first ``scope_k`` files of the scope stage's answer (recall@k);
* ``symbol_recall``: the share of the changed symbols the precision stage names
  (matched as plan alignment matches them: equal names or a dotted tail);
* ``plan_alignment``, ``meta_plan_alignment``, ``test_plan_alignment``: the plan-diff
  alignment of a step plan, an approach plan and a test plan (the test plan against the
  commit's test patch), ``harness.alignment.score_plan_kind``;
* ``apply_rate``: whether the execute stage's edits for the gold plan apply to the parent.

**End to end (Gate 2)**: the whole pipeline (``harness.pipeline``) on the held-out tasks,
``samples`` runs per task and side with the same seeds:

* ``resolved_rate``: the share of a task's runs that resolved it (FAIL_TO_PASS and
  PASS_TO_PASS pass);
* ``pass_at_k``: the unbiased pass@k over those runs (Chen et al. 2021);
* ``steps_to_green``: attempts a run used, a run that never resolved counted as
  ``max_attempts + 1`` (seed 002's steps-to-green, made defined for every run);
* ``repeat_error_rate``: of the repair attempts that failed, the share whose failure has
  the signature of an earlier failed attempt of the same run (seed 002's repeat-error rate).

A task where a metric cannot be measured (a commit with no symbol change has no symbol
recall, a test plan needs a test patch) has no value there and leaves that metric's pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.status import EvalMetric

STAGE = "stage"
END_TO_END = "end_to_end"


@dataclass(frozen=True)
class Metric:
    """One metric: its level, which way is better, the adapter slot its stage uses, a label."""

    name: str
    level: str
    higher_is_better: bool
    slot: str | None  # the slot whose adapter a stage metric's calls use; None: every slot (the pipeline)
    stage: str | None  # the LLM call's stage name
    label: str
    unit: str = ""

    def loss(self, diff: float) -> float:
        """How much worse the candidate is for a difference (candidate - baseline); <= 0: not worse."""
        return -diff if self.higher_is_better else diff


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric(EvalMetric.SCOPE_RECALL, STAGE, True, "scope", "scope", "scope recall@k"),
    Metric(EvalMetric.SYMBOL_RECALL, STAGE, True, "precision", "precision", "symbol recall"),
    Metric(EvalMetric.PLAN_ALIGNMENT, STAGE, True, "plan", "plan", "step plan alignment"),
    Metric(EvalMetric.META_PLAN_ALIGNMENT, STAGE, True, "plan", "plan", "meta plan alignment"),
    Metric(EvalMetric.TEST_PLAN_ALIGNMENT, STAGE, True, "plan", "plan", "test plan alignment"),
    Metric(EvalMetric.APPLY_RATE, STAGE, True, "execute-code", "execute", "apply rate"),
    Metric(EvalMetric.RESOLVED_RATE, END_TO_END, True, None, None, "resolved rate"),
    Metric(EvalMetric.PASS_AT_K, END_TO_END, True, None, None, "pass@k"),
    Metric(EvalMetric.STEPS_TO_GREEN, END_TO_END, False, None, None, "steps to green", "attempts"),
    Metric(EvalMetric.REPEAT_ERROR_RATE, END_TO_END, False, None, None, "repeat-error rate"),
)}
STAGE_METRICS = tuple(m for m in METRICS.values() if m.level == STAGE)
END_TO_END_METRICS = tuple(m for m in METRICS.values() if m.level == END_TO_END)
LEARNING_CURVES = (EvalMetric.RESOLVED_RATE, EvalMetric.STEPS_TO_GREEN, EvalMetric.REPEAT_ERROR_RATE)
"""Seed 002's curves over cycles: pass rate, steps-to-green, repeat-error rate."""


def metric(name: str) -> Metric:
    return METRICS[name]
