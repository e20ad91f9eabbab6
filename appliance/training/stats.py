"""Measures with their sample size and a 95% interval: Wilson for rates, bootstrap for means.

Wilson's score interval (E. B. Wilson, JASA 1927) stays inside [0, 1] and keeps its
coverage for small n and rates near 0 or 1, where the normal approximation does not; it
is the interval SWE-bench-style reports use for resolved rates. Means get a percentile
bootstrap (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13) with a
fixed seed, so the same DB always gives the same interval; past ``NORMAL_ABOVE`` values the
normal interval it converges to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20240501
NORMAL_ABOVE = 2000  # values; see bootstrap_mean


@dataclass(frozen=True)
class Measure:
    """One figure: ``value`` (None without data) over ``n`` samples, 95% interval [lo, hi].

    ``kind`` is ``rate`` (``count`` of ``n`` events, Wilson) or ``mean`` (bootstrap).
    """

    name: str
    kind: str
    value: float | None
    n: int
    lo: float | None
    hi: float | None
    count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("value", "lo", "hi"):
            if out[key] is not None:
                out[key] = round(out[key], 4)
        return out


def wilson(count: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``count`` successes in ``n`` trials; (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = count / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def rate(name: str, count: int, n: int) -> Measure:
    if n <= 0:
        return Measure(name, "rate", None, 0, None, None, 0)
    lo, hi = wilson(count, n)
    return Measure(name, "rate", count / n, n, lo, hi, count)


def bootstrap_mean(values: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% interval of the mean of ``values`` (non-empty): percentile bootstrap up to
    ``NORMAL_ABOVE`` values, the normal interval beyond.

    Past a few thousand values the bootstrap distribution of a mean is normal to within its
    own Monte Carlo error (the central limit theorem it rests on), and resampling 100,000
    logged values a thousand times would cost seconds per measure.
    """
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    if data.size == 1:
        return float(data[0]), float(data[0])
    if data.size > NORMAL_ABOVE:
        half = Z95 * float(data.std()) / math.sqrt(data.size)
        return float(data.mean()) - half, float(data.mean()) + half
    lo, hi = np.percentile(resampled_means(data, resamples, np.random.default_rng(seed)), [2.5, 97.5])
    return float(lo), float(hi)


def resampled_means(values: Any, resamples: int, rng: Any) -> Any:
    """``resamples`` bootstrap means of ``values`` (a 1-D numpy array), as a numpy array.

    The one bootstrap kernel of cra: LogAnalysisAPI's intervals and the evaluation's paired
    differences (``appliance.evaluation.stats``) both resample through it.
    """
    import numpy as np

    # Drawing n indices with replacement is drawing multinomial counts over the n values: the
    # same bootstrap at a cost of resamples x n either way, without an n x resamples index array.
    n = len(values)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)
    return counts @ values / n


def mean(name: str, values: Sequence[float]) -> Measure:
    if not len(values):
        return Measure(name, "mean", None, 0, None, None)
    lo, hi = bootstrap_mean(values)
    return Measure(name, "mean", float(sum(values)) / len(values), len(values), lo, hi)
