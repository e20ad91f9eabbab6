"""The Retrieve stage: from an instruction to the files and symbols most likely to change.

BM25 (FTS5's ``bm25()``) over the symbol index of the task's parent commit, with that
commit's own document statistics: paths, symbol names, signatures, docstrings and module
docstrings. Instructions are commit
messages written by people ("Fix `evolve()` on frozen slotted classes (#123)"), so the
query is built from their words and identifiers, split the way code is written, with
stopwords, issue numbers and commit hashes dropped, and every term quoted: nothing a
user types can reach FTS5's query syntax.

The result is plain data (``Retrieval.to_dict``) so each decision can be logged in the
raw DB and replayed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.index import SymbolIndex, word_tokens

MAX_TERMS = 48
MAX_TERM_CHARS = 64  # longer "words" are pasted data (hashes, base64), not names
SYMBOL_HITS = 200  # symbol hits fetched to aggregate into file scores (more than shown)

# How a file's score is made: its path hit, its module docstring hit, and its best symbol
# hits with halving weights (one strong symbol matters most; many weak ones add a little,
# so a huge file does not win by sheer size).
PATH_WEIGHT = 1.0
MODULE_WEIGHT = 0.5
SYMBOL_DECAY = (1.0, 0.5, 0.25)

_STOPWORD_TEXT = """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    either else even ever every few for from further get gets got had has have having he her
    here hers him his how however i if in into is isnt it its itself just let lets like
    make makes may me might more most much must my no nor not now of off on once one only
    or other our ours out over own per please same shall she should since so some still such
    than that the their theirs them then there these they this those though through thus to
    too under until up upon us use used uses using very via was we were what when where which
    while who whom whose why will with within without would yet you your yours
    self cls none true false py
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_HASHLIKE = re.compile(r"[0-9a-f]{7,40}")
_DOTTED = re.compile(r"[\w.]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Scored:
    """A retrieved file (``symbol == ""``) or symbol, with its score (higher is better)."""

    path: str
    score: float
    symbol: str = ""  # qualname, "" for a file
    kind: str = "file"  # "file" | "class" | "function" | "method"
    lineno: int = 0
    end_lineno: int = 0


@dataclass(frozen=True)
class Retrieval:
    files: list[Scored]
    symbols: list[Scored]
    query: str  # the FTS5 query that was run ("" when the instruction had no usable words)
    seconds: float
    terms: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Retrieval:
        return cls(
            files=[Scored(**f) for f in data["files"]],
            symbols=[Scored(**s) for s in data["symbols"]],
            query=data["query"],
            seconds=float(data["seconds"]),
            terms=list(data.get("terms", [])),
        )


def _keep(term: str) -> bool:
    if not 2 <= len(term) <= MAX_TERM_CHARS or term.isdigit() or term in STOPWORDS:
        return False
    # "Fixes abc1234" / "Revert 3f2a9c0d": a hash names a commit, not code.
    return not (_HASHLIKE.fullmatch(term) and any(ch.isdigit() for ch in term))


def query_terms(instruction: str, limit: int = MAX_TERMS) -> list[str]:
    """Search terms of an instruction: identifiers whole and split, stopwords dropped.

    Words that look like code (``snake_case``, ``CamelCase``, ``dotted.names``, anything in
    backticks) come first, so a long message body cannot push them past ``limit``.
    """
    codeish: dict[str, None] = {}
    plain: dict[str, None] = {}
    code_spans = " ".join(re.findall(r"`([^`]*)`", instruction))
    # dotted.names; [\w.]+ rather than \w+(?:\.\w+)+, which backtracks quadratically on long words
    code_spans += " " + " ".join(w for w in _DOTTED.findall(instruction) if "." in w.strip("."))
    code_words = {w for w, _ in word_tokens(code_spans)}
    for whole, parts in word_tokens(instruction):
        is_code = whole in code_words or len(parts) > 1
        bucket = codeish if is_code else plain
        for term in [whole, *([p for p in parts if p != whole])]:
            if _keep(term) and term not in codeish:
                bucket.setdefault(term, None)
    ordered = list(codeish) + [t for t in plain if t not in codeish]
    return ordered[:limit]


def build_query(terms: Iterable[str]) -> str:
    """An FTS5 query that ORs the terms, each a quoted string (safe for any text).

    Inside a quoted string FTS5 gives no character a meaning except ``"`` (doubled here)
    and NUL, which ends the C string early (control characters are dropped).
    """
    cleaned = (_CONTROL.sub(" ", t).strip() for t in terms)
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in cleaned if t)


K_FILES = 10  # files the pipeline retrieves per task (and the gold plan triples, alike)
K_SYMBOLS = 20


def retrieve(
    index: SymbolIndex,
    sha: str,
    instruction: str,
    k_files: int = K_FILES,
    k_symbols: int = K_SYMBOLS,
    *,
    exclude: Callable[[str], bool] | None = None,
) -> Retrieval:
    """Top files and symbols of commit ``sha`` for an instruction.

    ``exclude`` drops paths (e.g. test files, when planning source edits). A commit that
    is not indexed raises ``NotFound``; an instruction with no usable words returns an
    empty ``Retrieval``.
    """
    started = time.perf_counter()
    terms = query_terms(instruction)
    query = build_query(terms)
    if not query:
        return Retrieval([], [], "", time.perf_counter() - started, terms)
    hits = index.search(sha, query, k=max(SYMBOL_HITS, k_symbols, k_files * 5))

    def keep(path: str) -> bool:
        return exclude is None or not exclude(path)

    symbols: list[Scored] = []
    seen: set[tuple[str, str]] = set()
    per_file: dict[str, list[float]] = {}
    for hit in hits.symbols:  # best first
        assert hit.symbol is not None
        if not keep(hit.path) or (hit.path, hit.symbol.qualname) in seen:
            continue  # a property's getter and setter are one symbol to the planner
        seen.add((hit.path, hit.symbol.qualname))
        per_file.setdefault(hit.path, []).append(hit.score)
        symbols.append(Scored(hit.path, round(hit.score, 4), hit.symbol.qualname, hit.symbol.kind,
                              hit.symbol.lineno, hit.symbol.end_lineno))

    scores: dict[str, float] = {}
    for hit in hits.paths:
        if keep(hit.path):
            scores[hit.path] = scores.get(hit.path, 0.0) + PATH_WEIGHT * hit.score
    for hit in hits.modules:
        if keep(hit.path):
            scores[hit.path] = scores.get(hit.path, 0.0) + MODULE_WEIGHT * hit.score
    for path, best in per_file.items():
        scores[path] = scores.get(path, 0.0) + sum(w * s for w, s in zip(SYMBOL_DECAY, best, strict=False))

    files = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k_files]
    return Retrieval(
        files=[Scored(path, round(score, 4)) for path, score in files],
        symbols=symbols[:k_symbols],
        query=query,
        seconds=time.perf_counter() - started,
        terms=terms,
    )


def import_order(graph: dict[str, set[str]], paths: list[str]) -> list[str]:
    """``paths`` reordered so a file comes after the files (among them) it imports.

    Ties and cycles keep the given order (the retrieval rank), so the retrieval planner
    edits foundations first without losing the ranking.
    """
    rank = {p: i for i, p in enumerate(paths)}
    done: set[str] = set()
    order: list[str] = []

    def visit(path: str, active: set[str]) -> None:
        if path in done or path in active:
            return
        active.add(path)
        for dep in sorted(graph.get(path, set()) & rank.keys(), key=rank.__getitem__):
            visit(dep, active)
        active.discard(path)
        done.add(path)
        order.append(path)

    for path in paths:
        visit(path, set())
    return order
