"""The symbol index on real git repositories: incremental by blob, failures recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from repo_builder import RepoBuilder

from appliance.config import Home
from appliance.errors import BadInput, NotFound
from harness.index import SymbolIndex, index_path, index_text, split_identifier

CORE = '''\
"""Core date handling."""
from ._util import clamp


class DateParser:
    """Parse ISO 8601 dates into tuples."""

    def parse_iso(self, text: str) -> tuple[int, int, int]:
        """Split an ISO date."""
        y, m, d = text.split("-")
        return clamp(int(y)), int(m), int(d)
'''

UTIL = '''\
def clamp(value: int, low: int = 0) -> int:
    """Keep a value above a floor."""
    return max(value, low)
'''

INIT = "from .core import DateParser\nfrom . import _util\n"

CLI = '''\
import sys
from datepkg.core import DateParser
from datepkg import _util


def main(argv=sys.argv) -> int:
    return 0
'''


@pytest.fixture
def two_commits(tmp_path: Path) -> tuple[RepoBuilder, str, str]:
    """A src-layout package; the second commit changes one file and breaks another."""
    repo = RepoBuilder(tmp_path / "datelib")
    first = repo.commit("Initial", {
        "src/datepkg/__init__.py": INIT,
        "src/datepkg/core.py": CORE,
        "src/datepkg/_util.py": UTIL,
        "tools/cli.py": CLI,
        "tests/test_core.py": "from datepkg.core import DateParser\n\ndef test_it():\n    pass\n",
        "README.md": "# datelib\n",
    })
    second = repo.commit("Add week numbers; break the tool", {
        "src/datepkg/core.py": CORE + '\n    def week(self, text: str) -> int:\n        """ISO week."""\n        return 1\n',
        "tools/cli.py": "def main(:\n    pass\n",
        "src/datepkg/extra.py": "from .core import *\n",
    })
    return repo, first, second


def test_index_records_files_symbols_and_stats(tmp_path: Path, two_commits):
    repo, first, _ = two_commits
    with SymbolIndex(tmp_path / "ix.db") as ix:
        stats = ix.index_commit(repo.path, first)
        assert (stats.parsed, stats.reused, stats.failed) == (5, 0, 0)
        files = {f.path: f for f in ix.files(first)}
        assert sorted(files) == [
            "src/datepkg/__init__.py", "src/datepkg/_util.py", "src/datepkg/core.py",
            "tests/test_core.py", "tools/cli.py",
        ]
        core = files["src/datepkg/core.py"]
        assert core.module == "datepkg.core" and core.ok and core.docstring == "Core date handling."
        assert core.lines == CORE.count("\n")
        syms = ix.symbols(first, "src/datepkg/core.py")
        assert [(s.symbol.qualname, s.symbol.kind, s.symbol.lineno, s.symbol.end_lineno) for s in syms] == [
            ("DateParser", "class", 5, 11),
            ("DateParser.parse_iso", "method", 8, 11),
        ]
        assert syms[1].symbol.signature == "def parse_iso(self, text: str) -> tuple[int, int, int]"
        assert {s.path for s in ix.symbols(first)} == set(files) - {"src/datepkg/__init__.py"}


def test_second_commit_parses_only_changed_files(tmp_path: Path, two_commits):
    repo, first, second = two_commits
    with SymbolIndex(tmp_path / "ix.db") as ix:
        ix.index_commit(repo.path, first)
        stats = ix.index_commit(repo.path, second)
        # core.py changed, cli.py broke, extra.py is new; __init__, _util and the test are reused.
        assert (stats.parsed, stats.reused, stats.failed) == (3, 3, 1)
        again = ix.index_commit(repo.path, second)
        assert (again.parsed, again.reused, again.failed) == (0, 6, 1)
        # Both commits stay queryable, each with its own version of core.py.
        assert [s.symbol.qualname for s in ix.symbols(first, "src/datepkg/core.py")] == [
            "DateParser", "DateParser.parse_iso",
        ]
        assert [s.symbol.qualname for s in ix.symbols(second, "src/datepkg/core.py")] == [
            "DateParser", "DateParser.parse_iso", "DateParser.week",
        ]
    # The cache persists: a new process reuses everything.
    with SymbolIndex(tmp_path / "ix.db") as ix:
        assert ix.has_commit(second) and ix.has_commit(second[:10])
        assert ix.index_commit(repo.path, second).parsed == 0


def test_a_file_with_a_syntax_error_is_recorded_and_others_still_indexed(tmp_path: Path, two_commits):
    repo, _, second = two_commits
    with SymbolIndex(tmp_path / "ix.db") as ix:
        stats = ix.index_commit(repo.path, second)
        assert (stats.parsed, stats.failed) == (6, 1)
        files = {f.path: f for f in ix.files(second)}
        broken = files["tools/cli.py"]
        assert not broken.ok and broken.error.startswith("line 1:")
        assert ix.symbols(second, "tools/cli.py") == []
        assert [s.symbol.qualname for s in ix.symbols(second, "src/datepkg/core.py")][-1] == "DateParser.week"


def test_import_graph(tmp_path: Path, two_commits):
    repo, first, second = two_commits
    with SymbolIndex(tmp_path / "ix.db") as ix:
        ix.index_commit(repo.path, first)
        ix.index_commit(repo.path, second)
        assert ix.import_graph(first) == {
            # "from .core import DateParser": core.py; "from . import _util": the _util module.
            "src/datepkg/__init__.py": {"src/datepkg/core.py", "src/datepkg/_util.py"},
            "src/datepkg/core.py": {"src/datepkg/_util.py"},
            "src/datepkg/_util.py": set(),
            # sys is not in the repo; "from datepkg import _util" names the module.
            "tools/cli.py": {"src/datepkg/core.py", "src/datepkg/_util.py"},
            "tests/test_core.py": {"src/datepkg/core.py"},
        }
        graph = ix.import_graph(second)
        assert graph["tools/cli.py"] == set()  # unparseable: no edges, still a node
        assert graph["src/datepkg/extra.py"] == {"src/datepkg/core.py"}


def test_import_graph_resolves_non_src_layouts_by_suffix(tmp_path: Path):
    repo = RepoBuilder(tmp_path / "mono")
    sha = repo.commit("Monorepo", {
        "libs/shapes/__init__.py": "",
        "libs/shapes/circle.py": "from shapes.base import Shape\n",
        "libs/shapes/base.py": "class Shape: ...\n",
        "libs/shapes/typing.py": "Shape = object\n",
        "app/main.py": "import typing\nimport shapes.circle\nfrom shapes import base\n",
        "scripts/run.py": "import helpers\nimport base\n",
        "scripts/helpers.py": "",
    })
    with SymbolIndex(tmp_path / "ix.db") as ix:
        ix.index_commit(repo.path, sha)
        graph = ix.import_graph(sha)
    assert graph["libs/shapes/circle.py"] == {"libs/shapes/base.py"}
    # the stdlib's typing is not libs/shapes/typing.py, though that is the only "typing" around
    assert graph["app/main.py"] == {"libs/shapes/circle.py", "libs/shapes/base.py"}
    # a script imports its siblings by bare name; "base" is not its sibling
    assert graph["scripts/run.py"] == {"scripts/helpers.py"}


def test_commits_that_touch_no_python_share_a_snapshot(tmp_path: Path, two_commits):
    repo, _, second = two_commits
    third = repo.commit("Docs only", {"README.md": "# datelib\n\nMore.\n"})
    with SymbolIndex(tmp_path / "ix.db") as ix:
        ix.index_commit(repo.path, second)
        stats = ix.index_commit(repo.path, third)
        assert (stats.parsed, stats.reused) == (0, 6)
        snapshots = ix.conn.execute("SELECT count(*) FROM snapshots").fetchone()[0]
        assert snapshots == 1
        assert [f.path for f in ix.files(third)] == [f.path for f in ix.files(second)]


def test_odd_files_symlinks_encodings_and_identical_blobs(tmp_path: Path):
    repo = RepoBuilder(tmp_path / "odd")
    repo.write({
        "a/__init__.py": "",
        "b/__init__.py": "",  # same (empty) blob at two paths
        "latin.py": "",
        "bom.py": "",
    })
    (repo.path / "latin.py").write_bytes('# -*- coding: latin-1 -*-\ndef caf\u00e9(): "Cr\u00e8me."\n'.encode("latin-1"))
    (repo.path / "bom.py").write_bytes(b"\xef\xbb\xbfdef bom():\n    pass\n")
    (repo.path / "link.py").symlink_to("latin.py")
    sha = repo.commit("Odd files")
    with SymbolIndex(tmp_path / "ix.db") as ix:
        stats = ix.index_commit(repo.path, sha)
        assert stats.failed == 0
        assert [f.path for f in ix.files(sha)] == ["a/__init__.py", "b/__init__.py", "bom.py", "latin.py"]
        assert stats.parsed == 4  # two paths, one blob: both new to the index
        assert [s.symbol.qualname for s in ix.symbols(sha, "latin.py")] == ["caf\u00e9"]
        assert ix.symbols(sha, "latin.py")[0].symbol.docstring == "Cr\u00e8me."
        assert [s.symbol.qualname for s in ix.symbols(sha, "bom.py")] == ["bom"]


def test_unknown_commits_are_not_found(tmp_path: Path, two_commits):
    repo, first, _ = two_commits
    with SymbolIndex(tmp_path / "ix.db") as ix:
        with pytest.raises(NotFound, match="not in the symbol index"):
            ix.files(first)
        with pytest.raises(NotFound, match="no commit"):
            ix.index_commit(repo.path, "0" * 40)
        with pytest.raises(NotFound, match="no commit"):
            ix.index_commit(repo.path, "no-such-branch")
        tree = repo.git("rev-parse", f"{first}^{{tree}}").strip()
        with pytest.raises(NotFound, match="no commit"):
            ix.index_commit(repo.path, tree)  # a full sha, but of a tree
        stats = ix.index_commit(repo.path, "HEAD")  # any commit-ish, stored by full sha
        assert stats.parsed == 6
        assert ix.has_commit(repo.head())


def test_a_corrupt_index_file_is_a_bad_input_naming_it(tmp_path: Path):
    path = tmp_path / "ix.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BadInput, match="delete the file") as info:
        SymbolIndex(path)
    assert str(path) in str(info.value)


def test_an_index_from_another_schema_version_is_rebuilt(tmp_path: Path, two_commits):
    repo, first, _ = two_commits
    path = tmp_path / "ix.db"
    with SymbolIndex(path) as ix:
        ix.index_commit(repo.path, first)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=999")
    conn.close()
    with SymbolIndex(path) as ix:
        assert not ix.has_commit(first)
        assert ix.index_commit(repo.path, first).parsed == 5


def test_index_path_lives_under_var(tmp_path: Path):
    assert index_path(Home(tmp_path), "attrs") == tmp_path / "var" / "index" / "attrs.db"


def test_identifier_splitting():
    assert split_identifier("parse_iso_date") == ["parse", "iso", "date"]
    assert split_identifier("HTTPServerError") == ["http", "server", "error"]
    assert split_identifier("_make") == ["make"]
    assert split_identifier("getX") == ["get", "x"]
    assert index_text("DateParser.parse_iso") == "dateparser date parser parse_iso parse iso"
