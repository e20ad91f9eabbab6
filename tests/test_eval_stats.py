"""Paired bootstrap intervals, pass@k, holdout sizes, and the gates that read them."""

from __future__ import annotations

import itertools
import random

import pytest

from appliance.config import EvaluationConfig
from appliance.db.evaluation import Result
from appliance.evaluation.gates import judge, pairs, summarize
from appliance.evaluation.stats import (
    detectable_effect,
    mean_interval,
    needed_holdout,
    paired_bootstrap,
    pass_at_k,
)
from appliance.status import EvalArm, EvalDecision, EvalKind

# ----------------------------------------------------------------------------- statistics


def test_pairing_removes_the_task_to_task_spread() -> None:
    rng = random.Random(3)
    base = [rng.random() * 0.8 for _ in range(40)]  # tasks differ a lot in difficulty
    cand = [b + 0.1 for b in base]  # the candidate is better by 0.1 on every one of them
    d = paired_bootstrap(cand, base, seed=1)
    assert d is not None and d.n == 40
    assert d.diff == pytest.approx(0.1) and d.low == pytest.approx(0.1) and d.high == pytest.approx(0.1)
    assert d.excludes_zero() and d.better == 1.0
    # The same means, unpaired (the candidate's values shuffled), would be unsure.
    shuffled = cand[:]
    random.Random(5).shuffle(shuffled)
    loose = paired_bootstrap(shuffled, base, seed=1)
    assert loose is not None and loose.low < 0 < loose.high


def test_the_interval_holds_the_mean_difference_is_seeded_and_shrinks_with_more_tasks() -> None:
    rng = random.Random(7)
    few_c = [float(rng.random() < 0.6) for _ in range(12)]
    few_b = [float(rng.random() < 0.4) for _ in range(12)]
    a = paired_bootstrap(few_c, few_b, seed=11)
    b = paired_bootstrap(few_c, few_b, seed=11)
    assert a == b and a is not None
    assert a.low <= a.diff <= a.high and a.level == 0.95
    many_c = few_c * 10
    many_b = few_b * 10
    wide = a.high - a.low
    narrow = paired_bootstrap(many_c, many_b, seed=11)
    assert narrow is not None and narrow.high - narrow.low < wide / 2
    assert paired_bootstrap([], []) is None
    one = paired_bootstrap([1.0], [0.0])
    assert one is not None and (one.low, one.diff, one.high) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="unpaired"):
        paired_bootstrap([1.0], [1.0, 0.0])
    assert mean_interval([0.5, 0.5]) == (0.5, 0.5, 0.5) and mean_interval([]) is None


@pytest.mark.parametrize(("n", "c", "k"), [(5, 2, 1), (5, 2, 3), (6, 0, 2), (4, 4, 2), (7, 3, 7)])
def test_pass_at_k_is_the_share_of_k_subsets_with_a_pass(n: int, c: int, k: int) -> None:
    runs = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(runs[i] for i in s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(brute)


def test_pass_at_k_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError, match="at least 5 runs"):
        pass_at_k(3, 1, 5)


def test_the_holdout_an_effect_needs() -> None:
    assert needed_holdout(0.1) == 197  # ((1.96 + 0.84) * 0.5 / 0.1)^2
    assert needed_holdout(0.2) == 50
    assert needed_holdout(0.1, power=0.9) > 197
    for n in (10, 50, 200):
        assert needed_holdout(detectable_effect(n)) in (n, n + 1)  # the two are inverses
    assert detectable_effect(0) is None


# ----------------------------------------------------------------------------- gates


def _results(metric: str, cand: list[float | None], base: list[float | None], *, repo: str = "lib",
             start: int = 0) -> list[Result]:
    out = []
    for i, (c, b) in enumerate(zip(cand, base, strict=True)):
        sha = f"{start + i:040x}"
        out += [Result(EvalArm.CANDIDATE, repo, sha, metric, c), Result(EvalArm.BASELINE, repo, sha, metric, b)]
    return out


def _keys(results: list[Result]) -> list[tuple[str, str]]:
    return sorted({(r.repo, r.sha) for r in results})


def _decide(results: list[Result], *, primary: str = "scope_recall", frozen: list[tuple[str, str]] = (),
            kind: str = EvalKind.CANDIDATE, **config) -> tuple[str, list[str]]:
    cfg = EvaluationConfig(**config)
    keys = [k for k in _keys(results) if k not in frozen]
    summary = summarize(results, keys, list(frozen), primary=primary, config=cfg, domain_of=lambda r: f"d-{r}")
    verdict = judge(summary, kind=kind, config=cfg)
    return verdict.decision, verdict.reasons


def test_a_sure_gain_is_promoted_with_the_reason() -> None:
    results = _results("scope_recall", [1.0] * 9 + [0.5], [0.0] * 8 + [1.0, 0.5])
    decision, reasons = _decide(results)
    assert decision == EvalDecision.PROMOTE
    assert reasons[0].startswith("pass: scope recall@k +0.800 [+0.500, +1.000]") and "excludes a loss" in reasons[0]


def test_a_possible_loss_keeps_the_baseline() -> None:
    results = _results("scope_recall", [1, 0, 1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 0, 1, 1, 0])
    decision, reasons = _decide(results)
    assert decision == EvalDecision.KEEP and "a loss is inside the interval" in reasons[0]
    # A loss of up to max_loss may be tolerated, but an average that is no better still keeps.
    decision, reasons = _decide(results, max_loss=1.0)
    assert decision == EvalDecision.KEEP and "no better on average" in reasons[0]


def test_a_gain_whose_interval_reaches_zero_keeps_the_baseline() -> None:
    # 2 of 10 tasks better, none worse: 10.7% of resamples hold neither, so the 95% interval
    # is [+0.000, +0.500]. The report calls it unclear; the gate must not promote it (the
    # demo once did, with max_loss = 0 read as "a lower end of 0 excludes a loss").
    results = _results("scope_recall", [1.0] * 2 + [0.0] * 8, [0.0] * 10)
    decision, reasons = _decide(results)
    assert decision == EvalDecision.KEEP
    assert "[+0.000, +0.500]" in reasons[0] and "reaches no gain" in reasons[0]
    # The same with a tolerated loss of 0.1: now the interval is on the right side of it.
    assert _decide(results, max_loss=0.1)[0] == EvalDecision.PROMOTE


def test_nothing_measurable_keeps_and_a_lower_is_better_metric_reads_the_other_way() -> None:
    same = _results("scope_recall", [0.5] * 6, [0.5] * 6)
    assert _decide(same)[0] == EvalDecision.KEEP
    fewer_steps = _results("steps_to_green", [1.0] * 6, [3.0] * 5 + [1.0])
    assert _decide(fewer_steps, primary="steps_to_green")[0] == EvalDecision.PROMOTE
    more_steps = _results("steps_to_green", [3.0] * 6, [1.0] * 6)
    assert _decide(more_steps, primary="steps_to_green")[0] == EvalDecision.KEEP


def test_a_drop_on_the_frozen_set_blocks_a_promotion() -> None:
    holdout = _results("scope_recall", [1.0] * 8, [0.0] * 8)
    frozen = _results("scope_recall", [0.0, 0.0], [1.0, 1.0], start=100)
    decision, reasons = _decide(holdout + frozen, frozen=_keys(frozen))
    assert decision == EvalDecision.KEEP
    assert any(r.startswith("FAIL: frozen set regressed beyond 0.05: scope recall@k -1.000") for r in reasons)
    tolerant = _decide(holdout + frozen, frozen=_keys(frozen), frozen_tolerance=1.0)
    assert tolerant[0] == EvalDecision.PROMOTE


def test_a_sure_regression_of_the_active_version_rolls_back_and_an_unsure_one_does_not() -> None:
    worse = _results("scope_recall", [0.0] * 8, [1.0] * 7 + [0.0])
    decision, reasons = _decide(worse, kind=EvalKind.REGRESSION)
    assert decision == EvalDecision.ROLLBACK and "in the whole interval" in reasons[0]
    unsure = _results("scope_recall", [0, 1, 0, 1, 1, 0], [1, 0, 1, 1, 0, 0])
    assert _decide(unsure, kind=EvalKind.REGRESSION)[0] == EvalDecision.KEEP
    decision, reasons = _decide(worse, kind=EvalKind.REGRESSION, rollback=False)
    assert decision == EvalDecision.KEEP and "reported only" in reasons[-1]


def test_only_tasks_measured_on_both_sides_are_paired() -> None:
    results = _results("symbol_recall", [1.0, None, 0.5], [0.0, 1.0, None])
    tasks, cand, base = pairs(results, "symbol_recall", _keys(results))
    assert len(tasks) == 1 and cand == [1.0] and base == [0.0]
    cfg = EvaluationConfig()
    summary = summarize(results, _keys(results), [], primary="symbol_recall", config=cfg, domain_of=str)
    entry = summary["metrics"]["symbol_recall"]
    assert entry["holdout"]["n"] == 1 and entry["unmeasured"] == {"candidate": 1, "baseline": 1}
    assert set(entry["by_repo"]) == {"lib"}
    assert judge(summary, kind=EvalKind.CANDIDATE, config=cfg).decision == EvalDecision.PROMOTE
    # No pair at all: nothing to promote on.
    none = summarize(_results("symbol_recall", [None], [1.0]), [("lib", f"{0:040x}")], [],
                     primary="symbol_recall", config=cfg, domain_of=str)
    assert judge(none, kind=EvalKind.CANDIDATE, config=cfg).decision == EvalDecision.KEEP
