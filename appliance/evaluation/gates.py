"""From per-task results to a decision: the summary with its intervals, then the gates.

``summarize`` pairs each metric's values task by task (a task counts for a metric when
both sides have a value there), on the held-out tasks and on the frozen set, and gives
every difference its paired bootstrap interval; the primary metric is also broken down
per repo and per domain.

The gates, from ``[evaluation]`` (seed 004 §6, seed 002's "strict gates, frozen set"):

* a **candidate** is promoted only when the primary metric's interval lies strictly on
  the not-worse side of ``-max_loss`` (its lower end above ``-max_loss`` when higher is
  better): the interval excludes a loss. With the default ``max_loss = 0`` an interval
  that reaches zero ([+0.000, +0.136]) does not: "no gain" is still inside it, and the
  report calls such a result unclear, so the gate keeps; when it did better on average (a candidate that
  changed nothing measurable is kept: promoting it would only churn the registry); and
  when no metric on the frozen set drops by more than ``frozen_tolerance``;
* the **active version**, checked against the version before it, is rolled back when the
  primary metric's interval lies wholly on the loss side (a loss beyond ``max_loss`` we are
  ``level`` sure of), or a frozen-set metric drops by more than ``frozen_tolerance``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.config import EvaluationConfig
from appliance.db.evaluation import Result
from appliance.evaluation.metrics import METRICS, Metric
from appliance.evaluation.stats import Difference, paired_bootstrap
from appliance.status import EvalArm, EvalDecision, EvalKind

Key = tuple[str, str]


def pairs(results: Sequence[Result], metric: str, keys: Sequence[Key]) -> tuple[list[Key], list[float], list[float]]:
    """(tasks, candidate values, baseline values) of ``metric`` over ``keys`` where both sides have one."""
    values: dict[tuple[str, Key], float] = {}
    for r in results:
        if r.metric == metric and r.value is not None:
            values[(r.arm, (r.repo, r.sha))] = float(r.value)
    tasks, cand, base = [], [], []
    for key in sorted(set(keys)):
        c, b = values.get((EvalArm.CANDIDATE, key)), values.get((EvalArm.BASELINE, key))
        if c is not None and b is not None:
            tasks.append(key)
            cand.append(c)
            base.append(b)
    return tasks, cand, base


def _diff(cand: list[float], base: list[float], config: EvaluationConfig) -> dict[str, Any] | None:
    d = paired_bootstrap(cand, base, resamples=config.bootstrap_resamples, level=config.level, seed=config.seed)
    return d.to_dict() if d is not None else None


def summarize(results: Sequence[Result], holdout: Sequence[Key], frozen: Sequence[Key], *, primary: str,
              config: EvaluationConfig, domain_of: Callable[[str], str]) -> dict[str, Any]:
    """Every metric's paired difference on the holdout and on the frozen set, the primary
    metric per repo and per domain, and what could not be measured."""
    out: dict[str, Any] = {"primary": primary, "level": config.level, "holdout_tasks": len(set(holdout)),
                           "frozen_tasks": len(set(frozen)), "metrics": {}}
    for name, m in METRICS.items():
        measured = [r for r in results if r.metric == name]
        if not measured:
            continue
        tasks, cand, base = pairs(results, name, holdout)
        _, fcand, fbase = pairs(results, name, frozen)
        unmeasured: dict[str, int] = {}
        for r in measured:
            if r.value is None:
                unmeasured[r.arm] = unmeasured.get(r.arm, 0) + 1
        entry = {"label": m.label, "level": m.level, "higher_is_better": m.higher_is_better,
                 "holdout": _diff(cand, base, config), "frozen": _diff(fcand, fbase, config),
                 "unmeasured": unmeasured}
        if name == primary:
            by_repo: dict[str, tuple[list[float], list[float]]] = {}
            by_domain: dict[str, tuple[list[float], list[float]]] = {}
            for (repo, _), c, b in zip(tasks, cand, base, strict=True):
                for table, group in ((by_repo, repo), (by_domain, domain_of(repo))):
                    table.setdefault(group, ([], []))
                    table[group][0].append(c)
                    table[group][1].append(b)
            entry["by_repo"] = {g: _diff(c, b, config) for g, (c, b) in sorted(by_repo.items())}
            entry["by_domain"] = {g: _diff(c, b, config) for g, (c, b) in sorted(by_domain.items())}
        out["metrics"][name] = entry
    return out


@dataclass
class Check:
    """One gate and how it went; ``detail`` is the sentence a report prints."""

    name: str
    passed: bool
    detail: str


@dataclass
class Verdict:
    decision: str
    checks: list[Check] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [f"{'pass' if c.passed else 'FAIL'}: {c.detail}" for c in self.checks]

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "checks": [asdict(c) for c in self.checks]}


def _fmt(x: float) -> str:
    return f"{x:+.3f}"


def _primary_check(summary: dict[str, Any], metric: Metric, config: EvaluationConfig, *, kind: str) -> Check:
    entry = summary["metrics"].get(metric.name)
    diff = entry["holdout"] if entry else None
    if diff is None:
        return Check("primary", kind == EvalKind.REGRESSION,
                     f"{metric.label}: no held-out task was measured on both sides")
    d = Difference(**diff)
    # The interval's ends on the loss scale: best and worst case of "how much worse".
    worst, best = sorted((metric.loss(d.low), metric.loss(d.high)), reverse=True)
    span = (f"{metric.label} {_fmt(d.diff)} [{_fmt(d.low)}, {_fmt(d.high)}] ({d.level:.0%}, n={d.n}, "
            f"candidate {d.candidate:.3f} vs {d.baseline:.3f})")
    if kind == EvalKind.REGRESSION:
        regressed = best > config.max_loss
        return Check("primary", not regressed,
                     f"{span}: {'a loss beyond ' + str(config.max_loss) + ' in the whole interval' if regressed else 'no sure loss'}")
    larger = f" larger than {config.max_loss:g}" if config.max_loss else ""
    if worst > config.max_loss:
        return Check("primary", False, f"{span}: a loss{larger} is inside the interval")
    if worst == config.max_loss:
        edge = f"a loss of {config.max_loss:g}" if config.max_loss else "no gain"
        return Check("primary", False, f"{span}: the interval reaches {edge}, so it does not exclude a loss")
    if metric.loss(d.diff) >= 0:
        return Check("primary", False, f"{span}: the interval excludes a loss{larger}, but the candidate did "
                                       "no better on average")
    return Check("primary", True, f"{span}: better on average, and the interval excludes a loss{larger}")


def _frozen_checks(summary: dict[str, Any], config: EvaluationConfig) -> list[Check]:
    drops = []
    measured = 0
    for name, entry in summary["metrics"].items():
        diff = entry.get("frozen")
        if diff is None:
            continue
        measured += 1
        loss = METRICS[name].loss(diff["diff"])
        if loss > config.frozen_tolerance:
            drops.append(f"{METRICS[name].label} {_fmt(diff['diff'])} (n={diff['n']})")
    if summary.get("frozen_tasks", 0) == 0 or measured == 0:
        return [Check("frozen", True, "the frozen regression set is empty")]
    if drops:
        return [Check("frozen", False, f"frozen set regressed beyond {config.frozen_tolerance:g}: {', '.join(drops)}")]
    return [Check("frozen", True, f"no metric on the frozen set ({summary['frozen_tasks']} tasks) dropped "
                                  f"more than {config.frozen_tolerance:g}")]


def judge(summary: dict[str, Any], *, kind: str, config: EvaluationConfig) -> Verdict:
    """The decision the gates make of ``summary`` (``summarize``'s output)."""
    metric = METRICS[summary["primary"]]
    primary = _primary_check(summary, metric, config, kind=kind)
    frozen = _frozen_checks(summary, config)
    checks = [primary, *frozen]
    if kind == EvalKind.REGRESSION:
        regressed = not all(c.passed for c in checks)
        decision = EvalDecision.ROLLBACK if regressed and config.rollback else EvalDecision.KEEP
        if regressed and not config.rollback:
            checks.append(Check("rollback", False, "[evaluation] rollback = false: the regression is reported only"))
        return Verdict(decision, checks)
    return Verdict(EvalDecision.PROMOTE if all(c.passed for c in checks) else EvalDecision.KEEP, checks)
