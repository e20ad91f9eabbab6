#!/usr/bin/env python3
"""Generate ``corpus/samples/inkwell.bundle``, the sample repository that ships with cra.

inkwell is a small text-utility library (slugs, case conversion, truncation, wrapping, word
counts, a tiny template formatter) with two years of history written the way real projects
are: features and bug fixes that change code together with tests that fail before and pass
after; pull requests merged with GitHub's merge button, work-in-progress commits inside; and
the commits a miner must reject: version bumps, a README typo, docs-only changes, "WIP", a
revert, pre-commit.ci autoupdates, code changed without tests, tests changed without code,
a black reformat of every file, and a move of the test requirements from a ``test`` extra
to a PEP 735 dependency group (so the history has two dependency eras).

Why the git objects are written here rather than through ``git commit``: every author,
committer, date and message is fixed in this file, and object hashes depend on nothing
else, so the same script yields the same commit shas with any git version; merges need no
merge machinery either. ``git fsck --strict`` checks the result before the bundle is
written.

Before the "Adopt black" commit the project used single quotes. The file texts below are
kept in their post-black form and rendered through ``_pre_black`` until that commit, which
is why the black commit touches every Python file.

    python scripts/make_sample.py             # rewrite corpus/samples/inkwell.bundle
    python scripts/make_sample.py --verify    # and run the tests of every commit on main
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = ROOT / "corpus" / "samples" / "inkwell.bundle"

# What each commit is meant to exercise in cra's miner and validator.
KINDS = {
    "task": "feature or fix: its changed tests fail at the parent and pass at the commit",
    "merge": "pull-request merge: its diff against the first parent is a task",
    "setup": "project skeleton: there is nothing to test against at its parent",
    "docs": "documentation only",
    "typo": "typo fix",
    "bump": "version bump",
    "wip": "work in progress",
    "bot": "pre-commit.ci autoupdate by a bot",
    "revert": "revert of an earlier commit",
    "no-tests": "source changed without tests",
    "tests-only": "tests changed without source",
    "reformat": "formatter run over every file: too big to be a task",
    "deps": "build and test requirements changed (a new dependency era)",
    "config": "tool configuration only",
    "branch": "a commit inside a pull request; not on the first-parent line",
}

START = 1_675_670_400 + 9 * 3600 + 12 * 60  # 2023-02-06 09:12 UTC


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    tz: str

    def stamp(self, when: int) -> str:
        return f"{self.name} <{self.email}> {when} {self.tz}"


ADA = Person("Ada Lindqvist", "ada.lindqvist@example.com", "+0100")
TOMAS = Person("Tomás Ferreira", "tomas.ferreira@example.org", "-0300")
PRIYA = Person("Priya Raman", "priya.raman@example.org", "+0530")
KENJI = Person("Kenji Watanabe", "kenji.w@example.net", "+0900")
BOT = Person(
    "pre-commit-ci[bot]", "66853113+pre-commit-ci[bot]@users.noreply.github.com", "+0000"
)
GITHUB = Person("GitHub", "noreply@github.com", "+0000")


@dataclass(frozen=True)
class CommitInfo:
    """One generated commit, for tests and for ``--verify``."""

    sha: str
    kind: str
    subject: str
    first_parent: bool
    parents: tuple[str, ...]
    when: int


# --------------------------------------------------------------------------- git objects


class ObjectStore:
    """Writes loose objects into a bare repository; the sha is git's, by construction."""

    def __init__(self, git_dir: Path):
        self.git_dir = git_dir

    def write(self, kind: str, body: bytes) -> str:
        data = f"{kind} {len(body)}".encode() + b"\0" + body
        sha = hashlib.sha1(data).hexdigest()
        path = self.git_dir / "objects" / sha[:2] / sha[2:]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(zlib.compress(data, 9))
        return sha

    def tree(self, files: dict[str, bytes]) -> str:
        nested: dict[str, object] = {}
        for path, data in files.items():
            *dirs, name = path.split("/")
            node = nested
            for part in dirs:
                node = node.setdefault(part, {})  # type: ignore[assignment]
            node[name] = data
        return self._tree(nested)

    def _tree(self, node: dict[str, object]) -> str:
        entries = []
        for name, value in node.items():
            if isinstance(value, dict):
                entries.append((name + "/", b"40000", name, self._tree(value)))
            else:
                assert isinstance(value, bytes)
                entries.append((name, b"100644", name, self.write("blob", value)))
        # git orders tree entries by name, a directory as if its name ended in "/".
        entries.sort(key=lambda e: e[0].encode())
        body = b"".join(
            mode + b" " + name.encode() + b"\0" + bytes.fromhex(sha)
            for _, mode, name, sha in entries
        )
        return self.write("tree", body)

    def commit(
        self,
        tree: str,
        parents: list[str],
        author: Person,
        committer: Person,
        when: int,
        message: str,
    ) -> str:
        lines = [f"tree {tree}", *(f"parent {p}" for p in parents)]
        lines += [f"author {author.stamp(when)}", f"committer {committer.stamp(when)}"]
        text = "\n".join(lines) + "\n\n" + message.strip() + "\n"
        return self.write("commit", text.encode())


class Clock:
    """Increasing, irregular commit times; the gaps come from a hash, not from randomness."""

    def __init__(self, start: int):
        self.now = start
        self.count = 0

    def tick(self, soon: bool) -> int:
        self.count += 1
        h = hashlib.sha256(f"inkwell-{self.count}".encode()).digest()
        if soon:
            gap = 3600 * (1 + h[0] % 20) + 60 * (h[1] % 60)
        else:
            gap = 86400 * (6 + h[0] % 21) + 3600 * (h[1] % 9) + 60 * (h[2] % 60)
        self.now += gap
        return self.now


# --------------------------------------------------------------------------- file edits

Files = dict[str, str]
Edit = Callable[[Files], None]


def code(text: str) -> str:
    """A snippet written indented inside this file, as file text."""
    return textwrap.dedent(text).strip("\n") + "\n"


def new(path: str, text: str) -> Edit:
    def apply(files: Files) -> None:
        assert path not in files, f"{path} exists already"
        files[path] = code(text)

    return apply


def put(path: str, text: str) -> Edit:
    def apply(files: Files) -> None:
        assert path in files, f"{path} does not exist"
        files[path] = code(text)

    return apply


def sub(path: str, old: str, new_text: str) -> Edit:
    """Replace the one occurrence of *old* in *path*."""

    def apply(files: Files) -> None:
        count = files[path].count(old)
        assert count == 1, f"{path}: {old!r} occurs {count} times"
        files[path] = files[path].replace(old, new_text)

    return apply


def append(path: str, text: str) -> Edit:
    """Add top-level code (tests, functions) at the end, after two blank lines."""

    def apply(files: Files) -> None:
        files[path] = files[path].rstrip("\n") + "\n\n\n" + code(text)

    return apply


def define(path: str, text: str, before: str | None = None) -> Edit:
    """Replace the top-level def/class/assignment that *text* defines, or add it.

    A new definition goes before the top-level name *before*, or at the end.
    """

    def apply(files: Files) -> None:
        snippet = code(text)
        name = _defined_name(ast.parse(snippet).body[0])
        spans = _top_level_spans(files[path])
        lines = files[path].splitlines(keepends=True)
        if name in spans:
            start, end = spans[name]
            lines[start:end] = [snippet]
        elif before is not None:
            start, _ = spans[before]
            lines[start:start] = [snippet, "\n", "\n"]
        else:
            lines = [files[path].rstrip("\n") + "\n\n\n", snippet]
        files[path] = "".join(lines)

    return apply


def _defined_name(node: ast.stmt) -> str:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    raise AssertionError(f"cannot name a {type(node).__name__}")


def _top_level_spans(text: str) -> dict[str, tuple[int, int]]:
    spans = {}
    for node in ast.parse(text).body:
        try:
            name = _defined_name(node)
        except AssertionError:
            continue
        decorators = getattr(node, "decorator_list", [])
        start = min([node.lineno] + [d.lineno for d in decorators]) - 1
        spans[name] = (start, node.end_lineno or node.lineno)
    return spans


def drop(path: str) -> Edit:
    def apply(files: Files) -> None:
        del files[path]

    return apply


INIT = "src/inkwell/__init__.py"
INIT_DOC = '"""inkwell: small, dependency-free helpers for everyday text."""'


def _read_init(text: str) -> tuple[dict[str, list[str]], str]:
    imports: dict[str, list[str]] = {}
    version = ""
    for node in ast.parse(text).body:
        if isinstance(node, ast.ImportFrom):
            module = (node.module or "").removeprefix("inkwell.")
            imports[module] = [alias.name for alias in node.names]
        elif isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "__version__":
            version = ast.literal_eval(node.value)
    return imports, version


def _write_init(imports: dict[str, list[str]], version: str) -> str:
    lines = [INIT_DOC, ""]
    if imports:
        for module in sorted(imports):
            names = sorted(imports[module], key=lambda n: (not n[0].isupper(), n))
            one = f"from inkwell.{module} import {', '.join(names)}"
            if len(one) <= 88:
                lines.append(one)
            else:
                lines += [f"from inkwell.{module} import (", *[f"    {n}," for n in names], ")"]
        exported = sorted(n for names in imports.values() for n in names)
        lines += ["", "__all__ = [", *[f'    "{n}",' for n in exported], "]"]
    lines += ["", f'__version__ = "{version}"']
    return "\n".join(lines) + "\n"


def export(module: str, *names: str) -> Edit:
    """Re-export *names* from ``inkwell.<module>`` in the package ``__init__``."""

    def apply(files: Files) -> None:
        imports, version = _read_init(files[INIT])
        imports.setdefault(module, [])
        imports[module] += [n for n in names if n not in imports[module]]
        files[INIT] = _write_init(imports, version)

    return apply


def bump(version: str) -> Edit:
    def apply(files: Files) -> None:
        imports, _ = _read_init(files[INIT])
        files[INIT] = _write_init(imports, version)

    return apply


def _pre_black(path: str, text: str) -> str:
    """The file as it looked while the project still wrote single quotes."""
    if not path.endswith(".py"):
        return text
    assert "'" not in text, f"{path}: an apostrophe cannot be rendered before black"
    return text.replace('"', "'")


# --------------------------------------------------------------------------- history


@dataclass
class Branch:
    files: Files
    head: str | None
    fork_files: Files = field(default_factory=dict)


@dataclass
class _Landed:
    sha: str
    subject: str
    before: Files
    after: Files


class History:
    """Builds commits on named branches of one bare repository."""

    def __init__(self, git_dir: Path):
        self.store = ObjectStore(git_dir)
        self.clock = Clock(START)
        self.branches: dict[str, Branch] = {"main": Branch({}, None)}
        self.black = False
        self.log: list[CommitInfo] = []
        self.landed: dict[str, _Landed] = {}

    def _snapshot(self, files: Files) -> dict[str, bytes]:
        render = (lambda p, t: t) if self.black else _pre_black
        return {path: render(path, text).encode() for path, text in files.items()}

    def _record(
        self,
        files: Files,
        parents: list[str],
        author: Person,
        committer: Person,
        message: str,
        kind: str,
        soon: bool,
    ) -> str:
        assert kind in KINDS, kind
        when = self.clock.tick(soon)
        tree = self.store.tree(self._snapshot(files))
        sha = self.store.commit(tree, parents, author, committer, when, message)
        self.log.append(
            CommitInfo(
                sha=sha,
                kind=kind,
                subject=message.strip().splitlines()[0],
                first_parent=kind != "branch",
                parents=tuple(parents),
                when=when,
            )
        )
        return sha

    def commit(
        self,
        author: Person,
        message: str,
        *edits: Edit,
        kind: str,
        branch: str = "main",
        committer: Person | None = None,
        soon: bool = False,
        label: str | None = None,
    ) -> str:
        target = self.branches[branch]
        before = dict(target.files)
        for apply in edits:
            apply(target.files)
        assert target.files != before or kind == "setup", f"{message!r} changes nothing"
        parents = [target.head] if target.head else []
        sha = self._record(
            target.files, parents, author, committer or author, message, kind, soon
        )
        target.head = sha
        if label:
            self.landed[label] = _Landed(sha, message.splitlines()[0], before, dict(target.files))
        return sha

    def fork(self, name: str) -> None:
        main = self.branches["main"]
        self.branches[name] = Branch(dict(main.files), main.head, dict(main.files))

    def merge(self, name: str, number: int, title: str, merger: Person) -> str:
        """Merge branch *name* into main the way GitHub's merge button does."""
        main, topic = self.branches["main"], self.branches.pop(name)
        merged: Files = {}
        for path in sorted(set(main.files) | set(topic.files) | set(topic.fork_files)):
            base = topic.fork_files.get(path)
            ours, theirs = main.files.get(path), topic.files.get(path)
            if theirs == base:
                chosen = ours
            elif ours == base or ours == theirs:
                chosen = theirs
            else:
                raise AssertionError(f"merge of {name}: both sides changed {path}")
            if chosen is not None:
                merged[path] = chosen
        message = f"Merge pull request #{number} from {name}\n\n{title}"
        assert main.head and topic.head
        sha = self._record(
            merged, [main.head, topic.head], merger, GITHUB, message, "merge", soon=True
        )
        main.files, main.head = merged, sha
        return sha

    def revert(self, label: str, author: Person, reason: str) -> str:
        landed = self.landed[label]
        main = self.branches["main"]
        edits = []
        for path in set(landed.before) | set(landed.after):
            if landed.before.get(path) == landed.after.get(path):
                continue
            assert main.files.get(path) == landed.after.get(path), f"{path} changed since"
            if path in landed.before:
                old = landed.before[path]
                edits.append(lambda files, p=path, t=old: files.__setitem__(p, t))
            else:
                edits.append(drop(path))
        message = (
            f'Revert "{landed.subject}"\n\nThis reverts commit {landed.sha}.\n\n{reason}'
        )
        return self.commit(author, message, *edits, kind="revert")

    def adopt_black(self, author: Person, message: str, *edits: Edit) -> str:
        self.black = True
        return self.commit(author, message, *edits, kind="reformat", label="black")


# --------------------------------------------------------------------------- the project

SLUG = "src/inkwell/slug.py"
CASE = "src/inkwell/case.py"
TRUNC = "src/inkwell/truncate.py"
COUNT = "src/inkwell/count.py"
WRAP = "src/inkwell/wrap.py"
TMPL = "src/inkwell/template.py"
CHECKS = "src/inkwell/_checks.py"
T_SLUG = "tests/test_slug.py"
T_CASE = "tests/test_case.py"
T_TRUNC = "tests/test_truncate.py"
T_COUNT = "tests/test_count.py"
T_WRAP = "tests/test_wrap.py"
T_TMPL = "tests/test_template.py"
PRE_COMMIT = ".pre-commit-config.yaml"

PYPROJECT_ERA1 = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "inkwell"
description = "Small, dependency-free helpers for everyday text."
readme = "README.md"
requires-python = ">=3.9"
authors = [{ name = "Ada Lindqvist", email = "ada.lindqvist@example.com" }]
classifiers = [
    "Programming Language :: Python :: 3",
    "Topic :: Text Processing",
]
dynamic = ["version"]

[project.optional-dependencies]
test = ["pytest"]

[tool.setuptools.dynamic]
version = { attr = "inkwell.__version__" }

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

README_V1 = """
# inkwell

Small, dependancy-free helpers for everyday text.
"""

LICENSE = """
MIT License

Copyright (c) 2023 Ada Lindqvist

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

GITIGNORE = """
__pycache__/
*.egg-info/
.pytest_cache/
.venv/
build/
dist/
"""


def autoupdate(*updates: tuple[str, str, str]) -> tuple[str, list[Edit]]:
    """A pre-commit.ci autoupdate: (repo, old rev, new rev) per hook repository."""
    lines = ["[pre-commit.ci] pre-commit autoupdate", "", "updates:"]
    edits = []
    for repo, old, new_rev in updates:
        lines.append(
            f"- [github.com/{repo}: {old} → {new_rev}]"
            f"(https://github.com/{repo}/compare/{old}...{new_rev})"
        )
        edits.append(
            sub(
                PRE_COMMIT,
                f"github.com/{repo}\n    rev: {old}\n",
                f"github.com/{repo}\n    rev: {new_rev}\n",
            )
        )
    return "\n".join(lines), edits


def build_history(h: History) -> None:
    """The whole history of inkwell, oldest commit first."""
    _first_features(h)
    _pull_request_7(h)
    _black_and_dependency_groups(h)
    _pull_request_12(h)
    _release_0_3(h)
    _release_0_4(h)


def _first_features(h: History) -> None:
    """Initial commit to 0.1.0: slugify, case conversion, truncate, word counts."""
    commit = h.commit

    commit(
        ADA,
        "Initial commit",
        new("README.md", README_V1),
        new("LICENSE", LICENSE),
        new(".gitignore", GITIGNORE),
        kind="setup",
    )

    commit(
        ADA,
        "Set up the package with pyproject.toml and pytest",
        new("pyproject.toml", PYPROJECT_ERA1),
        new(".flake8", "[flake8]\nmax-line-length = 79\n"),
        new(INIT, INIT_DOC + '\n\n__version__ = "0.1.0.dev0"\n'),
        new(
            "tests/test_package.py",
            """
            import inkwell


            def test_version_is_a_string():
                assert isinstance(inkwell.__version__, str)
            """,
        ),
        sub(
            "README.md",
            "everyday text.\n",
            "everyday text.\n\n## Development\n\n"
            '    python -m pip install -e ".[test]"\n    python -m pytest\n',
        ),
        kind="setup",
    )

    commit(
        ADA,
        "Add slugify() for URL-friendly slugs",
        new(
            SLUG,
            r'''
            """URL-friendly slugs from arbitrary text."""

            import re
            import unicodedata

            _NOT_ALNUM = re.compile(r"[^a-z0-9]+")


            def slugify(text):
                """Return *text* as a lowercase ASCII slug with words joined by dashes.

                Accents are stripped (``"Crème"`` becomes ``"creme"``) and every run of
                other characters becomes a single dash.
                """
                normalized = unicodedata.normalize("NFKD", text)
                ascii_text = normalized.encode("ascii", "ignore").decode("ascii")
                return _NOT_ALNUM.sub("-", ascii_text.lower()).strip("-")
            ''',
        ),
        export("slug", "slugify"),
        new(
            T_SLUG,
            """
            from inkwell import slugify


            def test_lowercases_and_joins_words_with_dashes():
                assert slugify("Hello World") == "hello-world"


            def test_strips_accents():
                assert slugify("Crème Brûlée") == "creme-brulee"


            def test_collapses_punctuation_and_trims_the_ends():
                assert slugify("  --Hello,   World!--  ") == "hello-world"


            def test_keeps_digits():
                assert slugify("Top 10 tips") == "top-10-tips"
            """,
        ),
        kind="task",
    )

    commit(
        TOMAS,
        "Add snake_case() and camel_case() conversions",
        new(
            CASE,
            r'''
            """Convert identifiers and phrases between naming conventions."""

            import re

            _WORD = re.compile(r"[A-Za-z][a-z]*|[0-9]+")


            def _words(text):
                return _WORD.findall(text)


            def snake_case(text):
                """``"Hello World"`` and ``"helloWorld"`` both become ``"hello_world"``."""
                return "_".join(word.lower() for word in _words(text))


            def camel_case(text):
                """``"hello_world"`` and ``"Hello World"`` both become ``"helloWorld"``."""
                words = [word.lower() for word in _words(text)]
                if not words:
                    return ""
                return words[0] + "".join(word.capitalize() for word in words[1:])
            ''',
        ),
        export("case", "snake_case", "camel_case"),
        new(
            T_CASE,
            """
            from inkwell.case import camel_case, snake_case


            def test_snake_case_from_words():
                assert snake_case("Hello World") == "hello_world"


            def test_snake_case_from_camel_case():
                assert snake_case("helloWorld") == "hello_world"


            def test_snake_case_from_kebab_case():
                assert snake_case("hello-big-world") == "hello_big_world"


            def test_camel_case_from_snake_case():
                assert camel_case("hello_world") == "helloWorld"


            def test_camel_case_of_empty_string():
                assert camel_case("") == ""
            """,
        ),
        kind="task",
    )

    commit(
        PRIYA,
        "Fix typo in README",
        sub("README.md", "dependancy-free", "dependency-free"),
        kind="typo",
    )

    commit(
        ADA,
        "Add truncate() with a configurable ellipsis",
        new(
            TRUNC,
            '''
            """Shorten text to a maximum width."""


            def truncate(text, width, ellipsis="..."):
                """Cut *text* to at most *width* characters, ending in *ellipsis*.

                Text that already fits is returned unchanged.
                """
                if len(text) <= width:
                    return text
                return text[: width - len(ellipsis)] + ellipsis
            ''',
        ),
        export("truncate", "truncate"),
        new(
            T_TRUNC,
            """
            from inkwell import truncate


            def test_short_text_is_unchanged():
                assert truncate("hello", 10) == "hello"


            def test_text_of_exact_width_is_unchanged():
                assert truncate("hello", 5) == "hello"


            def test_long_text_ends_in_ellipsis_within_width():
                result = truncate("hello world", 8)
                assert result == "hello..."
                assert len(result) == 8


            def test_custom_ellipsis():
                assert truncate("hello world", 6, ellipsis="…") == "hello…"
            """,
        ),
        kind="task",
    )

    commit(
        PRIYA,
        "Add a separator argument to slugify()",
        define(
            SLUG,
            '''
            def slugify(text, separator="-"):
                """Return *text* as a lowercase ASCII slug with words joined by *separator*.

                Accents are stripped (``"Crème"`` becomes ``"creme"``) and every run of
                other characters becomes a single separator.
                """
                normalized = unicodedata.normalize("NFKD", text)
                ascii_text = normalized.encode("ascii", "ignore").decode("ascii")
                return _NOT_ALNUM.sub(separator, ascii_text.lower()).strip(separator)
            ''',
        ),
        append(
            T_SLUG,
            """
            def test_custom_separator():
                assert slugify("Hello big World", separator="_") == "hello_big_world"


            def test_empty_separator_joins_words():
                assert slugify("Hello World", separator="") == "helloworld"
            """,
        ),
        kind="task",
    )

    commit(
        ADA,
        "Document the public API in the README",
        sub(
            "README.md",
            "everyday text.\n",
            "everyday text.\n\n## What is in the box\n\n"
            '- `slugify(text, separator="-")`: URL-friendly slugs, accents stripped.\n'
            "- `snake_case(text)`, `camel_case(text)`: identifier conversions.\n"
            '- `truncate(text, width, ellipsis="...")`: shorten text to a width.\n',
        ),
        kind="docs",
    )

    commit(
        TOMAS,
        "Fix truncate() returning text longer than width for tiny widths\n\n"
        "With width=2 and the default ellipsis the slice index went negative and the\n"
        "result grew instead of shrinking. Negative widths are now an error.\n\n"
        "Fixes #9.",
        define(
            TRUNC,
            '''
            def truncate(text, width, ellipsis="..."):
                """Cut *text* to at most *width* characters, ending in *ellipsis*.

                Text that already fits is returned unchanged. A width too small for the
                ellipsis gets as much of the ellipsis as fits.
                """
                if width < 0:
                    raise ValueError("width must not be negative")
                if len(text) <= width:
                    return text
                if width <= len(ellipsis):
                    return ellipsis[:width]
                return text[: width - len(ellipsis)] + ellipsis
            ''',
        ),
        sub(
            T_TRUNC,
            "from inkwell import truncate\n",
            "import pytest\n\nfrom inkwell import truncate\n",
        ),
        append(
            T_TRUNC,
            """
            def test_width_smaller_than_ellipsis_never_exceeds_width():
                assert truncate("hello world", 2) == ".."
                assert truncate("hello world", 0) == ""


            def test_negative_width_is_rejected():
                with pytest.raises(ValueError):
                    truncate("hello", -1)
            """,
        ),
        kind="task",
    )

    commit(
        KENJI,
        "Add kebab_case() and pascal_case() (#4)",
        append(
            CASE,
            '''
            def kebab_case(text):
                """``"Hello World"`` and ``"helloWorld"`` both become ``"hello-world"``."""
                return "-".join(word.lower() for word in _words(text))


            def pascal_case(text):
                """``"hello_world"`` and ``"hello world"`` both become ``"HelloWorld"``."""
                return "".join(word.capitalize() for word in _words(text))
            ''',
        ),
        export("case", "kebab_case", "pascal_case"),
        sub(
            T_CASE,
            "from inkwell.case import camel_case, snake_case\n",
            "from inkwell.case import camel_case, kebab_case, pascal_case, snake_case\n",
        ),
        append(
            T_CASE,
            """
            def test_kebab_case_from_camel_case():
                assert kebab_case("helloBigWorld") == "hello-big-world"


            def test_kebab_case_from_snake_case():
                assert kebab_case("hello_world") == "hello-world"


            def test_pascal_case_from_words():
                assert pascal_case("hello big world") == "HelloBigWorld"
            """,
        ),
        kind="task",
        committer=GITHUB,
    )

    commit(
        ADA,
        "Bump version to 0.1.0",
        bump("0.1.0"),
        new(
            "CHANGELOG.md",
            """
            # Changelog

            ## 0.1.0

            - `slugify()` with a configurable separator.
            - `snake_case()`, `camel_case()`, `kebab_case()` and `pascal_case()`.
            - `truncate()` with a configurable ellipsis.
            """,
        ),
        kind="bump",
    )

    commit(
        PRIYA,
        "Fix snake_case splitting acronyms into single letters\n\n"
        '"HTTPServer" became "h_t_t_p_server". A run of capitals is now one word,\n'
        "up to the capital that starts the next word.",
        sub(
            CASE,
            '_WORD = re.compile(r"[A-Za-z][a-z]*|[0-9]+")',
            '_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")',
        ),
        append(
            T_CASE,
            """
            def test_snake_case_keeps_acronyms_together():
                assert snake_case("HTTPServer") == "http_server"
                assert snake_case("getHTTPResponseCode") == "get_http_response_code"


            def test_camel_case_lowercases_a_leading_acronym():
                assert camel_case("HTTP server") == "httpServer"
            """,
        ),
        kind="task",
    )

    commit(
        TOMAS,
        "WIP",
        new(
            COUNT,
            r'''
            """Count words."""

            import re

            _WORD = re.compile(r"\w+")


            def word_count(text):
                return len(_WORD.findall(text))
            ''',
        ),
        kind="wip",
    )

    commit(
        TOMAS,
        "Add word_count() and reading_time()",
        put(
            COUNT,
            r'''
            """Count words and estimate how long a text takes to read."""

            import re

            _WORD = re.compile(r"\w+")


            def word_count(text):
                """Number of words in *text*; punctuation and whitespace separate words."""
                return len(_WORD.findall(text))


            def reading_time(text, words_per_minute=200):
                """Minutes a reader needs for *text* at *words_per_minute*."""
                return round(word_count(text) / words_per_minute)
            ''',
        ),
        export("count", "word_count", "reading_time"),
        new(
            T_COUNT,
            """
            from inkwell.count import reading_time, word_count


            def test_word_count_splits_on_whitespace_and_punctuation():
                assert word_count("Hello, world! How are you?") == 5


            def test_word_count_of_empty_text():
                assert word_count("") == 0


            def test_reading_time_of_a_long_text():
                assert reading_time("word " * 400) == 2


            def test_reading_time_with_custom_speed():
                assert reading_time("word " * 300, words_per_minute=100) == 3
            """,
        ),
        kind="task",
    )

    commit(
        KENJI,
        "Add title_case() that keeps small words lowercase",
        sub(
            CASE,
            "\n\n\ndef _words(text):",
            "\n\nSMALL_WORDS = frozenset("
            '"a an and as at but by for in nor of on or the to".split())'
            "\n\n\ndef _words(text):",
        ),
        append(
            CASE,
            '''
            def title_case(text):
                """Capitalise every word of *text* except small words like "of" and "the"."""
                return " ".join(
                    word.lower() if word.lower() in SMALL_WORDS else word.capitalize()
                    for word in text.split()
                )
            ''',
        ),
        export("case", "title_case"),
        sub(
            T_CASE,
            "from inkwell.case import camel_case, kebab_case, pascal_case, snake_case\n",
            "from inkwell.case import (\n    camel_case,\n    kebab_case,\n    pascal_case,\n"
            "    snake_case,\n    title_case,\n)\n",
        ),
        append(
            T_CASE,
            """
            def test_title_case_capitalises_words():
                assert title_case("hello big world") == "Hello Big World"


            def test_title_case_keeps_small_words_lowercase():
                assert title_case("war and peace") == "War and Peace"
            """,
        ),
        kind="task",
    )

    commit(
        PRIYA,
        "Add tests for slugify edge cases",
        append(
            T_SLUG,
            """
            def test_empty_text_gives_empty_slug():
                assert slugify("") == ""


            def test_text_without_letters_gives_empty_slug():
                assert slugify("!!! ???") == ""


            def test_symbols_and_emoji_are_dropped():
                assert slugify("I ♥ Python 🐍") == "i-python"
            """,
        ),
        kind="tests-only",
    )



def _pull_request_7(h: History) -> None:
    """wrap() on a branch with WIP commits, merged while main moved on."""
    commit = h.commit

    # Pull request #7: wrap(), with the usual work-in-progress commits inside.
    h.fork("tomas/wrap-paragraphs")
    pr7 = {"branch": "tomas/wrap-paragraphs", "kind": "branch", "soon": True}
    commit(
        TOMAS,
        "wip: wrap",
        new(
            WRAP,
            '''
            """Greedy word wrapping."""


            def wrap(text, width=70):
                lines = []
                current = ""
                for word in text.split():
                    if current and len(current) + 1 + len(word) > width:
                        lines.append(current)
                        current = word
                    else:
                        current = current + " " + word if current else word
                if current:
                    lines.append(current)
                return lines
            ''',
        ),
        new(
            T_WRAP,
            """
            from inkwell.wrap import wrap

            TEXT = "The quick brown fox jumps over the lazy dog"


            def test_lines_fit_the_width():
                assert wrap(TEXT, width=15) == ["The quick brown", "fox jumps over", "the lazy dog"]


            def test_hanging_indent():
                assert wrap(TEXT, width=16, hanging="  ") == [
                    "The quick brown",
                    "  fox jumps over",
                    "  the lazy dog",
                ]
            """,
        ),
        **pr7,
    )
    commit(
        TOMAS,
        "wip",
        define(
            WRAP,
            """
            def wrap(text, width=70, indent="", hanging=""):
                lines = []
                current = indent
                for word in text.split():
                    if current.strip() and len(current) + 1 + len(word) > width:
                        lines.append(current)
                        current = hanging + word
                    elif current.strip():
                        current = current + " " + word
                    else:
                        current = current + word
                if current.strip():
                    lines.append(current)
                return lines
            """,
        ),
        append(
            T_WRAP,
            """
            def test_first_line_indent():
                assert wrap(TEXT, width=20, indent="- ", hanging="  ") == [
                    "- The quick brown fox",
                    "  jumps over the lazy",
                    "  dog",
                ]
            """,
        ),
        **pr7,
    )
    commit(
        TOMAS,
        "fix tests",
        define(
            WRAP,
            '''
            def wrap(text, width=70, indent="", hanging=""):
                """Break *text* into lines of at most *width* characters.

                The first line starts with *indent* and every following line with
                *hanging*. Runs of whitespace collapse to single spaces. A word longer
                than the room on a line gets a line of its own.
                """
                if width <= max(len(indent), len(hanging)):
                    raise ValueError("width must be larger than the indents")
                lines = []
                current = indent
                filled = False
                for word in text.split():
                    if filled and len(current) + 1 + len(word) > width:
                        lines.append(current)
                        current = hanging + word
                    elif filled:
                        current = current + " " + word
                    else:
                        current = current + word
                    filled = True
                if filled:
                    lines.append(current)
                return lines
            ''',
        ),
        put(
            T_WRAP,
            """
            import pytest

            from inkwell.wrap import wrap

            TEXT = "The quick brown fox jumps over the lazy dog"


            def test_lines_fit_the_width():
                lines = wrap(TEXT, width=15)
                assert lines == ["The quick brown", "fox jumps over", "the lazy dog"]
                assert all(len(line) <= 15 for line in lines)


            def test_short_text_is_one_line():
                assert wrap("hello world", width=20) == ["hello world"]


            def test_empty_text_gives_no_lines():
                assert wrap("   ") == []


            def test_hanging_indent():
                assert wrap(TEXT, width=16, hanging="  ") == [
                    "The quick brown",
                    "  fox jumps over",
                    "  the lazy dog",
                ]


            def test_first_line_indent():
                assert wrap(TEXT, width=20, indent="- ", hanging="  ") == [
                    "- The quick brown",
                    "  fox jumps over the",
                    "  lazy dog",
                ]


            def test_long_word_gets_its_own_line():
                lines = wrap("a supercalifragilistic b", width=10)
                assert lines == ["a", "supercalifragilistic", "b"]


            def test_width_must_leave_room_after_indents():
                with pytest.raises(ValueError):
                    wrap(TEXT, width=2, indent="  ")
            """,
        ),
        **pr7,
    )
    commit(
        TOMAS,
        "Add fill() and export wrap() and fill()",
        sub(
            WRAP,
            '"""Greedy word wrapping."""',
            '"""Greedy word wrapping with a first-line indent and a hanging indent."""',
        ),
        append(
            WRAP,
            '''
            def fill(text, width=70, indent="", hanging=""):
                """Like :func:`wrap`, but return one string with the lines joined."""
                return "\\n".join(wrap(text, width, indent, hanging))
            ''',
        ),
        export("wrap", "wrap", "fill"),
        sub(T_WRAP, "from inkwell.wrap import wrap\n", "from inkwell import fill, wrap\n"),
        append(
            T_WRAP,
            """
            def test_fill_joins_lines():
                assert fill(TEXT, width=15) == "The quick brown\\nfox jumps over\\nthe lazy dog"
            """,
        ),
        **pr7,
    )

    commit(
        PRIYA,
        "Fix reading_time rounding short texts down to zero minutes\n\n"
        "round() turned anything under 100 words into 0 minutes. Round up instead:\n"
        "a text with words in it takes at least a minute.",
        sub(COUNT, "import re\n", "import math\nimport re\n"),
        define(
            COUNT,
            '''
            def reading_time(text, words_per_minute=200):
                """Minutes a reader needs for *text* at *words_per_minute*, rounded up.

                Any text with at least one word takes at least a minute.
                """
                return math.ceil(word_count(text) / words_per_minute)
            ''',
        ),
        append(
            T_COUNT,
            """
            def test_reading_time_of_a_short_text_is_one_minute():
                assert reading_time("just a few words") == 1


            def test_reading_time_of_empty_text_is_zero():
                assert reading_time("") == 0
            """,
        ),
        kind="task",
    )

    h.merge("tomas/wrap-paragraphs", 7, "Add wrap() for paragraphs with hanging indent", ADA)



def _black_and_dependency_groups(h: History) -> None:
    """black, 0.2.0, and the move to a PEP 735 dependency group (era 2)."""
    commit = h.commit

    h.adopt_black(
        ADA,
        "Adopt black and reformat the code base\n\n"
        "Double quotes everywhere; pre-commit runs black from now on.",
        new(
            PRE_COMMIT,
            """
            repos:
              - repo: https://github.com/psf/black
                rev: 23.12.1
                hooks:
                  - id: black
              - repo: https://github.com/pre-commit/pre-commit-hooks
                rev: v4.5.0
                hooks:
                  - id: end-of-file-fixer
                  - id: trailing-whitespace
            """,
        ),
        sub(
            "pyproject.toml",
            "[tool.pytest.ini_options]",
            '[tool.black]\ntarget-version = ["py39"]\n\n[tool.pytest.ini_options]',
        ),
        put(".flake8", "[flake8]\nmax-line-length = 88\nextend-ignore = E203\n"),
    )

    commit(
        ADA,
        "Ignore the black commit in git blame",
        new(
            ".git-blame-ignore-revs",
            f"# Adopt black and reformat the code base\n{h.landed['black'].sha}\n",
        ),
        kind="config",
    )

    message, edits = autoupdate(("psf/black", "23.12.1", "24.1.1"))
    commit(BOT, message, *edits, kind="bot", committer=GITHUB)

    commit(
        KENJI,
        "Fix slugify splitting words at apostrophes\n\n"
        '"Don\'t stop" became "don-t-stop". Apostrophes are now dropped before the\n'
        "text is split into words.",
        sub(
            SLUG,
            '_NOT_ALNUM = re.compile(r"[^a-z0-9]+")\n',
            '_NOT_ALNUM = re.compile(r"[^a-z0-9]+")\n_APOSTROPHES = re.compile(r"[\'’]")\n',
        ),
        define(
            SLUG,
            '''
            def slugify(text, separator="-"):
                """Return *text* as a lowercase ASCII slug with words joined by *separator*.

                Accents are stripped (``"Crème"`` becomes ``"creme"``), apostrophes are
                dropped so that ``"don't"`` stays one word, and every run of other
                characters becomes a single separator.
                """
                text = _APOSTROPHES.sub("", text)
                normalized = unicodedata.normalize("NFKD", text)
                ascii_text = normalized.encode("ascii", "ignore").decode("ascii")
                return _NOT_ALNUM.sub(separator, ascii_text.lower()).strip(separator)
            ''',
        ),
        append(
            T_SLUG,
            """
            def test_apostrophes_do_not_split_words():
                assert slugify("Don't stop") == "dont-stop"
                assert slugify("It’s fine") == "its-fine"
            """,
        ),
        kind="task",
    )

    commit(
        TOMAS,
        "Fix word_count counting contractions as two words",
        sub(COUNT, '_WORD = re.compile(r"\\w+")', '_WORD = re.compile(r"\\w+(?:[\'’]\\w+)*")'),
        append(
            T_COUNT,
            """
            def test_word_count_treats_contractions_as_one_word():
                assert word_count("Don't stop, it's fine") == 4
            """,
        ),
        kind="task",
    )

    commit(
        ADA,
        "Bump version to 0.2.0",
        bump("0.2.0"),
        sub(
            "CHANGELOG.md",
            "# Changelog\n",
            "# Changelog\n\n## 0.2.0\n\n"
            "- `wrap()` and `fill()` with first-line and hanging indents.\n"
            "- `word_count()`, `reading_time()` and `title_case()`.\n"
            "- Fixed: acronyms in `snake_case()`, apostrophes in `slugify()`, contractions\n"
            "  in `word_count()`.\n",
        ),
        kind="bump",
    )

    commit(
        ADA,
        "Move test dependencies to a PEP 735 dependency group\n\n"
        "The test extra was never meant for users. pip 25.1 and uv install groups\n"
        "with --group. Editable installs without setup.py need setuptools 64.",
        sub("pyproject.toml", 'requires = ["setuptools>=61"]', 'requires = ["setuptools>=64"]'),
        sub("pyproject.toml", '[project.optional-dependencies]\ntest = ["pytest"]\n\n', ""),
        sub(
            "pyproject.toml",
            "[tool.setuptools.dynamic]",
            '[dependency-groups]\ntest = ["pytest>=7.4"]\ndev = [{ include-group = "test" }]\n\n'
            "[tool.setuptools.dynamic]",
        ),
        sub(
            "README.md",
            '    python -m pip install -e ".[test]"\n',
            "    python -m pip install -e . --group test    # pip >= 25.1\n",
        ),
        kind="deps",
    )

    commit(
        PRIYA,
        "Fix title_case lowercasing a small word at the start\n\n"
        '"the lord of the rings" came out as "the Lord of the Rings". The first and\n'
        "the last word are now always capitalised, as style guides ask.",
        define(
            CASE,
            '''
            def title_case(text):
                """Capitalise every word of *text* except small words like "of" and "the".

                The first and the last word are always capitalised.
                """
                words = text.split()
                last = len(words) - 1
                return " ".join(
                    word.capitalize()
                    if i in (0, last) or word.lower() not in SMALL_WORDS
                    else word.lower()
                    for i, word in enumerate(words)
                )
            ''',
        ),
        append(
            T_CASE,
            """
            def test_title_case_capitalises_a_small_first_or_last_word():
                assert title_case("the lord of the rings") == "The Lord of the Rings"
                assert title_case("what dreams are made of") == "What Dreams Are Made Of"
            """,
        ),
        kind="task",
    )

    commit(
        ADA,
        "Add a whole_words option to truncate()",
        define(
            TRUNC,
            '''
            def truncate(text, width, ellipsis="...", whole_words=False):
                """Cut *text* to at most *width* characters, ending in *ellipsis*.

                Text that already fits is returned unchanged. A width too small for the
                ellipsis gets as much of the ellipsis as fits. With *whole_words* the cut
                moves back to the last space so that no word is split, unless the first
                word alone is too long.
                """
                if width < 0:
                    raise ValueError("width must not be negative")
                if len(text) <= width:
                    return text
                if width <= len(ellipsis):
                    return ellipsis[:width]
                cut = text[: width - len(ellipsis)]
                if whole_words and " " in cut:
                    cut = cut[: cut.rindex(" ")]
                return cut + ellipsis
            ''',
        ),
        append(
            T_TRUNC,
            """
            def test_whole_words_cuts_at_a_space():
                assert truncate("hello wonderful world", 14, whole_words=True) == "hello..."


            def test_whole_words_cuts_a_single_long_word():
                assert truncate("supercalifragilistic", 8, whole_words=True) == "super..."
            """,
        ),
        kind="task",
    )

    message, edits = autoupdate(
        ("psf/black", "24.1.1", "24.4.2"), ("pre-commit/pre-commit-hooks", "v4.5.0", "v4.6.0")
    )
    commit(BOT, message, *edits, kind="bot", committer=GITHUB)

    commit(
        TOMAS,
        "Fix slugify dropping letters that have no ASCII decomposition\n\n"
        "ß, æ, ø, ł and friends do not decompose under NFKD, so encoding to ASCII\n"
        'silently dropped them: "Straße" became "strae". Transliterate them first.\n\n'
        "Fixes #16.",
        sub(
            SLUG,
            '_APOSTROPHES = re.compile(r"[\'’]")\n',
            '_APOSTROPHES = re.compile(r"[\'’]")\n\n'
            "# Letters that NFKD leaves alone, so that encoding to ASCII would drop them.\n"
            "_TRANSLITERATIONS = str.maketrans(\n    {\n"
            + "".join(
                f'        "{k}": "{v}",\n'
                for k, v in [
                    ("ß", "ss"), ("æ", "ae"), ("Æ", "AE"), ("ø", "o"), ("Ø", "O"),
                    ("œ", "oe"), ("Œ", "OE"), ("ł", "l"), ("Ł", "L"), ("đ", "d"),
                    ("Đ", "D"), ("þ", "th"), ("Þ", "TH"),
                ]
            )
            + "    }\n)\n",
        ),
        sub(
            SLUG,
            '    normalized = unicodedata.normalize("NFKD", text)\n',
            '    normalized = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATIONS))\n',
        ),
        sub(
            T_SLUG,
            "from inkwell import slugify\n",
            "import pytest\n\nfrom inkwell import slugify\n",
        ),
        append(
            T_SLUG,
            """
            @pytest.mark.parametrize(
                ("text", "slug"),
                [
                    ("Straße", "strasse"),
                    ("Smørrebrød", "smorrebrod"),
                    ("Łódź", "lodz"),
                    ("Æsir", "aesir"),
                ],
            )
            def test_letters_without_ascii_decomposition_are_transliterated(text, slug):
                assert slugify(text) == slug
            """,
        ),
        kind="task",
    )

    commit(
        KENJI,
        "Cache word splitting in case conversions",
        sub(CASE, "import re\n", "import re\nfrom functools import lru_cache\n"),
        define(
            CASE,
            """
            @lru_cache(maxsize=None)
            def _words(text):
                return tuple(_WORD.findall(text))
            """,
        ),
        kind="no-tests",
        label="cache",
    )

    h.revert(
        "cache",
        ADA,
        "An unbounded cache keeps every string ever converted alive, and the\n"
        "pattern is compiled once at import anyway. See #21.",
    )

    commit(
        PRIYA,
        "Support truncating in the middle of the text\n\n"
        'position="middle" keeps the start and the end, which suits file paths.',
        define(
            TRUNC,
            '''
            def truncate(text, width, ellipsis="...", whole_words=False, position="end"):
                """Cut *text* to at most *width* characters, marking the cut with *ellipsis*.

                Text that already fits is returned unchanged. A width too small for the
                ellipsis gets as much of the ellipsis as fits. With *whole_words* the cut
                moves back to the last space so that no word is split, unless the first
                word alone is too long. ``position="middle"`` keeps the start and the end
                of the text and drops its middle instead, which suits file paths.
                """
                if width < 0:
                    raise ValueError("width must not be negative")
                if position not in ("end", "middle"):
                    raise ValueError(f"position must be 'end' or 'middle', not {position!r}")
                if len(text) <= width:
                    return text
                if width <= len(ellipsis):
                    return ellipsis[:width]
                keep = width - len(ellipsis)
                if position == "middle":
                    return text[: (keep + 1) // 2] + ellipsis + text[len(text) - keep // 2 :]
                cut = text[:keep]
                if whole_words and " " in cut:
                    cut = cut[: cut.rindex(" ")]
                return cut + ellipsis
            ''',
        ),
        append(
            T_TRUNC,
            """
            def test_middle_position_keeps_both_ends():
                path = "/home/ada/projects/inkwell/README.md"
                assert truncate(path, 21, position="middle") == "/home/ada...README.md"
                assert truncate("abcdefghij", 6, position="middle") == "ab...j"


            def test_unknown_position_is_rejected():
                with pytest.raises(ValueError, match="position"):
                    truncate("hello world", 5, position="start")
            """,
        ),
        kind="task",
    )



def _pull_request_12(h: History) -> None:
    """render() on a branch, merged while main fixed fill()."""
    commit = h.commit

    # Pull request #12: render(), a tiny template formatter.
    h.fork("priya/template")
    pr12 = {"branch": "priya/template", "kind": "branch", "soon": True}
    commit(
        PRIYA,
        "Add render() skeleton",
        new(
            TMPL,
            r'''
            """A tiny template formatter."""

            import re

            _PLACEHOLDER = re.compile(r"\{(\w+)\}")


            def render(template, **values):
                return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), template)
            ''',
        ),
        new(
            T_TMPL,
            """
            from inkwell.template import render


            def test_replaces_placeholders():
                assert render("Hello {name}!", name="Ada") == "Hello Ada!"
            """,
        ),
        **pr12,
    )
    commit(
        PRIYA,
        "wip filters",
        put(
            TMPL,
            r'''
            """A tiny template formatter."""

            import re

            _PLACEHOLDER = re.compile(r"\{([^{}]+)\}")

            FILTERS = {"upper": str.upper, "lower": str.lower, "title": str.title}


            def render(template, **values):
                def substitute(match):
                    name, *filters = match.group(1).split("|")
                    result = str(values[name])
                    for f in filters:
                        result = FILTERS[f](result)
                    return result

                return _PLACEHOLDER.sub(substitute, template)
            ''',
        ),
        put(
            T_TMPL,
            """
            import pytest

            from inkwell.template import TemplateError, render


            def test_replaces_placeholders():
                assert render("Hello {name}!", name="Ada") == "Hello Ada!"


            def test_filters():
                assert render("{name|upper}", name="ada") == "ADA"


            def test_missing_value():
                with pytest.raises(TemplateError):
                    render("Hello {name}!")
            """,
        ),
        **pr12,
    )
    commit(
        PRIYA,
        "fix tests",
        put(
            TMPL,
            r'''
            """A tiny template formatter."""

            import re

            _PLACEHOLDER = re.compile(r"\{([^{}]+)\}")

            FILTERS = {"upper": str.upper, "lower": str.lower, "title": str.title}


            class TemplateError(ValueError):
                pass


            def render(template, **values):
                def substitute(match):
                    name, *filters = [part.strip() for part in match.group(1).split("|")]
                    if name not in values:
                        raise TemplateError(f"no value for placeholder {name!r}")
                    result = str(values[name])
                    for f in filters:
                        result = FILTERS[f](result)
                    return result

                return _PLACEHOLDER.sub(substitute, template)
            ''',
        ),
        **pr12,
    )

    commit(
        TOMAS,
        "Fix fill() merging separate paragraphs into one\n\n"
        "fill() wrapped the whole text as one paragraph, so blank lines vanished.\n"
        "Each paragraph is now wrapped on its own.",
        sub(
            WRAP,
            'indent."""\n',
            'indent."""\n\nimport re\n\n_PARAGRAPH_BREAK = re.compile(r"\\n\\s*\\n")\n',
        ),
        define(
            WRAP,
            '''
            def fill(text, width=70, indent="", hanging=""):
                """Like :func:`wrap`, but return one string with the lines joined.

                Paragraphs, separated by blank lines, are wrapped on their own and stay
                separated by one blank line.
                """
                paragraphs = [p for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
                return "\\n\\n".join(
                    "\\n".join(wrap(paragraph, width, indent, hanging)) for paragraph in paragraphs
                )
            ''',
        ),
        append(
            T_WRAP,
            """
            def test_fill_keeps_paragraphs_apart():
                text = "one two three\\n\\n  four five\\nsix\\n"
                assert fill(text, width=9) == "one two\\nthree\\n\\nfour five\\nsix"
            """,
        ),
        kind="task",
    )

    commit(
        PRIYA,
        "address review comments",
        put(
            TMPL,
            r'''
            """A tiny template formatter: ``{name}`` placeholders with ``|filter`` pipes.

                >>> render("Hello {name|title}!", name="ada lovelace")
                'Hello Ada Lovelace!'
            """

            import re

            _PLACEHOLDER = re.compile(r"\{([^{}]+)\}")

            FILTERS = {
                "lower": str.lower,
                "strip": str.strip,
                "title": str.title,
                "upper": str.upper,
            }


            class TemplateError(ValueError):
                """A placeholder has no value, or names a filter that does not exist."""


            def render(template, **values):
                """Replace every ``{name}`` in *template* with ``values[name]``.

                A placeholder may pipe the value through filters: ``{name|upper}``.
                """

                def substitute(match):
                    name, *filters = [part.strip() for part in match.group(1).split("|")]
                    if name not in values:
                        raise TemplateError(f"no value for placeholder {name!r}")
                    result = str(values[name])
                    for filter_name in filters:
                        result = FILTERS[filter_name](result)
                    return result

                return _PLACEHOLDER.sub(substitute, template)
            ''',
        ),
        export("template", "render", "TemplateError"),
        put(
            T_TMPL,
            """
            import pytest

            from inkwell import TemplateError, render


            def test_replaces_placeholders():
                assert render("Hello {name}!", name="Ada") == "Hello Ada!"


            def test_values_are_converted_to_strings():
                assert render("{count} items", count=3) == "3 items"


            def test_filters_are_applied_in_order():
                assert render("{name|strip|upper}", name="  ada ") == "ADA"


            def test_missing_value_raises_template_error():
                with pytest.raises(TemplateError, match="name"):
                    render("Hello {name}!")


            def test_text_without_placeholders_is_unchanged():
                assert render("plain text") == "plain text"
            """,
        ),
        **pr12,
    )

    h.merge("priya/template", 12, "Add render(), a tiny template formatter with filters", ADA)



def _release_0_3(h: History) -> None:
    """0.3.0, template fixes, and pull request #15."""
    commit = h.commit

    commit(
        ADA,
        "Bump version to 0.3.0",
        bump("0.3.0"),
        sub(
            "CHANGELOG.md",
            "# Changelog\n",
            "# Changelog\n\n## 0.3.0\n\n"
            "- `render()`, a tiny template formatter with filters.\n"
            "- `truncate()` can keep whole words and cut in the middle.\n"
            "- Fixed: `fill()` keeps paragraphs apart; `slugify()` transliterates ß, æ, ø,\n"
            "  ł and friends; `title_case()` capitalises a small first or last word.\n"
            "- The test requirements moved to a PEP 735 dependency group.\n",
        ),
        kind="bump",
    )

    render_v2 = '''
            def render(template, **values):
                """Replace every ``{name}`` in *template* with ``values[name]``.

                A placeholder may pipe the value through filters: ``{name|upper}``.
                Write ``{{`` and ``}}`` for literal braces.
                """

                def substitute(match):
                    if match.group(1) is None:
                        return match.group(0)[0]
                    name, *filters = [part.strip() for part in match.group(1).split("|")]
                    if name not in values:
                        raise TemplateError(f"no value for placeholder {name!r}")
                    result = str(values[name])
                    for filter_name in filters:
                        result = FILTERS[filter_name](result)
                    return result

                return _TOKEN.sub(substitute, template)
            '''
    commit(
        KENJI,
        "Fix render() treating doubled braces as placeholders\n\n"
        '"{{name}}" rendered the value in single braces instead of the literal\n'
        '"{name}" that str.format users expect.',
        sub(
            TMPL,
            '_PLACEHOLDER = re.compile(r"\\{([^{}]+)\\}")',
            '# An escaped brace, or a placeholder with its name and filters in group 1.\n'
            '_TOKEN = re.compile(r"\\{\\{|\\}\\}|\\{([^{}]+)\\}")',
        ),
        define(TMPL, render_v2),
        append(
            T_TMPL,
            """
            def test_doubled_braces_are_literal():
                assert render("{{name}} is {name}", name="Ada") == "{name} is Ada"
                assert render("{{}}") == "{}"
            """,
        ),
        kind="task",
    )

    # Pull request #15: char_count(), one real commit and one for the tests.
    h.fork("kenji/char-count")
    pr15 = {"branch": "kenji/char-count", "kind": "branch", "soon": True}
    commit(
        KENJI,
        "Add char_count()",
        append(
            COUNT,
            '''
            def char_count(text, whitespace=True):
                """Number of characters in *text*.

                With ``whitespace=False`` spaces, tabs and newlines do not count.
                """
                if whitespace:
                    return len(text)
                return sum(1 for char in text if not char.isspace())
            ''',
        ),
        export("count", "char_count"),
        sub(
            T_COUNT,
            "from inkwell.count import reading_time, word_count\n",
            "from inkwell.count import char_count, reading_time, word_count\n",
        ),
        append(
            T_COUNT,
            """
            def test_char_count_counts_every_character():
                assert char_count("hi there") == 8


            def test_char_count_can_skip_whitespace():
                assert char_count("hi there", whitespace=False) == 7
            """,
        ),
        **pr15,
    )
    commit(
        KENJI,
        "Test char_count with tabs and newlines",
        append(
            T_COUNT,
            """
            def test_char_count_skips_tabs_and_newlines_too():
                assert char_count("a\\tb\\nc ", whitespace=False) == 3
            """,
        ),
        **pr15,
    )

    commit(
        PRIYA,
        "Add a default filter for placeholders without a value\n\n"
        "{name|default:anonymous} renders \"anonymous\" when name is missing; the\n"
        "default goes through the filters after it like any value.",
        define(
            TMPL,
            '''
            def _default(pipes):
                """The argument of the ``default`` filter among *pipes*, or None."""
                for pipe in pipes:
                    filter_name, _, argument = pipe.partition(":")
                    if filter_name == "default":
                        return argument
                return None
            ''',
            before="render",
        ),
        define(
            TMPL,
            '''
            def render(template, **values):
                """Replace every ``{name}`` in *template* with ``values[name]``.

                A placeholder may pipe the value through filters: ``{name|upper}``;
                ``{name|default:anonymous}`` stands in for a missing value. Write ``{{``
                and ``}}`` for literal braces.
                """

                def substitute(match):
                    if match.group(1) is None:
                        return match.group(0)[0]
                    name, *pipes = [part.strip() for part in match.group(1).split("|")]
                    if name in values:
                        result = str(values[name])
                    else:
                        result = _default(pipes)
                        if result is None:
                            raise TemplateError(f"no value for placeholder {name!r}")
                    for pipe in pipes:
                        filter_name = pipe.partition(":")[0]
                        if filter_name != "default":
                            result = FILTERS[filter_name](result)
                    return result

                return _TOKEN.sub(substitute, template)
            ''',
        ),
        append(
            T_TMPL,
            """
            def test_default_filter_fills_in_missing_values():
                assert render("Hello {name|default:stranger}!") == "Hello stranger!"
                assert render("Hello {name|default:stranger}!", name="Ada") == "Hello Ada!"


            def test_default_value_goes_through_later_filters():
                assert render("{name|default:anon|upper}") == "ANON"
            """,
        ),
        kind="task",
    )

    h.merge("kenji/char-count", 15, "Add char_count() with an option to skip whitespace", ADA)



def _release_0_4(h: History) -> None:
    """Accents, TypeErrors, slug options, 0.4.0 and the type hints."""
    commit = h.commit

    message, edits = autoupdate(("psf/black", "24.4.2", "24.8.0"))
    commit(BOT, message, *edits, kind="bot", committer=GITHUB)

    commit(
        TOMAS,
        "Fix case conversions dropping accented letters\n\n"
        'The word pattern only knew ASCII letters, so "Café au lait" became\n'
        '"caf_au_lait". Words are now runs of any letters, split at camel humps.',
        sub(
            CASE,
            '_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")',
            "# Runs of letters (any script) or of digits; camel humps are split later.\n"
            '_RUN = re.compile(r"[^\\W\\d_]+|\\d+")',
        ),
        define(
            CASE,
            '''
            def _split_humps(run):
                """Split ``"getHTTPResponse"`` into ``["get", "HTTP", "Response"]``."""
                words = []
                start = 0
                for i in range(1, len(run)):
                    before, char = run[i - 1], run[i]
                    after = run[i + 1] if i + 1 < len(run) else ""
                    hump = before.islower() or (before.isupper() and after.islower())
                    if char.isupper() and hump:
                        words.append(run[start:i])
                        start = i
                words.append(run[start:])
                return words
            ''',
            before="_words",
        ),
        define(
            CASE,
            """
            def _words(text):
                runs = _RUN.findall(text)
                return [word for run in runs for word in _split_humps(run)]
            """,
        ),
        append(
            T_CASE,
            """
            def test_accented_letters_stay_in_their_words():
                assert snake_case("Café au lait") == "café_au_lait"
                assert camel_case("crème brûlée") == "crèmeBrûlée"
                assert kebab_case("ÉcoleNormale") == "école-normale"
            """,
        ),
        kind="task",
    )

    commit(
        ADA,
        "Raise TypeError for non-string input across the package\n\n"
        "bytes and None used to fail deep inside re or unicodedata with messages\n"
        "that did not say which argument was wrong.",
        new(
            CHECKS,
            '''
            """Argument checks shared by the public functions."""


            def require_text(value, name="text"):
                """Return *value*, or raise a TypeError naming *name* if it is not a str.

                Without this, bytes or None fail deep inside ``re`` or ``unicodedata``
                with messages that do not say which argument was wrong.
                """
                if not isinstance(value, str):
                    raise TypeError(f"{name} must be str, not {type(value).__name__}")
                return value
            ''',
        ),
        sub(
            SLUG,
            "import unicodedata\n",
            "import unicodedata\n\nfrom inkwell._checks import require_text\n",
        ),
        sub(
            SLUG,
            '    text = _APOSTROPHES.sub("", text)\n',
            '    text = _APOSTROPHES.sub("", require_text(text))\n',
        ),
        sub(CASE, "import re\n", "import re\n\nfrom inkwell._checks import require_text\n"),
        sub(
            CASE,
            "    runs = _RUN.findall(text)\n",
            "    runs = _RUN.findall(require_text(text))\n",
        ),
        sub(CASE, "    words = text.split()\n", "    words = require_text(text).split()\n"),
        sub(
            TRUNC,
            '"""Shorten text to a maximum width."""\n',
            '"""Shorten text to a maximum width."""\n\nfrom inkwell._checks import require_text\n',
        ),
        sub(TRUNC, "    if width < 0:\n", "    require_text(text)\n    if width < 0:\n"),
        sub(COUNT, "import re\n", "import re\n\nfrom inkwell._checks import require_text\n"),
        sub(
            COUNT,
            "    return len(_WORD.findall(text))\n",
            "    return len(_WORD.findall(require_text(text)))\n",
        ),
        sub(COUNT, "    if whitespace:\n", "    require_text(text)\n    if whitespace:\n"),
        append(
            T_SLUG,
            """
            @pytest.mark.parametrize("value", [None, b"hello", 42])
            def test_non_string_input_is_a_type_error(value):
                with pytest.raises(TypeError, match="text must be str"):
                    slugify(value)
            """,
        ),
        sub(
            T_CASE,
            "from inkwell.case import (\n",
            "import pytest\n\nfrom inkwell.case import (\n",
        ),
        append(
            T_CASE,
            """
            @pytest.mark.parametrize(
                "convert", [snake_case, camel_case, kebab_case, pascal_case, title_case]
            )
            def test_non_string_input_is_a_type_error(convert):
                with pytest.raises(TypeError, match="text must be str"):
                    convert(b"hello world")
            """,
        ),
        append(
            T_TRUNC,
            """
            def test_non_string_input_is_a_type_error():
                with pytest.raises(TypeError, match="text must be str"):
                    truncate(None, 5)
            """,
        ),
        sub(T_COUNT, "from inkwell.count import", "import pytest\n\nfrom inkwell.count import"),
        append(
            T_COUNT,
            """
            @pytest.mark.parametrize("count", [word_count, reading_time, char_count])
            def test_non_string_input_is_a_type_error(count):
                with pytest.raises(TypeError, match="text must be str"):
                    count(None)
            """,
        ),
        kind="task",
    )

    commit(
        KENJI,
        "Allow dotted names in render() placeholders (#18)\n\n"
        "{user.name} looks up a key of a mapping or an attribute of an object.",
        sub(TMPL, "import re\n", "import re\nfrom collections.abc import Mapping\n"),
        define(
            TMPL,
            '''
            def _lookup(values, name):
                """Resolve ``user.name``: a key of a mapping, else an attribute."""
                head, *rest = name.split(".")
                value = values[head]
                for part in rest:
                    if isinstance(value, Mapping) and part in value:
                        value = value[part]
                    elif hasattr(value, part):
                        value = getattr(value, part)
                    else:
                        raise KeyError(name)
                return value
            ''',
            before="_default",
        ),
        sub(
            TMPL,
            "        if name in values:\n"
            "            result = str(values[name])\n"
            "        else:\n"
            "            result = _default(pipes)\n"
            "            if result is None:\n"
            '                raise TemplateError(f"no value for placeholder {name!r}")\n',
            "        try:\n"
            "            result = str(_lookup(values, name))\n"
            "        except KeyError:\n"
            "            result = _default(pipes)\n"
            "            if result is None:\n"
            '                raise TemplateError(f"no value for placeholder {name!r}") from None\n',
        ),
        sub(
            TMPL,
            "    A placeholder may pipe the value through filters: ``{name|upper}``;\n",
            "    Dotted names reach into mappings and attributes: ``{user.name}``. A\n"
            "    placeholder may pipe the value through filters: ``{name|upper}``;\n",
        ),
        append(
            T_TMPL,
            """
            def test_dotted_names_reach_into_mappings_and_attributes():
                class User:
                    name = "Ada"

                site = {"title": "Inkwell"}
                result = render("{user.name} / {site.title}", user=User(), site=site)
                assert result == "Ada / Inkwell"


            def test_missing_attribute_raises_template_error():
                with pytest.raises(TemplateError, match="user.email"):
                    render("{user.email}", user=object())
            """,
        ),
        kind="task",
        committer=GITHUB,
    )

    commit(
        PRIYA,
        "Parametrize the case conversion tests",
        put(
            T_CASE,
            """
            import pytest

            from inkwell.case import (
                camel_case,
                kebab_case,
                pascal_case,
                snake_case,
                title_case,
            )


            @pytest.mark.parametrize(
                ("text", "expected"),
                [
                    ("Hello World", "hello_world"),
                    ("helloWorld", "hello_world"),
                    ("hello-big-world", "hello_big_world"),
                    ("HTTPServer", "http_server"),
                    ("getHTTPResponseCode", "get_http_response_code"),
                    ("Café au lait", "café_au_lait"),
                ],
            )
            def test_snake_case(text, expected):
                assert snake_case(text) == expected


            @pytest.mark.parametrize(
                ("text", "expected"),
                [
                    ("hello_world", "helloWorld"),
                    ("", ""),
                    ("HTTP server", "httpServer"),
                    ("crème brûlée", "crèmeBrûlée"),
                ],
            )
            def test_camel_case(text, expected):
                assert camel_case(text) == expected


            @pytest.mark.parametrize(
                ("text", "expected"),
                [
                    ("helloBigWorld", "hello-big-world"),
                    ("hello_world", "hello-world"),
                    ("ÉcoleNormale", "école-normale"),
                ],
            )
            def test_kebab_case(text, expected):
                assert kebab_case(text) == expected


            def test_pascal_case_from_words():
                assert pascal_case("hello big world") == "HelloBigWorld"


            @pytest.mark.parametrize(
                ("text", "expected"),
                [
                    ("hello big world", "Hello Big World"),
                    ("war and peace", "War and Peace"),
                    ("the lord of the rings", "The Lord of the Rings"),
                    ("what dreams are made of", "What Dreams Are Made Of"),
                ],
            )
            def test_title_case(text, expected):
                assert title_case(text) == expected


            @pytest.mark.parametrize(
                "convert", [snake_case, camel_case, kebab_case, pascal_case, title_case]
            )
            def test_non_string_input_is_a_type_error(convert):
                with pytest.raises(TypeError, match="text must be str"):
                    convert(b"hello world")
            """,
        ),
        kind="tests-only",
    )

    commit(
        TOMAS,
        "Raise TemplateError naming the filter when a filter is unknown\n\n"
        "A typo such as {name|uper} surfaced as a bare KeyError('uper').",
        sub(
            TMPL,
            "            if filter_name != \"default\":\n"
            "                result = FILTERS[filter_name](result)\n",
            "            if filter_name == \"default\":\n"
            "                continue\n"
            "            if filter_name not in FILTERS:\n"
            "                raise TemplateError(\n"
            "                    f\"unknown filter {filter_name!r} in placeholder {name!r}\"\n"
            "                )\n"
            "            result = FILTERS[filter_name](result)\n",
        ),
        append(
            T_TMPL,
            """
            def test_unknown_filter_raises_template_error():
                with pytest.raises(TemplateError, match="shout"):
                    render("{name|shout}", name="Ada")
            """,
        ),
        kind="task",
    )

    commit(
        ADA,
        "Add usage examples to the README",
        put(
            "README.md",
            """
            # inkwell

            Small, dependency-free helpers for everyday text.

            ```python
            >>> from inkwell import slugify, snake_case, truncate, fill, render
            >>> slugify("Crème Brûlée for 4")
            'creme-brulee-for-4'
            >>> snake_case("getHTTPResponseCode")
            'get_http_response_code'
            >>> truncate("Hello wonderful world", 14, whole_words=True)
            'Hello...'
            >>> print(fill("The quick brown fox jumps over the lazy dog", 20, hanging="  "))
            The quick brown fox
              jumps over the
              lazy dog
            >>> render("Hi {user.name|title}, {greeting|default:welcome}!", user={"name": "ada"})
            'Hi Ada, welcome!'

            ```

            ## What is in the box

            - `slugify(text, separator="-")`: URL-friendly slugs, accents stripped.
            - `snake_case`, `camel_case`, `kebab_case`, `pascal_case`, `title_case`.
            - `truncate(text, width, ellipsis="...", whole_words=False, position="end")`.
            - `wrap()` and `fill()`: word wrapping with a hanging indent.
            - `word_count()`, `reading_time()`, `char_count()`.
            - `render()`: `{name|filter}` templates.

            ## Development

                python -m pip install -e . --group test    # pip >= 25.1
                python -m pytest
            """,
        ),
        kind="docs",
    )

    slugify_v5 = '''
            def slugify(text, separator="-", max_length=None):
                """Return *text* as a lowercase ASCII slug with words joined by *separator*.

                Accents are stripped (``"Crème"`` becomes ``"creme"``), apostrophes are
                dropped so that ``"don't"`` stays one word, and every run of other
                characters becomes a single separator. A slug longer than *max_length*
                is cut at the last separator that fits, or mid-word if none does.
                """
                text = _APOSTROPHES.sub("", require_text(text))
                normalized = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATIONS))
                ascii_text = normalized.encode("ascii", "ignore").decode("ascii")
                slug = _NOT_ALNUM.sub(separator, ascii_text.lower()).strip(separator)
                if max_length is not None and len(slug) > max_length:
                    head = slug[: max_length + len(separator)]
                    if separator and separator in head:
                        slug = head[: head.rindex(separator)]
                    else:
                        slug = slug[:max_length]
                return slug
            '''
    commit(
        PRIYA,
        "Add max_length to slugify() that cuts at word boundaries",
        define(SLUG, slugify_v5),
        append(
            T_SLUG,
            """
            def test_max_length_cuts_at_a_word_boundary():
                assert slugify("Hello world again", max_length=11) == "hello-world"
                assert slugify("Hello world again", max_length=8) == "hello"


            def test_max_length_cuts_a_single_long_word():
                assert slugify("Supercalifragilistic", max_length=5) == "super"


            def test_short_slug_is_not_cut():
                assert slugify("Hello world", max_length=50) == "hello-world"
            """,
        ),
        kind="task",
    )

    commit(
        KENJI,
        "Add a lowercase flag to slugify() for case-sensitive slugs",
        sub(
            SLUG,
            '_NOT_ALNUM = re.compile(r"[^a-z0-9]+")',
            '_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")',
        ),
        define(
            SLUG,
            '''
            def slugify(text, separator="-", max_length=None, lowercase=True):
                """Return *text* as an ASCII slug with words joined by *separator*.

                Accents are stripped (``"Crème"`` becomes ``"creme"``), apostrophes are
                dropped so that ``"don't"`` stays one word, and every run of other
                characters becomes a single separator. The slug is lowercase unless
                *lowercase* is false. A slug longer than *max_length* is cut at the last
                separator that fits, or mid-word if none does.
                """
                text = _APOSTROPHES.sub("", require_text(text))
                normalized = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATIONS))
                ascii_text = normalized.encode("ascii", "ignore").decode("ascii")
                if lowercase:
                    ascii_text = ascii_text.lower()
                slug = _NOT_ALNUM.sub(separator, ascii_text).strip(separator)
                if max_length is not None and len(slug) > max_length:
                    head = slug[: max_length + len(separator)]
                    if separator and separator in head:
                        slug = head[: head.rindex(separator)]
                    else:
                        slug = slug[:max_length]
                return slug
            ''',
        ),
        append(
            T_SLUG,
            """
            def test_lowercase_false_keeps_the_case():
                assert slugify("Crème Brûlée", lowercase=False) == "Creme-Brulee"
                assert slugify("Straße in Łódź", lowercase=False) == "Strasse-in-Lodz"
            """,
        ),
        kind="task",
    )

    commit(
        ADA,
        "Bump version to 0.4.0",
        bump("0.4.0"),
        sub(
            "CHANGELOG.md",
            "# Changelog\n",
            "# Changelog\n\n## 0.4.0\n\n"
            "- `char_count()`.\n"
            "- `render()`: `{{`/`}}` escapes, a `default` filter, dotted names, and a clear\n"
            "  error for unknown filters.\n"
            "- `slugify()`: `max_length` and `lowercase`.\n"
            "- Non-string input raises `TypeError` everywhere.\n"
            "- Case conversions keep accented letters.\n",
        ),
        kind="bump",
    )

    commit(
        KENJI,
        "Fix truncate(whole_words=True) dropping a word that fits exactly\n\n"
        "When the cut fell right before a space the last word was complete, yet it\n"
        'was dropped: "hello big world" at width 12 gave "hello..." instead of\n'
        '"hello big...".',
        sub(
            TRUNC,
            '    if whole_words and " " in cut:\n',
            '    if whole_words and not text[keep].isspace() and " " in cut:\n',
        ),
        append(
            T_TRUNC,
            """
            def test_whole_words_keeps_a_word_that_ends_at_the_cut():
                assert truncate("hello big world", 12, whole_words=True) == "hello big..."
            """,
        ),
        kind="task",
    )

    message, edits = autoupdate(
        ("psf/black", "24.8.0", "24.10.0"), ("pre-commit/pre-commit-hooks", "v4.6.0", "v5.0.0")
    )
    commit(BOT, message, *edits, kind="bot", committer=GITHUB)

    commit(
        TOMAS,
        "Strip trailing punctuation before the ellipsis in truncate()\n\n"
        'truncate("Hello, wonderful world", 12, whole_words=True) gave "Hello,...".',
        sub(
            TRUNC,
            "from inkwell._checks import require_text\n",
            "from inkwell._checks import require_text\n\n"
            "# Dropped from the end of a whole-word cut, so that no comma precedes the ellipsis.\n"
            '_TRAILING = " ,;:-"\n',
        ),
        sub(
            TRUNC,
            '    if whole_words and not text[keep].isspace() and " " in cut:\n'
            '        cut = cut[: cut.rindex(" ")]\n',
            "    if whole_words:\n"
            '        if not text[keep].isspace() and " " in cut:\n'
            '            cut = cut[: cut.rindex(" ")]\n'
            "        cut = cut.rstrip(_TRAILING)\n",
        ),
        append(
            T_TRUNC,
            """
            def test_whole_words_drops_punctuation_before_the_ellipsis():
                assert truncate("Hello, wonderful world", 12, whole_words=True) == "Hello..."
                assert truncate("Hello, world again", 9, whole_words=True) == "Hello..."
            """,
        ),
        kind="task",
    )

    future = "from __future__ import annotations\n\n"
    commit(
        ADA,
        "Add type hints to the public API and ship py.typed",
        new("src/inkwell/py.typed", ""),
        sub(SLUG, "import re\n", future + "import re\n"),
        sub(
            SLUG,
            'def slugify(text, separator="-", max_length=None, lowercase=True):\n',
            "def slugify(\n    text: str,\n    separator: str = \"-\",\n"
            "    max_length: int | None = None,\n    lowercase: bool = True,\n) -> str:\n",
        ),
        sub(CASE, "import re\n", future + "import re\n"),
        sub(CASE, "def _split_humps(run):", "def _split_humps(run: str) -> list[str]:"),
        sub(CASE, "def _words(text):", "def _words(text: str) -> list[str]:"),
        *[
            sub(CASE, f"def {name}(text):", f"def {name}(text: str) -> str:")
            for name in ("snake_case", "camel_case", "kebab_case", "pascal_case", "title_case")
        ],
        sub(TRUNC, "from inkwell._checks", future + "from inkwell._checks"),
        sub(
            TRUNC,
            'def truncate(text, width, ellipsis="...", whole_words=False, position="end"):\n',
            "def truncate(\n    text: str,\n    width: int,\n    ellipsis: str = \"...\",\n"
            "    whole_words: bool = False,\n    position: str = \"end\",\n) -> str:\n",
        ),
        sub(COUNT, "import math\n", future + "import math\n"),
        sub(COUNT, "def word_count(text):", "def word_count(text: str) -> int:"),
        sub(
            COUNT,
            "def reading_time(text, words_per_minute=200):",
            "def reading_time(text: str, words_per_minute: int = 200) -> int:",
        ),
        sub(
            COUNT,
            "def char_count(text, whitespace=True):",
            "def char_count(text: str, whitespace: bool = True) -> int:",
        ),
        sub(WRAP, "import re\n", future + "import re\n"),
        sub(
            WRAP,
            'def wrap(text, width=70, indent="", hanging=""):',
            "def wrap(\n"
            '    text: str, width: int = 70, indent: str = "", hanging: str = ""\n'
            ") -> list[str]:",
        ),
        sub(
            WRAP,
            'def fill(text, width=70, indent="", hanging=""):',
            'def fill(text: str, width: int = 70, indent: str = "", hanging: str = "") -> str:',
        ),
        sub(TMPL, "import re\n", future + "import re\n"),
        sub(
            TMPL,
            "def _lookup(values, name):",
            "def _lookup(values: Mapping[str, object], name: str) -> object:",
        ),
        sub(TMPL, "def _default(pipes):", "def _default(pipes: list[str]) -> str | None:"),
        sub(
            TMPL,
            "def render(template, **values):",
            "def render(template: str, **values: object) -> str:",
        ),
        sub(TMPL, "    def substitute(match):", "    def substitute(match: re.Match[str]) -> str:"),
        sub(
            CHECKS,
            '"""Argument checks shared by the public functions."""\n',
            '"""Argument checks shared by the public functions."""\n\n'
            "from __future__ import annotations\n",
        ),
        sub(
            CHECKS,
            'def require_text(value, name="text"):',
            'def require_text(value: object, name: str = "text") -> str:',
        ),
        kind="no-tests",
    )

    commit(
        PRIYA,
        "Add a break_long_words option to wrap()\n\n"
        "Long URLs overflowed the width. With break_long_words=True a word wider than\n"
        "a line is split into line-sized pieces.",
        define(
            WRAP,
            '''
            def wrap(
                text: str,
                width: int = 70,
                indent: str = "",
                hanging: str = "",
                break_long_words: bool = False,
            ) -> list[str]:
                """Break *text* into lines of at most *width* characters.

                The first line starts with *indent* and every following line with
                *hanging*. Runs of whitespace collapse to single spaces. A word longer
                than the room on a line gets a line of its own, or, with
                *break_long_words*, is split into pieces that fit.
                """
                if width <= max(len(indent), len(hanging)):
                    raise ValueError("width must be larger than the indents")
                words = text.split()
                if break_long_words:
                    room = width - max(len(indent), len(hanging))
                    words = [
                        word[i : i + room] for word in words for i in range(0, len(word), room)
                    ]
                lines = []
                current = indent
                filled = False
                for word in words:
                    if filled and len(current) + 1 + len(word) > width:
                        lines.append(current)
                        current = hanging + word
                    elif filled:
                        current = current + " " + word
                    else:
                        current = current + word
                    filled = True
                if filled:
                    lines.append(current)
                return lines
            ''',
        ),
        append(
            T_WRAP,
            """
            def test_break_long_words_splits_words_wider_than_the_line():
                lines = wrap("a supercalifragilistic b", width=10, break_long_words=True)
                assert lines == ["a", "supercalif", "ragilistic", "b"]


            def test_break_long_words_leaves_room_for_the_hanging_indent():
                lines = wrap("abcdefghij", width=6, hanging="  ", break_long_words=True)
                assert lines == ["abcd", "  efgh", "  ij"]
            """,
        ),
        kind="task",
    )


# --------------------------------------------------------------------------- output


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C")
    proc = subprocess.run(
        ["git", "-c", f"core.hooksPath={os.devnull}", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def build(git_dir: Path) -> list[CommitInfo]:
    """Create the bare repository *git_dir* and write the whole history into it."""
    _git("init", "-q", "--bare", "--initial-branch=main", str(git_dir))
    history = History(git_dir)
    build_history(history)
    assert not set(history.branches) - {"main"}, "a pull request was never merged"
    head = history.branches["main"].head
    assert head is not None
    _git("update-ref", "refs/heads/main", head, cwd=git_dir)
    _git("fsck", "--strict", "--no-dangling", cwd=git_dir)
    return history.log


def write_bundle(git_dir: Path, bundle: Path) -> None:
    bundle.parent.mkdir(parents=True, exist_ok=True)
    tmp = bundle.with_name(bundle.name + ".tmp")
    _git("-c", "pack.threads=1", "bundle", "create", "-q", str(tmp), "--all", cwd=git_dir)
    os.replace(tmp, bundle)


def _run_tests(work: Path, files: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GIT_"))}
    # Plugins installed next to the running pytest (hypothesis, ...) are not inkwell's.
    env.update(
        PYTHONPATH=str(work / "src"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, check=False).returncode


def verify(bundle: Path, log: list[CommitInfo]) -> list[str]:
    """Run the suite at every commit on main, and each task's tests before and after.

    Returns the problems found (empty when the history is what it claims to be).
    """
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "inkwell"
        _git("clone", "-q", str(bundle), str(work))
        for info in log:
            if not info.first_parent:
                continue
            _git("checkout", "-q", "-f", info.sha, cwd=work)
            _git("clean", "-qffdx", cwd=work)
            if (work / "tests").is_dir() and _run_tests(work, []) != 0:
                problems.append(f"{info.sha[:10]} {info.subject}: the suite fails")
            if info.kind not in ("task", "merge"):
                continue
            parent = info.parents[0]
            changed = _git("diff", "--name-only", parent, info.sha, "--", "tests", cwd=work).split()
            patch = _git("diff", parent, info.sha, "--", "tests", cwd=work)
            _git("checkout", "-q", "-f", parent, cwd=work)
            _git("clean", "-qffdx", cwd=work)
            subprocess.run(["git", "apply"], input=patch, text=True, cwd=work, check=True)
            if _run_tests(work, changed) == 0:
                problems.append(f"{info.sha[:10]} {info.subject}: tests pass before the change")
            _git("checkout", "-q", "-f", info.sha, cwd=work)
            _git("clean", "-qffdx", cwd=work)
            if _run_tests(work, changed) != 0:
                problems.append(f"{info.sha[:10]} {info.subject}: tests fail after the change")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="where to write it")
    parser.add_argument("--repo", type=Path, help="also keep the bare repository here")
    parser.add_argument(
        "--verify", action="store_true", help="run every task's tests at parent and commit"
    )
    parser.add_argument("--list", action="store_true", help="print every commit with its kind")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        git_dir = args.repo or Path(tmp) / "inkwell.git"
        if args.repo and git_dir.exists():
            shutil.rmtree(git_dir)
        log = build(git_dir)
        write_bundle(git_dir, args.bundle)
    counts: dict[str, int] = {}
    for info in log:
        counts[info.kind] = counts.get(info.kind, 0) + 1
    if args.list:
        for info in log:
            line = "  " if info.first_parent else "| "
            print(f"{info.sha[:10]} {line}{info.kind:<10} {info.subject}")
    print(f"HEAD {log[-1].sha}")
    print(f"{len(log)} commits: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
    print(f"wrote {args.bundle} ({args.bundle.stat().st_size} bytes)")
    if args.verify:
        problems = verify(args.bundle, log)
        for problem in problems:
            print(problem, file=sys.stderr)
        print("verify: " + ("ok" if not problems else f"{len(problems)} problems"))
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
