"""Measures with their sample size and a 95% interval: Wilson for rates, bootstrap for means.

Wilson's score interval (E. B. Wilson, JASA 1927) stays inside [0, 1] and keeps its
coverage for small n and rates near 0 or 1, where the normal approximation does not; it
is the interval SWE-bench-style reports use for resolved rates. Means get a percentile
bootstrap (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13) with a
fixed seed, so the same DB always gives the same interval. Resampling n values with
replacement is drawing multinomial counts over the distinct values, which is how it is done
here when the values repeat (alignment scores, steps to green): the same bootstrap, at a
cost of B x distinct values instead of B x n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20240501


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
    """Percentile bootstrap 95% interval of the mean of ``values`` (non-empty)."""
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    if data.size == 1:
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    distinct, counts = np.unique(data, return_counts=True)
    if distinct.size * 4 <= data.size:
        draws = rng.multinomial(data.size, counts / data.size, size=resamples)
        means = draws @ distinct / data.size
    else:
        means = np.empty(resamples)
        step = max(1, 2_000_000 // data.size)  # bounded memory: a few MB per chunk
        for start in range(0, resamples, step):
            stop = min(resamples, start + step)
            idx = rng.integers(0, data.size, size=(stop - start, data.size))
            means[start:stop] = data[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def mean(name: str, values: Sequence[float]) -> Measure:
    if not len(values):
        return Measure(name, "mean", None, 0, None, None)
    lo, hi = bootstrap_mean(values)
    return Measure(name, "mean", float(sum(values)) / len(values), len(values), lo, hi)
