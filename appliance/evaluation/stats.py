"""Paired statistics: bootstrap intervals on differences, pass@k, the holdout size an effect needs.

Candidate and baseline run on the same tasks, so each task gives a *pair* of values and
what varies between the two sides is the difference ``d_i = candidate_i - baseline_i``.
The interval on the mean difference comes from the paired percentile bootstrap (Efron &
Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13): resample the tasks with
replacement, both sides together, and take the percentiles of the resampled mean
differences. Resampling tasks, not runs, is what makes it an evaluation of the agent on
*tasks like these* (Miller, "Adding Error Bars to Evals", 2024, recommends exactly this
clustered, paired form for LLM evaluations). A fixed seed gives the same interval for the
same results.

pass@k is the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
Trained on Code", the HumanEval paper): with ``n`` runs of a task of which ``c`` passed,
``1 - C(n-c, k) / C(n, k)``.

The holdout size a difference of ``effect`` needs, at two-sided level ``alpha`` and the
given power, is the paired z-test's ``n = ((z_{1-alpha/2} + z_{power}) * sd / effect)^2``
(e.g. Julious, *Sample Sizes for Clinical Trials*, 2010, ch. 3), ``sd`` being the standard
deviation of one task's difference. With ``sd = 0.5`` (the largest a [0, 1] metric can
have) and ``effect = 0.1`` that is 197 tasks: small holdouts only see large effects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from appliance.training.stats import resampled_means


@dataclass(frozen=True)
class Difference:
    """Candidate against baseline on ``n`` paired tasks: both means and the mean difference
    ``diff`` (candidate - baseline) with its ``level`` interval ``[low, high]``.

    ``better`` is the share of bootstrap resamples whose mean difference is above zero (for a
    metric where higher is better, how often the candidate came out ahead).
    """

    n: int
    candidate: float
    baseline: float
    diff: float
    low: float
    high: float
    level: float
    better: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def paired_bootstrap(
    candidate: Sequence[float], baseline: Sequence[float], *, resamples: int = 2000, level: float = 0.95,
    seed: int = 0,
) -> Difference | None:
    """The paired percentile-bootstrap interval of ``mean(candidate - baseline)``.

    ``candidate[i]`` and ``baseline[i]`` are the two sides' values on task ``i``; None when
    there is no pair. One task gives a point (``low == high == diff``): an interval needs
    variation to say anything, and one task has none.
    """
    if len(candidate) != len(baseline):
        raise ValueError(f"unpaired values: {len(candidate)} candidate, {len(baseline)} baseline")
    n = len(candidate)
    if n == 0:
        return None
    cand = np.asarray(candidate, dtype=float)
    base = np.asarray(baseline, dtype=float)
    d = cand - base
    diff = float(d.mean())
    if n == 1 or np.all(d == d[0]):
        return Difference(n, float(cand.mean()), float(base.mean()), diff, diff, diff, level,
                          1.0 if diff > 0 else 0.0)
    rng = np.random.default_rng(seed)
    means = resampled_means(d, resamples, rng)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Difference(n, float(cand.mean()), float(base.mean()), diff, float(low), float(high), level,
                      float((means > 0).mean()))


def mean_interval(values: Sequence[float], *, resamples: int = 2000, level: float = 0.95,
                  seed: int = 0) -> tuple[float, float, float] | None:
    """(mean, low, high): the percentile-bootstrap interval of one side's mean, for plots."""
    if not values:
        return None
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) == 1 or np.all(v == v[0]):
        return mean, mean, mean
    means = resampled_means(v, resamples, np.random.default_rng(seed))
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return mean, float(low), float(high)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` runs of which ``c`` passed (Chen et al. 2021)."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass@k needs 0 <= c <= n and k >= 1 (n={n}, c={c}, k={k})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} runs, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def needed_holdout(effect: float, *, sd: float = 0.5, level: float = 0.95, power: float = 0.8) -> int:
    """Tasks a paired comparison needs to detect a mean difference of ``effect``."""
    if not 0 < effect <= 1 or sd <= 0:
        raise ValueError("effect must be in (0, 1] and sd positive")
    z = NormalDist().inv_cdf
    return math.ceil(((z(1 - (1 - level) / 2) + z(power)) * sd / effect) ** 2)


def detectable_effect(n: int, *, sd: float = 0.5, level: float = 0.95, power: float = 0.8) -> float | None:
    """The smallest mean difference ``n`` paired tasks detect at that level and power."""
    if n < 1:
        return None
    z = NormalDist().inv_cdf
    return (z(1 - (1 - level) / 2) + z(power)) * sd / math.sqrt(n)
