"""Parse Python file versions, and re-parse a new version from the old one cheaply.

Mining's parse stage needs every changed Python file to parse before and after the
commit, and the functions and classes the diff touches. A full ``ast.parse`` of a 100 kB
module costs about 25 ms, more than the whole ``git log`` pass spends on a commit, and the
same big modules change in commit after commit. So a file is parsed in full once; a later
version of it re-parses only the pieces the diff touched (top-level statements, or
statements of one top-level class or function body), and a piece that fails is confirmed
by a full parse, so a rejection always carries the full parse's message. The symbols are
named as ``harness.pysource`` names them, next door: one answer to "which symbols does
this change touch" for mining, the index and the alignment scorer.
"""

from __future__ import annotations

import ast
import bisect
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Why that is sound: at a "cut" (the first line of a top-level statement that begins a
# line, or the line after one that ends a line, never after a backslash continuation) the
# tokenizer is at bracket depth 0, outside any string, and the next code is at column 0;
# ``ast.parse`` checks nothing across statements (a misplaced ``__future__`` import or a
# stray ``return`` are compile errors, not parse errors). So a file cut there parses if
# every piece does. In the body of a top-level class or function the same holds at the
# body's cuts, at the body's indentation: such a piece is parsed under a stand-in
# ``class _cra_:`` header and must stay inside it, at that indentation. A new signature
# or decorator is parsed over a stand-in ``pass`` body and must keep the name and kind.
# Body statements deleted with nothing in their place need no parse while the body keeps
# a statement after them. A run of top-level statements that ends where a body piece
# starts is merged with it, since the run may have closed that body. Files with tabs or
# form feeds in indentation, carriage returns or a non-UTF-8 coding line are always parsed
# in full. tests/test_pyparse.py checks all of it against full parses of edited files.

Span = tuple[int, int, str]  # first line, last line (1-based, inclusive), "Class.method"
Block = tuple[int, int, int, int]  # old lines [i1:i2] became new lines [j1:j2] (0-based)


@dataclass(frozen=True)
class Body:
    """The body of a top-level class or function: its statements can be re-parsed alone."""

    name: str
    first: int  # 0-based line of the def or class (decorators included)
    end: int  # 0-based, exclusive
    indent: int  # column of the body statements
    is_class: bool  # a function's body holds no symbols of its own
    rel_cuts: tuple[int, ...]  # lines where the body may be cut, counted from ``first``

    @property
    def cuts(self) -> list[int]:
        return [self.first + c for c in self.rel_cuts]


@dataclass
class PyFile:
    """One version of a Python file: does it parse, where are its defs and classes, and
    where a later version may be cut to re-parse only what changed."""

    lines: list[bytes]
    error: str | None
    spans: list[Span]  # sorted by first line, outer before inner
    cuts: list[int]  # 0-based lines where the module may be cut
    bodies: list[Body]  # sorted by first line
    incremental: bool  # False: later versions are always parsed in full
    _firsts: list[int] | None = field(default=None, repr=False)

    def span_firsts(self) -> list[int]:
        if self._firsts is None:
            self._firsts = [s[0] for s in self.spans]
        return self._firsts

    def symbols_at(self, lines: Iterable[int]) -> list[str]:
        """Qualnames of the innermost symbols around the 1-based ``lines``, in source
        order (``harness.pysource.symbols_touching``'s answer). Module-level lines name
        nothing."""
        firsts = self.span_firsts()
        hit: set[int] = set()
        for line in set(lines):
            # Spans nest or are disjoint, so the last one that starts before the line and
            # still contains it is the innermost.
            k = bisect.bisect_right(firsts, line) - 1
            while k >= 0 and self.spans[k][1] < line:
                if "." not in self.spans[k][2]:
                    k = -1  # a module-level symbol that ended: nothing earlier contains it
                    break
                k -= 1
            if k >= 0:
                hit.add(k)
        return list(dict.fromkeys(self.spans[k][2] for k in sorted(hit)))


_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
_ODD_INDENT = re.compile(rb"(?:^|\n) *[\t\f]")
_WRAPPER = b"class _cra_:\n"
_NESTED = ("body", "orelse", "finalbody", "handlers", "cases")
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_COMPOUND = tuple(
    getattr(ast, name)
    for name in ("If", "For", "AsyncFor", "While", "With", "AsyncWith", "Try", "TryStar", "Match")
    if hasattr(ast, name)
)


def _incremental_ok(data: bytes) -> bool:
    if b"\r" in data or ((b"\t" in data or b"\f" in data) and _ODD_INDENT.search(data)):
        return False
    for line in data.split(b"\n", 2)[:2]:
        m = _COOKIE.match(line)
        if m and m[1].lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
            return False  # pieces would be read as UTF-8, the file is not
    return True


def _first_line(st: ast.stmt) -> int:
    decorators = getattr(st, "decorator_list", None)
    return min(st.lineno, *(d.lineno for d in decorators)) if decorators else st.lineno


def _cuts(stmts: Sequence[ast.stmt], lines: list[bytes], shift: int) -> list[int]:
    """0-based lines where a file may be cut between the statements of one block.

    A cut is the first line of a statement that begins a line, or the line after one that
    ends a line, never right after a line ending in a backslash (which would continue into
    the next piece). ``shift`` turns the tree's 0-based lines into the file's.
    """
    out: set[int] = set()
    prev_end = 0
    for idx, st in enumerate(stmts):
        first = _first_line(st)
        if first > prev_end:
            out.add(first - 1 + shift)
        end = st.end_lineno or st.lineno
        if idx + 1 == len(stmts) or _first_line(stmts[idx + 1]) > end:
            out.add(end + shift)
        prev_end = max(prev_end, end)
    return _clean_cuts(out, lines)


def _clean_cuts(cuts: Iterable[int], lines: list[bytes]) -> list[int]:
    return sorted(
        c for c in cuts
        if c <= 0 or (c <= len(lines) and not lines[c - 1].rstrip(b"\n").endswith(b"\\"))
    )


def _spans(stmts: Sequence[ast.stmt], prefix: str, shift: int, out: list[Span]) -> None:
    """Append the symbols under ``stmts``, as ``harness.pysource`` names them: classes,
    and functions at module level or in a class; a closure is part of its function."""
    for st in stmts:
        if isinstance(st, _DEFS):
            name = prefix + st.name
            out.append((_first_line(st) + shift, (st.end_lineno or st.lineno) + shift, name))
            if isinstance(st, ast.ClassDef):
                _spans(st.body, name + ".", shift, out)
            continue
        if not isinstance(st, _COMPOUND):
            continue
        for fname in _NESTED:
            children = getattr(st, fname, None)
            if not children:
                continue
            if isinstance(children[0], ast.stmt):
                _spans(children, prefix, shift, out)
            else:  # except handlers, match cases
                for child in children:
                    _spans(child.body, prefix, shift, out)


def _bodies(stmts: Sequence[ast.stmt], lines: list[bytes], shift: int) -> list[Body]:
    out: list[Body] = []
    for st in stmts:
        if not isinstance(st, _DEFS) or not st.body:
            continue
        head = st.body[0]
        row = _first_line(head) - 1 + shift
        indent = head.col_offset
        if indent <= 0 or row >= len(lines) or lines[row][:indent].strip(b" "):
            continue  # the body starts on the header line: no place to cut
        first = _first_line(st) - 1 + shift
        out.append(
            Body(
                name=st.name,
                first=first,
                end=(st.end_lineno or st.lineno) + shift,
                indent=indent,
                is_class=isinstance(st, ast.ClassDef),
                rel_cuts=tuple(c - first for c in _cuts(st.body, lines, shift)),
            )
        )
    return out


def parse_python(source: bytes, path: str) -> tuple[ast.Module | None, str | None]:
    """(tree, None) when ``source`` parses with this Python, else (None, why).

    Bytes, not text, so a PEP 263 coding line is honoured. Warnings (invalid escapes in
    old code) are not errors: the code still runs.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(source, filename=path), None
    except SyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno else ""
        return None, f"{exc.msg}{where}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return None, str(exc) or type(exc).__name__


def parse_file(data: bytes, path: str) -> PyFile:
    """Parse one file version in full."""
    lines = data.splitlines(keepends=True)
    incremental = _incremental_ok(data)
    tree, error = parse_python(data, path)
    if tree is None:
        return PyFile(lines, error, [], [], [], incremental)
    spans: list[Span] = []
    _spans(tree.body, "", 0, spans)
    cuts, bodies = _cuts(tree.body, lines, 0), _bodies(tree.body, lines, 0)
    return PyFile(lines, None, spans, cuts, bodies, incremental)


@dataclass
class _Region:
    r0: int  # old lines [r0:r1] are re-parsed as one piece
    r1: int
    body: Body | None  # None: a run of top-level statements
    k0: int  # the first and last block inside
    k1: int
    header: bool = False  # only the decorators and the def/class line(s) of ``body``


def _cut_before(cuts: Sequence[int], x: int, default: int) -> int:
    k = bisect.bisect_right(cuts, x)
    return cuts[k - 1] if k else default


def _cut_after(cuts: Sequence[int], x: int, default: int) -> int:
    k = bisect.bisect_left(cuts, x)
    return cuts[k] if k < len(cuts) else default


def _top_region(old: PyFile, r0: int, r1: int, k0: int, k1: int) -> _Region:
    start, end = _cut_before(old.cuts, r0, 0), _cut_after(old.cuts, r1, len(old.lines))
    return _Region(start, end, None, k0, k1)


def _body_region(
    old: PyFile, firsts: list[int], i1: int, i2: int, k: int, back: bool
) -> _Region | None:
    """The piece of one body around old lines [i1:i2], if they lie in one. ``back``: start
    it one statement earlier (the new lines went on with the statement before)."""
    idx = bisect.bisect_right(firsts, i1) - 1
    if idx < 0:
        return None
    body = old.bodies[idx]
    rel = body.rel_cuts
    # Up to the next top-level cut after the body: git puts an appended method after the
    # blank lines that follow a class. Soundness does not hang on this limit: the piece
    # must parse inside the stand-in class, and it ends at a cut.
    limit = _cut_after(old.cuts, body.end + 1, len(old.lines)) if body.is_class else body.end
    if rel and body.first <= i1 < body.first + rel[0] and i2 <= body.first + rel[0]:
        if back:
            return None
        # A new signature or decorator: re-parse the header over a stand-in body.
        return _Region(body.first, body.first + rel[0], body, k, k, header=True)
    if not rel or i1 < body.first + rel[0] or i2 > limit:
        return None
    r0 = body.first + _cut_before(rel, i1 - body.first, rel[0])
    if back:
        starts = [c for c in body.cuts if c < r0 and _starts_statement(old.lines[c], body.indent)]
        if not starts:
            return None
        r0 = starts[-1]
    r1 = _cut_after(rel, i2 - body.first, limit - body.first) + body.first
    return _Region(r0, r1, body, k, k)


def _starts_statement(line: bytes, indent: int) -> bool:
    return not line[:indent].strip(b" ") and line[indent : indent + 1] not in (b" ", b"#", b"\n", b"")


# How far a block's piece reaches, raised each time a body piece fails to parse as one.
BODY, BODY_BACK, TOP = 0, 1, 2


def _regions(old: PyFile, blocks: list[Block], level: dict[int, int]) -> list[_Region]:
    """The pieces to re-parse; ``level`` says how far each block's piece must reach."""
    firsts = [b.first for b in old.bodies]
    regions: list[_Region] = []
    for k, (i1, i2, _, _) in enumerate(blocks):
        lvl = level.get(k, BODY)
        region = _body_region(old, firsts, i1, i2, k, lvl == BODY_BACK) if firsts and lvl < TOP else None
        regions.append(region or _top_region(old, i1, i2, k, k))
    regions.sort(key=lambda r: (r.r0, r.r1))
    merged: list[_Region] = []
    for region in regions:
        while merged and _clash(merged[-1], region):
            prev = merged.pop()
            r0, r1 = min(prev.r0, region.r0), max(prev.r1, region.r1)
            k0, k1 = min(prev.k0, region.k0), max(prev.k1, region.k1)
            if prev.body is not None and prev.body is region.body and prev.header == region.header:
                region = _Region(r0, r1, prev.body, k0, k1, prev.header)
            else:
                region = _top_region(old, r0, r1, k0, k1)
        merged.append(region)
    return merged


def _clash(prev: _Region, region: _Region) -> bool:
    """Must these two pieces (sorted) become one? When they overlap; when a run of
    top-level statements ends where a body piece starts (the body piece needs its body
    still open there, and the run may have closed it); or when one is a run of top-level
    statements that holds the body the other one is a piece of."""
    if region.r0 < prev.r1:
        return True
    if region.r0 > prev.r1:
        return False
    if prev.body is None and region.body is not None and not region.header:
        return True
    for top, inner in ((prev, region), (region, prev)):
        if top.body is None and inner.body is not None and top.r0 <= inner.body.first < top.r1:
            return True
    return False


def reparse(old: PyFile, data: bytes, blocks: Sequence[Block], path: str) -> PyFile:
    """Parse a new version of ``old`` whose changed lines are ``blocks`` (git's hunks).

    Only the pieces around the blocks are parsed; the result is what ``parse_file`` would
    return (the same verdict, the same spans), only cheaper.
    """
    if old.error is not None or not old.incremental or not _incremental_ok(data):
        return parse_file(data, path)
    new_lines = data.splitlines(keepends=True)
    ordered = sorted(blocks)
    n_old, n_new = len(old.lines), len(new_lines)
    if sum((j2 - j1) - (i2 - i1) for i1, i2, j1, j2 in ordered) != n_new - n_old or any(
        not (0 <= i1 <= i2 <= n_old and 0 <= j1 <= j2 <= n_new) for i1, i2, j1, j2 in ordered
    ):
        return parse_file(data, path)  # the blocks do not describe these two versions
    if not ordered:
        return old if new_lines == old.lines else parse_file(data, path)
    level: dict[int, int] = {}
    parsed: dict[tuple[int, int, str], ast.Module | None] = {}  # pieces met in earlier tries
    while True:
        result = _reparse_regions(old, new_lines, ordered, path, level, parsed)
        if isinstance(result, PyFile):
            return result
        if result is None or all(level.get(k, BODY) == TOP for k in result):
            return parse_file(data, path)
        for k in result:  # body pieces that did not parse as such: reach further
            level[k] = min(TOP, level.get(k, BODY) + 1)


_Piece = tuple[_Region, int, int, ast.Module]  # region, its new lines [ns:ne], its tree


def _has_code(lines: Sequence[bytes]) -> bool:
    return any(line.strip() and not line.lstrip().startswith(b"#") for line in lines)


def _reparse_regions(
    old: PyFile,
    new_lines: list[bytes],
    blocks: list[Block],
    path: str,
    level: dict[int, int],
    parsed: dict[tuple[int, int, str], ast.Module | None],
) -> PyFile | set[int] | None:
    """The new version from re-parsed pieces; or the blocks of the body pieces that did
    not parse as such (to retry as top-level pieces); or None when only a full parse can
    tell."""

    def parse(ns: int, ne: int, kind: str, source: bytes) -> ast.Module | None:
        key = (ns, ne, kind)
        if key not in parsed:
            parsed[key] = parse_python(source, path)[0]
        return parsed[key]

    pieces: list[_Piece] = []
    failed: set[int] = set()
    for region in _regions(old, blocks, level):
        ns = region.r0 + blocks[region.k0][2] - blocks[region.k0][0]
        ne = region.r1 + blocks[region.k1][3] - blocks[region.k1][1]
        body = region.body
        if body is None:
            tree = parse(ns, ne, "top", b"".join(new_lines[ns:ne]))
            if tree is None:
                return None  # a bigger piece would not parse either
        elif region.header:
            stand_in = b" " * body.indent + b"pass\n"
            tree = parse(ns, ne, "header", b"".join(new_lines[ns:ne]) + stand_in)
            node = tree.body[0] if tree is not None and len(tree.body) == 1 else None
            if (
                not isinstance(node, _DEFS)
                or isinstance(node, ast.ClassDef) != body.is_class
                or len(node.body) != 1
                or not isinstance(node.body[0], ast.Pass)
                or node.body[0].col_offset != body.indent
                or node.body[0].lineno != ne - ns + 1
            ):
                failed.update(range(region.k0, region.k1 + 1))
                continue
        elif not _has_code(new_lines[ns:ne]):
            # Statements deleted, nothing written instead: fine while the body keeps a
            # statement after them (its last line, then, is where it was).
            if region.r1 >= body.end:
                failed.update(range(region.k0, region.k1 + 1))
                continue
            tree = ast.Module(body=[], type_ignores=[])
        else:
            tree = parse(ns, ne, "body", _WRAPPER + b"".join(new_lines[ns:ne]))
            if (
                tree is None
                or len(tree.body) != 1
                or not isinstance(tree.body[0], ast.ClassDef)
                or tree.body[0].body[0].col_offset != body.indent
            ):
                failed.update(range(region.k0, region.k1 + 1))
                continue
        pieces.append((region, ns, ne, tree))
    if failed:
        return failed
    return _compose(old, new_lines, pieces)


def _compose(old: PyFile, new_lines: list[bytes], pieces: list[_Piece]) -> PyFile | set[int] | None:
    """The new version's spans, cuts and bodies: the old ones, shifted, outside the pieces;
    the pieces' own inside them."""
    segs: list[tuple[int, int, int]] = []  # old lines [a:b] kept as they were, and their shift
    a = d = 0
    for region, _, ne, _ in pieces:
        segs.append((a, region.r0, d))
        a, d = region.r1, ne - region.r1
    segs.append((a, len(old.lines), d))
    seg_starts = [s[0] for s in segs]

    def carry(points: Sequence[int]) -> list[int]:
        """Sorted old cut lines that lie in kept lines (edges included), shifted."""
        out: list[int] = []
        for idx, (a, b, d) in enumerate(segs):
            lo, hi = bisect.bisect_left(points, a), bisect.bisect_right(points, b)
            if idx and lo < hi and points[lo] == a:
                # Right after a piece: the line before it is new, check it again.
                out.extend(_clean_cuts([a + d], new_lines))
                lo += 1
            kept = points[lo:hi]
            out.extend([p + d for p in kept] if d else kept)
        return out

    def new_pos(x: int) -> int:
        return x + segs[bisect.bisect_right(seg_starts, x) - 1][2]

    piece_spans: list[list[Span]] = []
    # A top-level cut where a body piece starts (the line after a class, where methods
    # were appended) now lies inside that body.
    body_starts = {r.r0 for r, _, _, _ in pieces if r.body is not None and not r.header}
    cuts = carry([c for c in old.cuts if c not in body_starts])
    bodies: list[Body] = []
    touched: dict[tuple[str, int], list[tuple[int, _Piece]]] = {}
    # A new header may rename the def or class: its symbols take the new name.
    renamed: dict[tuple[str, int], str] = {
        (r.body.name, r.body.first): tree.body[0].name  # type: ignore[attr-defined]
        for r, _, _, tree in pieces
        if r.header and r.body is not None and tree.body[0].name != r.body.name  # type: ignore[attr-defined]
    }
    renames = [p for p in pieces if p[0].body and (p[0].body.name, p[0].body.first) in renamed]
    for idx, piece in enumerate(pieces):
        region, ns, _, tree = piece
        piece_spans.append([])
        if region.body is None:
            _spans(tree.body, "", ns, piece_spans[-1])
            cuts.extend(_cuts(tree.body, new_lines, ns))
            bodies.extend(_bodies(tree.body, new_lines, ns))
        else:
            key = (region.body.name, region.body.first)
            touched.setdefault(key, []).append((idx, piece))
            if region.body.is_class and not region.header and tree.body:
                name = renamed.get(key, region.body.name)
                _spans(tree.body[0].body, name + ".", ns - 1, piece_spans[-1])

    new_spans: dict[tuple[str, int], Span] = {}
    for body in old.bodies:
        a, b, d = segs[bisect.bisect_right(seg_starts, body.first) - 1]
        own = touched.get((body.name, body.first))
        if own is None:
            if a <= body.first < b and body.end <= b:
                bodies.append(Body(body.name, body.first + d, body.end + d, body.indent,
                                   body.is_class, body.rel_cuts))
            continue  # else inside a re-parsed run of top-level statements: re-derived there
        body_cuts = carry(body.cuts)
        first, end, header_at = body.first + d, -1, -1
        for idx, (region, ns, _, tree) in own:
            if region.header:  # the body's statements are as they were
                first, header_at = ns + _first_line(tree.body[0]) - 1, idx
                continue
            if not tree.body:
                continue  # statements deleted: nothing to add
            wrapper = tree.body[0]
            body_cuts.extend(_cuts(wrapper.body, new_lines, ns - 1))
            if region.r1 >= body.end:  # this piece holds the body's last line
                end = ns + (wrapper.end_lineno or wrapper.lineno) - 1
        if end < 0:
            end = new_pos(body.end - 1) + 1
        # An old cut at an insertion point has two images; the one after statements
        # inserted at top level, past the body's new end, is not in the body any more.
        inside = sorted({c - first for c in body_cuts if first < c <= end})
        name = renamed.get((body.name, body.first), body.name)
        bodies.append(Body(name, first, end, body.indent, body.is_class, tuple(inside)))
        if header_at >= 0:
            piece_spans[header_at].insert(0, (first + 1, end, name))
        else:
            new_spans[(body.name, body.first)] = (first + 1, end, name)

    # Spans in line order without sorting: each kept run, then the piece that follows it.
    spans: list[Span] = []
    firsts = old.span_firsts()
    for idx, (a, b, d) in enumerate(segs):
        lo, hi = bisect.bisect_left(firsts, a + 1), bisect.bisect_right(firsts, b)
        for first, last, name in old.spans[lo:hi]:
            replaced = new_spans.get((name, first - 1))
            if replaced is not None:
                spans.append(replaced)  # a body with re-parsed statements
                continue
            if last > b:
                return None  # reaches into a piece: cannot happen for a file that parsed
            for r, _, _, _ in renames:
                body = r.body
                if body and body.first < first <= body.end and name.startswith(body.name + "."):
                    name = renamed[(body.name, body.first)] + name[len(body.name):]
            spans.append((first + d, last + d, name) if d else (first, last, name))
        if idx < len(pieces):
            spans.extend(piece_spans[idx])
    bodies.sort(key=lambda b: b.first)
    return PyFile(new_lines, None, spans, sorted(set(cuts)), bodies, True)
