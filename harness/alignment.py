"""Plan-diff structural alignment: how close a plan came to what the real commit did.

It isolates plan quality from coding quality: a plan is scored against the commit's
ground truth (``harness.groundtruth``) before, and whatever, any code is written. Three
parts, each in [0, 1]:

* **files**: precision, recall and F1 of the planned files against the non-test Python
  files the commit changed. A file the commit did not touch (or that does not exist at
  all: a hallucination) costs precision; a changed file the plan misses costs recall.
* **symbols**: the same over (file, symbol) pairs. A planned symbol matches a changed
  one in the same file when the names are equal or one is a dotted tail of the other
  (``parse`` matches ``Parser.parse``); each side matches at most once.
* **order**: of the dependency pairs (a before b) whose two files the plan both names,
  the share the plan visits in that order (steps in execution order, ``depends_on``
  first). When no such pair applies the order is 1.0: nothing was done out of order.

Combined: ``0.5 * file F1 + 0.35 * symbol F1 + 0.15 * order``, except that the order part
counts only when the plan names at least one changed file (an empty or all-wrong plan has
no order worth crediting, and scores 0). Empty against empty counts as perfect (1.0);
empty against non-empty as 0. Steps with action ``test`` are left out: the gold patch
never contains tests. ``docs/alignment.md`` works through examples.

The spec's three plan kinds are scored the same way against their own truth
(``score_plan_kind``): a step plan as above; a meta plan (the approach: which modules, in
which order) on files and order only (``0.85 * file F1 + 0.15 * order``); a test plan
against the ground truth of the commit's *test* patch (which test files and test
functions it adds or changes), its ``test`` steps included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from appliance.errors import ConfigError
from harness.groundtruth import GroundTruth
from harness.plans import Plan

SCORE_VERSION = 1


@dataclass(frozen=True)
class Weights:
    """How the three parts make one score; they must be non-negative and sum to 1."""

    file: float = 0.5
    symbol: float = 0.35
    order: float = 0.15

    def __post_init__(self) -> None:
        parts = (self.file, self.symbol, self.order)
        if any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-9:
            raise ConfigError(f"alignment weights must be >= 0 and sum to 1, got {parts}")


DEFAULT_WEIGHTS = Weights()
META_WEIGHTS = Weights(file=0.85, symbol=0.0, order=0.15)
KIND_WEIGHTS = {"step": DEFAULT_WEIGHTS, "meta": META_WEIGHTS, "test": DEFAULT_WEIGHTS}
"""How each plan kind's score is made: an approach names no symbols, so they do not count."""


@dataclass
class PRF:
    """Precision, recall, F1 of one prediction against one truth, with the evidence."""

    precision: float
    recall: float
    f1: float
    matched: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # predicted, not true
    missed: list[str] = field(default_factory=list)  # true, not predicted


def prf(n_pred: int, n_true: int, n_match: int) -> tuple[float, float, float]:
    """P, R, F1 with the conventions above: both empty is 1, one empty side is 0."""
    if n_pred == 0 and n_true == 0:
        return 1.0, 1.0, 1.0
    p = n_match / n_pred if n_pred else 0.0
    r = n_match / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


@dataclass
class AlignmentScore:
    """Every part of one plan's score; ``score`` is the combined one."""

    files: PRF
    symbols: PRF
    order: float
    order_checked: int  # dependency pairs whose two files the plan names
    order_violated: list[tuple[str, str]]  # of those, the ones visited b before a
    score: float
    weights: Weights = DEFAULT_WEIGHTS
    unknown_files: list[str] = field(default_factory=list)  # not in the repo at all

    @property
    def file_f1(self) -> float:
        return self.files.f1

    @property
    def symbol_f1(self) -> float:
        return self.symbols.f1

    def to_dict(self) -> dict[str, Any]:
        def part(x: PRF) -> dict[str, Any]:
            return {"precision": round(x.precision, 4), "recall": round(x.recall, 4), "f1": round(x.f1, 4),
                    "matched": x.matched, "extra": x.extra, "missed": x.missed}

        return {
            "version": SCORE_VERSION,
            "score": round(self.score, 4),
            "files": part(self.files),
            "symbols": part(self.symbols),
            "order": round(self.order, 4),
            "order_checked": self.order_checked,
            "order_violated": [list(p) for p in self.order_violated],
            "unknown_files": self.unknown_files,
            "weights": {"file": self.weights.file, "symbol": self.weights.symbol, "order": self.weights.order},
        }


def _norm_path(path: str) -> str:
    path = path.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def _norm_symbol(sym: str) -> str:
    sym = sym.strip().split("::")[-1].strip()
    for prefix in ("async def ", "def ", "class "):
        sym = sym.removeprefix(prefix)
    if "(" in sym:
        sym = sym[: sym.index("(")]
    return sym.strip().strip(".")


def _tail_of(short: str, long: str) -> bool:
    return long == short or long.endswith("." + short)


def match_symbols(planned: list[str], true: list[str]) -> list[tuple[str, str]]:
    """(planned, true) matches in one file: exact names first, then dotted tails."""
    left = [p for p in dict.fromkeys(_norm_symbol(s) for s in planned) if p]
    free = list(dict.fromkeys(true))
    pairs: list[tuple[str, str]] = []
    for p in list(left):
        if p in free:
            pairs.append((p, p))
            free.remove(p)
            left.remove(p)
    for p in list(left):
        for t in free:
            if _tail_of(p, t) or _tail_of(t, p):
                pairs.append((p, t))
                free.remove(t)
                left.remove(p)
                break
    return pairs


def score_plan(
    plan: Plan,
    truth: GroundTruth,
    *,
    weights: Weights = DEFAULT_WEIGHTS,
    known_files: Iterable[str] | None = None,
    include_tests: bool = False,
) -> AlignmentScore:
    """Score one plan against the commit's ground truth. Never raises on odd plans:
    repeated steps, unknown files, symbols in the wrong file all just score.

    ``known_files`` (the index's files) only sorts hallucinated files into
    ``unknown_files`` for diagnosis; they cost the same precision as any wrong file.
    ``include_tests`` counts ``test`` steps too (a test plan, scored against the test patch).
    """
    planned_files = list(dict.fromkeys(
        _norm_path(f) for f in plan.files(include_tests=include_tests) if f.strip()))
    true_files = list(dict.fromkeys(truth.files))
    true_set = set(true_files)
    matched = [f for f in planned_files if f in true_set]
    fp, fr, ff = prf(len(planned_files), len(true_files), len(matched))
    files = PRF(fp, fr, ff, matched=matched, extra=[f for f in planned_files if f not in true_set],
                missed=[f for f in true_files if f not in set(planned_files)])

    planned_syms: dict[str, list[str]] = {}
    for f, syms in plan.symbols(include_tests=include_tests).items():
        planned_syms.setdefault(_norm_path(f), []).extend(syms)
    n_pred = sum(len({s for s in (_norm_symbol(x) for x in v) if s}) for v in planned_syms.values())
    n_true = sum(len(set(v)) for v in truth.symbols.values())
    sym_matched: list[str] = []
    sym_extra: list[str] = []
    sym_missed: list[str] = []
    for f in sorted(set(planned_syms) | set(truth.symbols)):
        planned = planned_syms.get(f, [])
        true = truth.symbols.get(f, [])
        pairs = match_symbols(planned, true)
        hit_p = {p for p, _ in pairs}
        hit_t = {t for _, t in pairs}
        sym_matched += [f"{f}::{t}" for _, t in pairs]
        sym_extra += [f"{f}::{p}" for p in dict.fromkeys(_norm_symbol(s) for s in planned) if p and p not in hit_p]
        sym_missed += [f"{f}::{t}" for t in dict.fromkeys(true) if t not in hit_t]
    sp, sr, sf = prf(n_pred, n_true, len(sym_matched))
    symbols = PRF(sp, sr, sf, matched=sym_matched, extra=sym_extra, missed=sym_missed)

    position = {f: i for i, f in enumerate(planned_files)}
    checked = [(a, b) for a, b in truth.order_pairs if a in position and b in position]
    violated = [(a, b) for a, b in checked if position[a] > position[b]]
    order = 1.0 - len(violated) / len(checked) if checked else 1.0

    order_part = weights.order * order if matched or (not planned_files and not true_files) else 0.0
    score = weights.file * ff + weights.symbol * sf + order_part
    unknown = []
    if known_files is not None:
        known = {_norm_path(k) for k in known_files}
        unknown = [f for f in files.extra if f not in known]
    return AlignmentScore(
        files=files, symbols=symbols, order=order, order_checked=len(checked),
        order_violated=violated, score=min(1.0, max(0.0, score)), weights=weights, unknown_files=unknown,
    )


def score_plan_kind(plan: Plan, truth: GroundTruth, *, known_files: Iterable[str] | None = None) -> AlignmentScore:
    """Score a plan the way its kind asks (``KIND_WEIGHTS``): ``truth`` is the commit's ground
    truth for a step or meta plan, the ground truth of its test patch for a test plan
    (``harness.groundtruth.truth_of_tests``)."""
    return score_plan(plan, truth, weights=KIND_WEIGHTS[plan.kind], known_files=known_files,
                      include_tests=plan.kind == "test")
