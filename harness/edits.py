"""The Execute stage's edit format: whole search/replace blocks, never snippets to stitch.

A block names a file, the exact lines to find and the lines to put instead::

    pkg/mod.py
    <<<<<<< SEARCH
    def f():
        return 1
    =======
    def f():
        return 2
    >>>>>>> REPLACE

An empty SEARCH creates the file (or appends to it when it exists); deleting a file is
its own block (``<<<<<<< DELETE`` / ``>>>>>>> DELETE`` under the path). The same format
is what the model writes, what ``gold_edits`` derives from a real commit for training,
and what the executor applies, so the training target and the inference output never
drift apart.

Why this shape: a model that rewrites whole regions it has to *quote* cannot silently
edit the wrong place, and a block that does not match is a clear, recordable
``apply_error`` the repair loop can show back to the model. Application is all or
nothing per call: when one block fails, no file is written.

The format is line based: a change to nothing but a file's final newline cannot be
expressed (``gold_edits`` raises ``EditError`` for such a commit).
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from appliance.errors import BadInput, Failed
from harness.git import git_bytes
from harness.pysource import coding_of_text, decode_source, source_encoding

SEARCH = "<<<<<<< SEARCH"
DIVIDER = "======="
REPLACE = ">>>>>>> REPLACE"
DELETE_START = "<<<<<<< DELETE"
DELETE_END = ">>>>>>> DELETE"

_SEARCH_RE = re.compile(r"^<{5,9} ?SEARCH\s*$")
_DIVIDER_RE = re.compile(r"^={5,9}\s*$")
_REPLACE_RE = re.compile(r"^>{5,9} ?REPLACE\s*$")
_DELETE_START_RE = re.compile(r"^<{5,9} ?DELETE\s*$")
_DELETE_END_RE = re.compile(r"^>{5,9} ?DELETE\s*$")
_FENCE_RE = re.compile(r"^\s*(```|~~~)")
_PATHISH = re.compile(r"^[\w.\-/+@~]+$")
PYTHON_SOURCE = (".py", ".pyi")


class EditFormatError(BadInput):
    """Model output that has blocks but cannot be read as blocks (unterminated, no path)."""


class EditError(Failed):
    """A commit whose change the block format cannot reproduce (binary, not UTF-8, ...)."""


@dataclass(frozen=True)
class Edit:
    """One block. ``search`` and ``replace`` are whole lines, each ending in ``\\n``."""

    path: str
    search: str
    replace: str
    delete: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- rendering


def _as_lines(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def render_edit(edit: Edit) -> str:
    if edit.delete:
        return f"{edit.path}\n{DELETE_START}\n{DELETE_END}\n"
    return f"{edit.path}\n{SEARCH}\n{_as_lines(edit.search)}{DIVIDER}\n{_as_lines(edit.replace)}{REPLACE}\n"


def render_edits(edits: Iterable[Edit]) -> str:
    """The blocks as a model should write them, separated by blank lines."""
    return "\n".join(render_edit(e) for e in edits)


# --------------------------------------------------------------------------- parsing


def _clean_path(line: str) -> str:
    """The path a line before a block names: markup, labels and prose stripped."""
    text = line.strip()
    text = re.sub(r"^#+\s*", "", text)
    text = text.strip("`*'\" ")
    text = text.rstrip(":").strip("`*'\" ")
    if not text:
        return ""
    if _PATHISH.match(text):
        return text.removeprefix("./")
    # "File: pkg/mod.py", "Here is the change to pkg/mod.py": the last path-like token.
    tokens = [t.strip("`*'\":,()") for t in text.split()]
    for token in reversed(tokens):
        if _PATHISH.match(token) and ("/" in token or "." in token) and not token.endswith("."):
            return token.removeprefix("./")
    return ""


def _path_before(lines: list[str], start: int, floor: int) -> str:
    """The path on the nearest meaningful line above ``start`` (not below ``floor``)."""
    i = start - 1
    while i >= floor:
        line = lines[i]
        if line.strip() and not _FENCE_RE.match(line):
            return _clean_path(line)
        i -= 1
    return ""


def _pick_divider(section: list[str]) -> int | None:
    """Index of the divider inside a block's body: an exact ``=======`` wins over a
    lenient one (a model may write six or eight), the first wins among equals."""
    exact = [i for i, ln in enumerate(section) if ln.rstrip() == DIVIDER]
    if exact:
        return exact[0]
    loose = [i for i, ln in enumerate(section) if _DIVIDER_RE.match(ln)]
    return loose[0] if loose else None


def parse_edits(text: str) -> list[Edit]:
    """Every block in a model's answer, in order; everything outside blocks is ignored.

    Prose, markdown fences around blocks and ``if __name__ == "__main__":`` code written
    between blocks are output pollution and never reach a file. A block without a path
    line reuses the previous block's path. Raises ``EditFormatError`` for a block that
    is opened and never closed, has no divider, or names no file at all; returns ``[]``
    when there is no block.
    """
    if "\r\n" in text and text.count("\r\n") == text.count("\n"):
        text = text.replace("\r\n", "\n")  # an answer written with Windows line ends
    lines = text.split("\n")
    edits: list[Edit] = []
    last_path = ""
    floor = 0
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        if _DELETE_START_RE.match(line):
            path = _path_before(lines, i, floor) or last_path
            if not path:
                raise EditFormatError(f"block {len(edits) + 1} (line {i + 1}) names no file",
                                      hint="put the file's path on the line above the block")
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j >= len(lines) or not _DELETE_END_RE.match(lines[j].rstrip("\r")):
                raise EditFormatError(f"delete block {len(edits) + 1} (line {i + 1}) is not closed by {DELETE_END!r}")
            edits.append(Edit(path, "", "", delete=True))
            last_path, floor, i = path, j + 1, j + 1
            continue
        if not _SEARCH_RE.match(line):
            i += 1
            continue
        path = _path_before(lines, i, floor) or last_path
        if not path:
            raise EditFormatError(f"block {len(edits) + 1} (line {i + 1}) names no file",
                                  hint="put the file's path on the line above the block")
        j = i + 1
        while j < len(lines) and not _REPLACE_RE.match(lines[j].rstrip("\r")):
            if _SEARCH_RE.match(lines[j].rstrip("\r")):
                raise EditFormatError(f"block {len(edits) + 1} (line {i + 1}) is not closed before the next block",
                                      hint=f"end every block with {REPLACE!r}")
            j += 1
        if j >= len(lines):
            raise EditFormatError(f"block {len(edits) + 1} (line {i + 1}) is not closed",
                                  hint=f"end every block with {REPLACE!r}")
        body = lines[i + 1 : j]
        k = _pick_divider(body)
        if k is None:
            raise EditFormatError(f"block {len(edits) + 1} (line {i + 1}) has no {DIVIDER!r} divider")
        search = "".join(ln + "\n" for ln in body[:k])
        replace = "".join(ln + "\n" for ln in body[k + 1 :])
        edits.append(Edit(path, search, replace))
        last_path, floor, i = path, j + 1, j + 1
    return edits


# --------------------------------------------------------------------------- applying


@dataclass
class ApplyError:
    """Why one block could not be applied; ``block`` is 1-based."""

    block: int
    path: str
    reason: str

    def __str__(self) -> str:
        return f"block {self.block} ({self.path}): {self.reason}"


@dataclass
class ApplyResult:
    """What ``apply_edits`` did. ``ok`` False means no file was written."""

    ok: bool
    files: list[str] = field(default_factory=list)  # written, created or deleted
    errors: list[ApplyError] = field(default_factory=list)
    fuzzy: list[int] = field(default_factory=list)  # blocks matched only whitespace-tolerantly
    refused: list[str] = field(default_factory=list)  # the guard's reasons (oracle tampering)
    suspicious: list[str] = field(default_factory=list)  # what the added lines reach for

    @property
    def apply_error(self) -> str | None:
        """One line for the run record and the repair prompt, or None when all applied."""
        parts = [str(e) for e in self.errors]
        if self.refused:
            parts.append("refused, the edits touch what grades them: " + "; ".join(self.refused))
        return "; ".join(parts) or None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "files": self.files, "errors": [asdict(e) for e in self.errors],
                "fuzzy": self.fuzzy, "refused": self.refused, "suspicious": self.suspicious,
                "apply_error": self.apply_error}


Guard = Callable[[Mapping[str, "str | None"], Mapping[str, "str | None"]], list[str]]
"""guard(before, after) -> reasons to refuse: {path: text, None when absent} of the files
the blocks change, before and after. See ``harness.oracle_guard``."""


def _split(text: str) -> list[str]:
    """Lines with their ``\\n`` kept; only ``\\n`` splits (a form feed is not a line end)."""
    if not text:
        return []
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def _body(line: str) -> str:
    return line.removesuffix("\n")


def _lead(s: str) -> str:
    return s[: len(s) - len(s.lstrip())]


def _find(content: list[str], search: list[str], same: Any) -> list[int]:
    n = len(search)
    return [i for i in range(len(content) - n + 1) if all(same(content[i + j], search[j]) for j in range(n))]


def _indent_shift(content: list[str], search: list[str], at: int) -> tuple[str, str] | None:
    """(mode, delta) when file lines equal search lines but for one uniform indent shift."""
    shift: tuple[str, str] | None = None
    for j, s in enumerate(search):
        f = content[at + j]
        if not s.strip():
            if f.strip():
                return None
            continue
        if f.strip() != s.strip():
            return None
        fl, sl = _lead(f), _lead(s)
        if fl.endswith(sl):
            this = ("add", fl[: len(fl) - len(sl)])
        elif sl.endswith(fl):
            this = ("remove", sl[: len(sl) - len(fl)])
        else:
            return None
        if this[1] == "":
            this = ("add", "")
        if shift is None:
            shift = this
        elif shift != this:
            return None
    return shift or ("add", "")


def _reindent(lines: list[str], shift: tuple[str, str]) -> list[str]:
    mode, delta = shift
    if not delta:
        return lines
    if mode == "add":
        return [delta + ln if ln.strip() else ln for ln in lines]
    return [ln[len(delta):] if ln.startswith(delta) else ln.lstrip() for ln in lines]


def _mismatch_hint(content: list[str], search: list[str]) -> str:
    """Where the closest candidate diverges, so the repair prompt can say what is wrong."""
    best, best_at = 0, -1
    first = search[0].strip()
    for i, ln in enumerate(content):
        if ln.strip() != first:
            continue
        k = 0
        while k < len(search) and i + k < len(content) and content[i + k].strip() == search[k].strip():
            k += 1
        if k > best:
            best, best_at = k, i
    if best_at < 0:
        return f"its first line {search[0].strip()[:60]!r} is not in the file"
    if best_at + best >= len(content):
        return f"it matches from line {best_at + 1} to the end of the file but has more lines"
    return (f"it matches from line {best_at + 1} for {best} lines, then the file has "
            f"{content[best_at + best].strip()[:60]!r} where SEARCH has {search[best].strip()[:60]!r}")


def _apply_one(text: str | None, edit: Edit) -> tuple[str | None, bool]:
    """The file's text after one block (None: deleted); raises ValueError with the reason."""
    if edit.delete:
        if text is None:
            raise ValueError("cannot delete: the file does not exist")
        return None, False
    replace = [_body(ln) for ln in _split(_as_lines(edit.replace))]
    if not edit.search:  # create the file, or append to it
        added = "".join(ln + "\n" for ln in replace)
        if text is None:
            return added, False
        return text + ("" if not text or text.endswith("\n") else "\n") + added, False
    if text is None:
        raise ValueError("the file does not exist (an empty SEARCH creates a file)")
    lines = _split(text)
    content = [_body(ln) for ln in lines]
    search = [_body(ln) for ln in _split(_as_lines(edit.search))]
    fuzzy = False
    matches = _find(content, search, lambda a, b: a == b)
    shift: tuple[str, str] = ("add", "")
    if not matches:
        fuzzy = True
        matches = _find(content, search, lambda a, b: a.rstrip() == b.rstrip())
    if not matches:
        cands = _find(content, search, lambda a, b: a.strip() == b.strip())
        shifted = [(i, s) for i in cands if (s := _indent_shift(content, search, i)) is not None]
        matches = [i for i, _ in shifted]
        if len(shifted) == 1:
            shift = shifted[0][1]
    if not matches:
        raise ValueError(f"SEARCH not found: {_mismatch_hint(content, search)}")
    if len(matches) > 1:
        where = ", ".join(str(m + 1) for m in matches[:5])
        raise ValueError(f"SEARCH matches {len(matches)} places (lines {where}); add lines around it to make it unique")
    at = matches[0]
    new = _reindent(replace, shift) if fuzzy else replace
    if fuzzy and content[at].endswith("\r"):
        new = [ln if ln.endswith("\r") else ln + "\r" for ln in new]
    end = at + len(search)
    tail_has_newline = lines[end - 1].endswith("\n")
    out = [ln + "\n" for ln in new]
    if out and not tail_has_newline:
        out[-1] = out[-1][:-1]
    return "".join(lines[:at] + out + lines[end:]), fuzzy


def apply_to_texts(
    texts: dict[str, str | None], edits: Sequence[Edit]
) -> tuple[dict[str, str | None], ApplyResult]:
    """Apply blocks in order to in-memory files ({path: text or None when absent}).

    Returns the new texts of every path a block named and the result; a failed block
    leaves its file as the previous blocks made it, and the later blocks still run so one
    call reports every broken block.
    """
    state = dict(texts)
    result = ApplyResult(ok=True)
    touched: dict[str, None] = {}
    for n, edit in enumerate(edits, start=1):
        try:
            new, fuzzy = _apply_one(state.get(edit.path), edit)
        except ValueError as exc:
            result.errors.append(ApplyError(n, edit.path, str(exc)))
            continue
        state[edit.path] = new
        touched.setdefault(edit.path, None)
        if fuzzy:
            result.fuzzy.append(n)
    result.ok = not result.errors
    result.files = [p for p in touched if state.get(p) != texts.get(p)]
    return state, result


def _read_for_edit(path: str, data: bytes) -> tuple[str, str]:
    """(text, encoding) of a file about to be edited. A Python file in a declared encoding
    is read in it; anything else (or a file its declaration does not fit) as UTF-8, its
    undecodable bytes kept as surrogates so they are written back unchanged."""
    if path.endswith(PYTHON_SOURCE):
        try:
            text, encoding = decode_source(data)
            return text, encoding
        except (UnicodeDecodeError, SyntaxError):
            pass
    return data.decode("utf-8", "surrogateescape"), "utf-8"


def _encode_for_edit(path: str, text: str, read_as: str | None) -> bytes:
    """The bytes of an edited file: a Python file in the encoding its (possibly new) coding
    line names, keeping a BOM it had; anything else as it was read."""
    if path.endswith(PYTHON_SOURCE):
        encoding = coding_of_text(text)
        if encoding == "utf-8" and read_as == "utf-8-sig":
            encoding = "utf-8-sig"
        if encoding != "utf-8":
            return text.encode(encoding)
    return text.encode("utf-8", "surrogateescape")


def _safe_target(root: Path, rel: str) -> Path | None:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or (p.parts and p.parts[0] == ".git"):
        return None
    target = (root / rel).resolve()
    try:
        target.relative_to(root.resolve())
    except ValueError:
        return None
    return target


def apply_edits(root: Path | str, edits: Sequence[Edit], *, dry_run: bool = False,
                guard: Guard | None = None, flag: Guard | None = None) -> ApplyResult:
    """Apply blocks to the files under ``root``: every block, or no file touched.

    Matching is exact first, then tolerant of trailing whitespace, then of a uniform
    indentation shift (the replacement is shifted the same way). A SEARCH that matches
    nowhere or in more than one place is an ``ApplyError`` saying which block and why.
    Files are written atomically (temp file + rename) once every block has applied.
    ``guard``: when it gives reasons for the files' before and after texts, nothing is
    written and ``refused`` holds them (``ok`` False). ``flag``: its reasons go to
    ``suspicious``; the edits still apply.
    """
    root = Path(root)
    texts: dict[str, str | None] = {}
    encodings: dict[str, str] = {}  # how each existing file was read
    bad: list[ApplyError] = []
    for n, edit in enumerate(edits, start=1):
        if edit.path in texts:
            continue
        target = _safe_target(root, edit.path)
        if target is None:
            bad.append(ApplyError(n, edit.path, "the path is outside the repository"))
            continue
        if target.is_dir():
            bad.append(ApplyError(n, edit.path, "the path is a directory"))
            continue
        if target.exists():
            texts[edit.path], encodings[edit.path] = _read_for_edit(edit.path, target.read_bytes())
        else:
            texts[edit.path] = None
    if bad:
        return ApplyResult(ok=False, errors=bad)
    state, result = apply_to_texts(texts, edits)
    if not result.ok:
        result.files = []  # nothing is written when any block fails
        return result
    changed = {rel: state[rel] for rel in result.files}
    if flag is not None:
        result.suspicious = flag(texts, changed)
    if guard is not None and (reasons := guard(texts, changed)):
        result.ok, result.refused, result.files = False, reasons, []
        return result
    payloads: dict[str, bytes] = {}
    for rel in result.files:
        new = state[rel]
        if new is None:
            continue
        try:
            payloads[rel] = _encode_for_edit(rel, new, encodings.get(rel))
        except UnicodeEncodeError as exc:
            n = next(i for i, e in enumerate(edits, start=1) if e.path == rel)
            result.errors.append(ApplyError(n, rel, f"{exc.object[exc.start:exc.end]!r} cannot be written in "
                                                    f"{exc.encoding}, the file's declared encoding"))
    if result.errors:
        result.ok, result.files = False, []
        return result
    if dry_run:
        return result
    for rel in result.files:
        target = root / rel
        new = state[rel]
        if new is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = target.stat().st_mode & 0o7777 if target.exists() else None
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(payloads[rel])
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    return result


# --------------------------------------------------------------------------- gold edits


@dataclass(frozen=True)
class Hunk:
    """One changed region, 0-based half-open line ranges on each side."""

    old_start: int
    old_end: int
    new_start: int
    new_end: int

    @property
    def old_lines(self) -> set[int]:
        """1-based line numbers of the parent's lines this hunk removes or changes."""
        return set(range(self.old_start + 1, self.old_end + 1))

    @property
    def new_lines(self) -> set[int]:
        """1-based line numbers of the commit's lines this hunk adds or changes."""
        return set(range(self.new_start + 1, self.new_end + 1))


_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def parse_hunks(diff_text: str) -> list[Hunk]:
    """Hunks from the ``@@`` headers of a zero-context unified diff of one file."""
    out: list[Hunk] = []
    for line in diff_text.split("\n"):
        m = _HUNK_RE.match(line)
        if not m:
            continue
        a, b = int(m.group(1)), int(m.group(2) if m.group(2) is not None else 1)
        c, d = int(m.group(3)), int(m.group(4) if m.group(4) is not None else 1)
        o0 = a - 1 if b else a  # an insertion's header names the line *before* it
        n0 = c - 1 if d else c
        out.append(Hunk(o0, o0 + b, n0, n0 + d))
    return out


def diff_hunks(repo_dir: Path | str, parent: str, sha: str, path: str) -> list[Hunk]:
    """The commit's own hunks for one file (``git diff -U0``), top to bottom."""
    out = git_bytes(repo_dir, "diff", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames",
                    "-U0", parent, sha, "--", path)
    return parse_hunks(out.decode("utf-8", "surrogateescape"))


def _line_hunks(old: list[str], new: list[str]) -> list[Hunk]:
    """Hunks computed in process, for text git will not diff (``-diff`` attributes)."""
    sm = difflib.SequenceMatcher(None, old, new, autojunk=False)
    return [Hunk(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in sm.get_opcodes() if tag != "equal"]


def read_texts(
    repo_dir: Path | str, rev: str, paths: Sequence[str], *, strict: bool = True
) -> dict[str, str | None]:
    """{path: text at ``rev``, or None when absent}; Python files decoded by their PEP 263
    coding line (``decode_text``), others as UTF-8.

    ``strict`` (what gold edits need) raises EditError for a binary, undecodable, symlink
    or submodule entry, since the block format carries text only; otherwise such a file
    reads as None (binary, link, submodule) or with undecodable bytes replaced.
    """
    out: dict[str, str | None] = {p: None for p in paths}
    if not paths:
        return out
    listing = git_bytes(repo_dir, "ls-tree", "-r", "-z", rev, "--", *paths).decode("utf-8", "surrogateescape")
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        mode, kind, obj = meta.split()
        if path not in out:
            continue
        problem = None
        data = b""
        if kind != "blob":
            problem = f"{path} is a {kind} at {rev[:10]}, not a file"
        elif mode == "120000":
            problem = f"{path} is a symbolic link at {rev[:10]}"
        else:
            data = git_bytes(repo_dir, "cat-file", "blob", obj)
            if b"\0" in data:
                problem = f"{path} is binary at {rev[:10]}"
        if problem:
            if strict:
                raise EditError(problem, path=path)
            continue
        try:
            out[path] = decode_text(path, data)
        except (UnicodeDecodeError, SyntaxError) as exc:
            if strict:
                raise EditError(f"{path} is not text in {_declared(path, data)} at {rev[:10]}: "
                                f"{_decode_problem(exc)}", path=path) from exc
            out[path] = data.decode("utf-8", "replace")
    return out


def decode_text(path: str, data: bytes) -> str:
    """A file's text: a Python file as Python reads it (its PEP 263 coding line, a BOM),
    anything else as UTF-8. Raises ``UnicodeDecodeError``, or ``SyntaxError`` for a coding
    line naming an unknown encoding."""
    if path.endswith(PYTHON_SOURCE):
        return decode_source(data)[0]
    return data.decode("utf-8")


def _declared(path: str, data: bytes) -> str:
    if path.endswith(PYTHON_SOURCE):
        try:
            return f"its declared encoding ({source_encoding(data)})"
        except SyntaxError:
            return "the encoding its coding line names"
    return "UTF-8"


def _decode_problem(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"byte {exc.object[exc.start]:#04x} is not {exc.encoding}"
    return str(getattr(exc, "msg", exc))


def _unique_blocks(old: list[str], new: list[str], hunks: list[Hunk], context: int, path: str) -> list[Edit]:
    """Blocks for one file's hunks: ``context`` lines around each, overlapping ones merged,
    and any block whose SEARCH is not unique (where it is applied, after the blocks
    before it) grown line by line until it is."""
    oc = [_body(ln) for ln in old]
    nc = [_body(ln) for ln in new]
    # [o0, o1, n0, n1, before, after]
    groups = [[h.old_start, h.old_end, h.new_start, h.new_end, context, context] for h in hunks]
    while True:
        merged: list[list[int]] = []
        for g in groups:
            g[4] = min(g[4], g[0], g[2])
            g[5] = min(g[5], len(oc) - g[1], len(nc) - g[3])
            if merged and g[0] - g[4] <= merged[-1][1] + merged[-1][5]:
                prev = merged[-1]
                merged[-1] = [prev[0], g[1], prev[2], g[3], prev[4], g[5]]
            else:
                merged.append(list(g))
        groups = merged
        state = list(oc)
        offset = 0  # where the old coordinates sit in ``state`` after earlier blocks
        grow: int | None = None
        for k, (o0, o1, n0, n1, b, a) in enumerate(groups):
            search = oc[o0 - b : o1 + a]
            hits = _find(state, search, lambda x, y: x == y) if search else []
            if len(hits) != 1:
                grow = k
                break
            at = hits[0]
            if at != o0 - b + offset:  # cannot happen: the hunk's own place always matches
                raise EditError(f"a gold SEARCH block matched away from its hunk in {path}", path=path)
            replacement = nc[n0 - b : n1 + a]
            state[at : at + len(search)] = replacement
            offset += len(replacement) - len(search)
        if grow is None:
            break
        g = groups[grow]
        if g[4] >= min(g[0], g[2]) and g[5] >= min(len(oc) - g[1], len(nc) - g[3]):
            raise EditError(f"cannot make a SEARCH block unique in {path}", path=path)
        g[4] += 1
        g[5] += 1
    return [
        Edit(path, "".join(ln + "\n" for ln in oc[o0 - b : o1 + a]), "".join(ln + "\n" for ln in nc[n0 - b : n1 + a]))
        for o0, o1, n0, n1, b, a in groups
    ]


def edits_for_file(path: str, old: str | None, new: str | None, hunks: list[Hunk] | None = None,
                   *, context: int = 2) -> list[Edit]:
    """The blocks that turn ``old`` into ``new`` (None: the file is absent on that side)."""
    if old is None and new is None:
        return []
    if new is None:
        return [Edit(path, "", "", delete=True)]
    if old is None:
        return [Edit(path, "", new)]
    if old == new:
        return []
    o, n = _split(old), _split(new)
    if not o:
        return [Edit(path, "", new)]
    hunks = hunks or _line_hunks([_body(x) for x in o], [_body(x) for x in n])
    return _unique_blocks(o, n, hunks, context, path)


def gold_edits(repo_dir: Path | str, parent: str, sha: str, paths: Sequence[str], *, context: int = 2) -> list[Edit]:
    """The commit's change to ``paths`` as blocks that reproduce it exactly on the parent.

    Built from the commit's own ``git diff -U0`` hunks with ``context`` lines around each
    (overlapping ones merged, every SEARCH unique where it applies), in the order of
    ``paths``. Checked before returning: applying the blocks to the parent's texts gives
    the commit's texts, and rendering then parsing them gives the same blocks; when
    either fails (a change to nothing but a final newline, a line that looks like a block
    marker, a binary or non-UTF-8 file) it raises ``EditError`` rather than teach a
    model a wrong edit.
    """
    old_texts = read_texts(repo_dir, parent, paths)
    new_texts = read_texts(repo_dir, sha, paths)
    edits: list[Edit] = []
    for path in paths:
        old, new = old_texts[path], new_texts[path]
        hunks = diff_hunks(repo_dir, parent, sha, path) if old is not None and new is not None and old != new else None
        edits += edits_for_file(path, old, new, hunks, context=context)
    check_round_trip(old_texts, new_texts, edits)
    return edits


def check_round_trip(old: dict[str, str | None], new: dict[str, str | None], edits: list[Edit]) -> None:
    """Raise EditError unless ``edits`` turn ``old`` into ``new`` and survive render/parse."""
    state, result = apply_to_texts(old, edits)
    if not result.ok:
        raise EditError(f"gold blocks do not apply: {result.apply_error}")
    for path, text in new.items():
        if state.get(path) != text:
            raise EditError(f"the block format cannot reproduce the change to {path}"
                            " (a change to the final newline or to line endings only?)", path=path)
    if parse_edits(render_edits(edits)) != edits:
        raise EditError("a changed file has a line that reads like a block marker")
