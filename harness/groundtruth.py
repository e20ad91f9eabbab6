"""What the real commit did, in the terms a plan uses: files, symbols, dependency order.

The commit is the teacher. Its gold patch (every non-test change) says which files a
plan should name; the hunks, mapped onto the symbols of the trees before and after, say
which functions, methods and classes; the import graph among the changed files says in
which order a plan should visit them (a file after the files it imports, because its
change usually uses theirs).

Conventions (the scorer and ``docs/alignment.md`` rely on them):

* ``files`` are the non-test *Python* files the commit adds, changes or deletes: what a
  plan can name (the index holds Python files only). Other non-test files (changelog,
  docs, config) are listed in ``other_files`` and not scored.
* A changed or deleted line names the innermost symbol around it *at the parent*; an added
  line names the innermost symbol around it *at the commit* (``pysource.symbols_touching``);
  a symbol that exists on one side only (added, deleted, renamed) is changed too.
  Module-level lines and blank lines name no symbol.
* ``order_pairs`` holds (a, b) when b imports a, directly or through other changed files;
  when two files depend on each other (an import cycle) neither order is required.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import pysource
from harness.edits import Hunk, diff_hunks, read_texts
from harness.git import git
from harness.plans import Plan, PlanStep
from harness.testrun import changed_files, is_test_file

TRUTH_VERSION = 1
PYTHON_SUFFIXES = (".py", ".pyi")

TestRule = Callable[[str], bool]


@dataclass
class GroundTruth:
    """The gold plan's facts. ``files`` come in dependency order (ties by path)."""

    files: list[str]
    symbols: dict[str, list[str]]
    order_pairs: list[tuple[str, str]]
    added: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    other_files: list[str] = field(default_factory=list)
    unparsed: list[str] = field(default_factory=list)  # a side that is not valid Python

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["order_pairs"] = [list(p) for p in self.order_pairs]
        return {"version": TRUTH_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroundTruth:
        data = {k: v for k, v in data.items() if k != "version"}
        data["order_pairs"] = [(str(a), str(b)) for a, b in data.get("order_pairs", [])]
        return cls(**data)


def is_python(path: str) -> bool:
    return path.endswith(PYTHON_SUFFIXES)


def _meaningful(text: str | None, lines: set[int]) -> set[int]:
    """The lines that are not blank: a blank line added between two methods says nothing
    about the class around them."""
    if text is None or not lines:
        return set()
    rows = text.split("\n")
    return {n for n in lines if 0 < n <= len(rows) and rows[n - 1].strip()}


def changed_symbols(
    old: str | None, new: str | None, hunks: list[Hunk]
) -> tuple[list[str], bool]:
    """Symbols one file's hunks change, and whether both existing sides parsed.

    Order: symbols of the commit's tree in source order, then those only the parent had.
    """
    def parse(text: str | None) -> tuple[list[pysource.Symbol], bool]:
        if text is None:
            return [], True
        try:
            return pysource.parse_symbols(text), True
        except SyntaxError:
            return [], False

    before, ok_old = parse(old)
    after, ok_new = parse(new)
    old_lines = _meaningful(old, set().union(*(h.old_lines for h in hunks)) if hunks else set())
    new_lines = _meaningful(new, set().union(*(h.new_lines for h in hunks)) if hunks else set())
    touched = set(pysource.symbols_touching(before, old_lines))
    touched |= set(pysource.symbols_touching(after, new_lines))
    names_before = {s.qualname for s in before}
    names_after = {s.qualname for s in after}
    if ok_old and ok_new:  # one side unreadable would make every symbol look added/deleted
        touched |= names_before ^ names_after
    out: dict[str, None] = {}
    for sym in (*after, *before):
        if sym.qualname in touched:
            out.setdefault(sym.qualname, None)
    return list(out), ok_old and ok_new


def _tree_python_files(repo_dir: Path | str, rev: str) -> list[str]:
    out = git(repo_dir, "ls-tree", "-r", "--name-only", "-z", rev)
    return [p for p in out.split("\0") if p and is_python(p)]


def _module_index(paths: list[str]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for p in paths:
        index.setdefault(pysource.module_name(p), []).append(p)
    return index


def _resolve(name: str, modules: dict[str, list[str]]) -> list[str]:
    """Files of the module ``name``: exact, else the one module whose name ends with it
    (``lib/pkg/m.py`` is module ``lib.pkg.m`` by path but imported as ``pkg.m``)."""
    if name in modules:
        return modules[name]
    tail = "." + name
    hits = [m for m in modules if m.endswith(tail)]
    return modules[hits[0]] if len(hits) == 1 else []


def import_edges(texts: dict[str, str], modules: dict[str, list[str]]) -> set[tuple[str, str]]:
    """(imported, importer) among the files in ``texts``; a file that does not parse has none.

    ``from pkg import x`` may import the submodule ``pkg.x`` or a name of ``pkg``: the
    first alternative that is a module of the tree wins (``pysource.import_candidates``).
    """
    edges: set[tuple[str, str]] = set()
    targets = set(texts)
    for path, text in texts.items():
        try:
            specs = pysource.parse_module(text).imports
        except SyntaxError:
            continue
        package = pysource.package_of(path)
        for spec in specs:
            for alternatives in pysource.import_candidates(spec, package):
                for name in alternatives:
                    found = _resolve(name, modules)
                    if found:
                        edges.update((dep, path) for dep in found if dep in targets and dep != path)
                        break
    return edges


def order_pairs_from(edges: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Transitive closure of the edges, without the pairs that also hold reversed."""
    after: dict[str, set[str]] = {}
    for a, b in edges:
        after.setdefault(a, set()).add(b)
    closure: set[tuple[str, str]] = set()
    for start, direct in after.items():
        stack, seen = list(direct), set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(after.get(node, ()))
        closure.update((start, b) for b in seen if b != start)
    return sorted(p for p in closure if (p[1], p[0]) not in closure)


def dependency_order(files: list[str], pairs: list[tuple[str, str]]) -> list[str]:
    """``files`` so that every pair's first file comes first; ties and cycles by path."""
    pending = sorted(set(files))
    before: dict[str, set[str]] = {f: set() for f in pending}
    for a, b in pairs:
        if a in before and b in before:
            before[b].add(a)
    out: list[str] = []
    while pending:
        ready = [f for f in pending if not (before[f] - set(out))]
        pick = ready[0] if ready else pending[0]
        out.append(pick)
        pending.remove(pick)
    return out


def ground_truth(
    repo_dir: Path | str, parent: str, sha: str, test_paths_rule: TestRule = is_test_file
) -> GroundTruth:
    """The files, symbols and dependency order of ``parent..sha``'s non-test change."""
    changes = changed_files(Path(repo_dir), parent, sha)
    source = [p for _, p in changes if not test_paths_rule(p)]
    py = [p for p in source if is_python(p)]
    other = sorted(p for p in source if not is_python(p))
    old = read_texts(repo_dir, parent, py, strict=False)
    new = read_texts(repo_dir, sha, py, strict=False)
    # A path that is no text file on either side (a symlink, a binary) is no plan target.
    py = [p for p in py if old[p] is not None or new[p] is not None]
    symbols: dict[str, list[str]] = {}
    unparsed: list[str] = []
    for path in py:
        hunks = diff_hunks(repo_dir, parent, sha, path) if old[path] is not None and new[path] is not None else []
        if old[path] is None or new[path] is None:
            # A whole file added or deleted: every line is changed.
            text = new[path] if new[path] is not None else old[path]
            n = len((text or "").split("\n"))
            hunks = [Hunk(0, n, 0, 0)] if new[path] is None else [Hunk(0, 0, 0, n)]
        syms, ok = changed_symbols(old[path], new[path], hunks)
        symbols[path] = syms
        if not ok:
            unparsed.append(path)
    # The import graph at the commit (at the parent for a deleted file).
    tree = _tree_python_files(repo_dir, sha)
    gone = [p for p in py if new[p] is None]
    modules = _module_index(tree + gone)
    texts = {p: (new[p] if new[p] is not None else old[p]) for p in py}
    edges = import_edges({p: t for p, t in texts.items() if t is not None}, modules)
    pairs = order_pairs_from(edges)
    files = dependency_order(py, pairs)
    return GroundTruth(
        files=files,
        symbols={p: symbols[p] for p in files},
        order_pairs=pairs,
        added=sorted(p for p in py if old[p] is None),
        deleted=sorted(gone),
        other_files=other,
        unparsed=sorted(unparsed),
    )


def truth_of_tests(
    repo_dir: Path | str, parent: str, sha: str, test_paths_rule: TestRule = is_test_file
) -> GroundTruth:
    """What the commit's *test* patch did, in the same terms: the test files it adds or
    changes, the test functions and classes, their import order. The gold of a test plan."""
    return ground_truth(repo_dir, parent, sha, lambda p: not test_paths_rule(p))


def gold_plan(truth: GroundTruth, *, kind: str = "step") -> Plan:
    """The plan the commit followed, one step per file in dependency order (source "gold").

    ``kind`` "step": each file's changed symbols; "meta" (the approach): the files and their
    order only; "test" (``truth`` from ``truth_of_tests``): each test file with the tests it
    adds or changes, every step a ``test`` step.
    """
    ids = {path: n for n, path in enumerate(truth.files, start=1)}
    steps = []
    for path in truth.files:
        action = "add" if path in truth.added else "delete" if path in truth.deleted else "modify"
        syms = truth.symbols.get(path, []) if kind != "meta" else []
        if kind == "test":
            what = ", ".join(syms) if syms else "the module's tests"
            description = f"{'add' if path in truth.added else 'change'} tests: {what}"
            action = "delete" if path in truth.deleted else "test"
        elif kind == "meta":
            description = f"{action} {path}"
        else:
            what = ", ".join(syms) if syms else "module-level code"
            description = f"{action} {what}"
        deps = sorted(ids[a] for a, b in truth.order_pairs if b == path and a in ids)
        steps.append(PlanStep(
            id=ids[path], file=path, symbols=list(syms), action=action,
            description=description, depends_on=deps,
        ))
    return Plan(steps=steps, kind=kind, source="gold")
