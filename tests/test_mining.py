"""Mining real git repositories built commit by commit, one scenario per filter.

``history`` is one repository whose first-parent walk holds a commit for every verdict
(kept, and rejected by each stage for each kind of reason), a pull request merged with
work-in-progress commits inside, a rename, a syntax error and its fix, a binary file and
odd paths. ``churn`` edits one big module again and again, so stage 2 re-parses files
from earlier versions; its symbols are checked against full parses of every version.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from repo_builder import RepoBuilder

from appliance.config import MiningConfig
from appliance.db.core import Database
from appliance.db.corpus import STAGES, funnel, register_repo
from appliance.errors import NotFound
from appliance.records import CommitRecord, RepoRecord
from harness import mining, pyparse, pysource

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"

CORE = textwrap.dedent(
    '''\
    """Dates."""


    def parse_date(text):
        """Parse an ISO date."""
        year, month, day = text.split("-")
        return int(year), int(month), int(day)
    '''
)
TESTS = textwrap.dedent(
    '''\
    from lib.core import parse_date


    def test_parse_date():
        assert parse_date("2020-01-02") == (2020, 1, 2)
    '''
)
ODD = "lib/dätes and\ttabs.py"


def add_test(text: str, name: str, body: str = "assert True") -> str:
    return text + f"\n\ndef {name}():\n    {body}\n"


def build_history(path: Path) -> dict[str, str]:
    """The scenario; returns {what: sha}."""
    repo = RepoBuilder(path)
    shas: dict[str, str] = {}
    tests = TESTS
    shas["root"] = repo.commit("Create the lib package with a date parser", {
        "lib/__init__.py": "", "lib/core.py": CORE, "tests/test_core.py": tests, "README.md": "# lib\n"})

    core = CORE.replace('year, month, day = text.split("-")', 'year, month, day = text.strip().split("-")')
    tests = add_test(tests, "test_parse_date_strips", 'assert parse_date(" 2020-01-02 ") == (2020, 1, 2)')
    shas["kept"] = repo.commit("Handle whitespace around ISO dates", {"lib/core.py": core, "tests/test_core.py": tests})

    shas["bot"] = repo.commit("Bump pytest from 7.4.0 to 8.0.0", {"requirements-dev.txt": "pytest==8.0.0\n"},
                              author="dependabot[bot] <support@github.com>")

    core = core.replace('    """Parse an ISO date."""\n',
                        '    """Parse an ISO date."""\n    if text.count("-") != 2:\n        raise ValueError(text)\n')
    shas["no_tests"] = repo.commit("Reject dates with a missing day", {"lib/core.py": core})

    shas["no_source"] = repo.commit("Explain the accepted date format", {
        "README.md": "# lib\n\nDates are YYYY-MM-DD.\n", "tests/test_core.py": add_test(tests, "test_doc")})
    tests = add_test(tests, "test_doc")

    # A pull request: work in progress on a branch, merged with GitHub's button.
    repo.branch("format-date")
    core_wip = core + '\n\ndef format_date(year, month, day):\n    return f"{year}-{month}"\n'
    shas["wip1"] = repo.commit("wip", {"lib/core.py": core_wip})
    core = core + '\n\ndef format_date(year, month, day):\n    return f"{year:04d}-{month:02d}-{day:02d}"\n'
    tests = add_test(tests, "test_format_date", "from lib.core import format_date\n    assert format_date(2020, 1, 2) == '2020-01-02'")
    shas["wip2"] = repo.commit("fix tests", {"lib/core.py": core, "tests/test_core.py": tests})
    repo.checkout("main")
    shas["merge"] = repo.merge(
        "format-date",
        "Merge pull request #12 from ada/format-date\n\nAdd format_date() to render ISO dates\n\n"
        "It is the inverse of parse_date().",
    )

    # A rename with a small edit, and the test following it.
    repo.delete("lib/core.py")
    dates = core.replace('"""Dates."""', '"""Dates: parsing and formatting."""')
    tests = tests.replace("from lib.core import", "from lib.dates import")
    shas["rename"] = repo.commit("Move the date helpers into lib.dates", {"lib/dates.py": dates, "tests/test_core.py": tests})

    broken = dates.replace("    return int(year), int(month), int(day)", "    return int(year), int(month), int(day\n")
    tests = add_test(tests, "test_week", "assert True")
    shas["broken"] = repo.commit("Add week numbers to parsed dates", {"lib/dates.py": broken, "tests/test_core.py": tests})

    tests = add_test(tests, "test_week_tuple", "assert True")
    shas["fixed"] = repo.commit("Return week numbers as a named tuple", {"lib/dates.py": dates, "tests/test_core.py": tests})

    repo.write_bytes({"docs/logo.png": PNG})
    tests = add_test(tests, "test_logo")
    shas["binary"] = repo.commit("Show the logo in the date table output", {
        "lib/dates.py": dates + "\nLOGO = 'docs/logo.png'\n", "tests/test_core.py": tests})
    dates += "\nLOGO = 'docs/logo.png'\n"

    odd = "def odd(x):\n    return x\n"
    tests = add_test(tests, "test_odd")
    shas["odd"] = repo.commit("Accept file names with tabs and umlauts", {ODD: odd, "tests/test_core.py": tests})

    repo.branch("cleanup")
    repo.commit("Tidy the date helpers up a little", {"lib/dates.py": dates + "\n# tidy\n"})
    repo.checkout("main")
    shas["local_merge"] = repo.merge("cleanup", "Merge branch 'cleanup'")
    dates += "\n# tidy\n"

    big = dates + "".join(f"\ndef generated_{i}(x):\n    return x + {i}\n" for i in range(250))
    tests = add_test(tests, "test_generated")
    shas["too_big"] = repo.commit("Generate a helper for every offset", {"lib/dates.py": big, "tests/test_core.py": tests})
    return shas


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], list[CommitRecord]]:
    path = tmp_path_factory.mktemp("history") / "lib"
    shas = build_history(path)
    return path, shas, mining.mine_repo(path, MiningConfig())


def by_sha(records: list[CommitRecord]) -> dict[str, CommitRecord]:
    return {r.sha: r for r in records}


def git_out(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=True).stdout


def test_every_first_parent_commit_gets_a_row_oldest_first(history) -> None:
    path, _, records = history
    walk = git_out(path, "rev-list", "--first-parent", "--reverse", "HEAD").split()
    assert [r.sha for r in records] == walk
    assert all(r.status == "kept" or r.reject_stage in STAGES for r in records)
    assert all((r.status == "kept") == (r.reject_stage is None) for r in records)


def test_keeps_a_commit_that_changes_code_and_its_tests(history) -> None:
    _, shas, records = history
    kept = by_sha(records)[shas["kept"]]
    assert kept.status == "kept", kept.reject_reason
    assert kept.title == "Handle whitespace around ISO dates"
    assert {(f.path, f.kind) for f in kept.files} == {("lib/core.py", "source"), ("tests/test_core.py", "test")}
    assert kept.symbols == {"lib/core.py": ["parse_date"], "tests/test_core.py": ["test_parse_date_strips"]}
    assert 0 < kept.scores["message"] <= 1


def test_rejects_the_root_commit(history) -> None:
    _, shas, records = history
    root = by_sha(records)[shas["root"]]
    assert root.parent is None
    assert (root.reject_stage, root.reject_reason) == ("size", "root commit (no parent to diff against)")


def test_rejects_a_bot_commit(history) -> None:
    _, shas, records = history
    bot = by_sha(records)[shas["bot"]]
    assert bot.reject_stage == "message" and bot.reject_reason.startswith("bot author")


def test_rejects_a_commit_without_tests(history) -> None:
    _, shas, records = history
    assert by_sha(records)[shas["no_tests"]].reject_stage == "size"  # one file: too few
    assert by_sha(records)[shas["no_tests"]].reject_reason.startswith("too few files")


def test_rejects_a_commit_without_source(history) -> None:
    _, shas, records = history
    r = by_sha(records)[shas["no_source"]]
    assert (r.reject_stage, r.reject_reason) == ("tests", "no source .py file changed")


def test_pull_request_merge_is_one_candidate_with_its_title(history) -> None:
    path, shas, records = history
    rows = by_sha(records)
    assert shas["wip1"] not in rows and shas["wip2"] not in rows  # inside the branch
    merge = rows[shas["merge"]]
    assert merge.is_merge and merge.status == "kept", merge.reject_reason
    assert merge.title == "Add format_date() to render ISO dates"
    assert merge.message.startswith("Add format_date() to render ISO dates\n\nIt is the inverse")
    assert merge.parent == git_out(path, "rev-parse", f"{shas['merge']}^1").strip()
    assert merge.symbols == {"lib/core.py": ["format_date"], "tests/test_core.py": ["test_format_date"]}


def test_pull_request_merge_files_are_its_diff_against_the_first_parent(history) -> None:
    path, shas, records = history
    merge = by_sha(records)[shas["merge"]]
    numstat = git_out(path, "diff", "--numstat", f"{shas['merge']}^1", shas["merge"]).splitlines()
    expected = {(p, int(a), int(d)) for a, d, p in (line.split("\t") for line in numstat)}
    assert {(f.path, f.added, f.deleted) for f in merge.files} == expected


def test_renamed_file_keeps_its_old_path(history) -> None:
    _, shas, records = history
    r = by_sha(records)[shas["rename"]]
    moved = [f for f in r.files if f.path == "lib/dates.py"]
    assert moved and moved[0].old_path == "lib/core.py" and moved[0].added == moved[0].deleted == 1
    assert r.status == "kept", r.reject_reason
    assert r.symbols["lib/dates.py"] == []  # only the module docstring changed


def test_rejects_a_file_that_does_not_parse_after_the_commit(history) -> None:
    _, shas, records = history
    r = by_sha(records)[shas["broken"]]
    assert r.reject_stage == "parse"
    assert r.reject_reason.startswith("lib/dates.py does not parse after the commit")


def test_rejects_a_file_that_does_not_parse_before_the_commit(history) -> None:
    _, shas, records = history
    r = by_sha(records)[shas["fixed"]]
    assert r.reject_stage == "parse"
    assert r.reject_reason.startswith("lib/dates.py does not parse before the commit")


def test_rejects_a_binary_file(history) -> None:
    _, shas, records = history
    r = by_sha(records)[shas["binary"]]
    assert (r.reject_stage, r.reject_reason) == ("size", "binary file changed (docs/logo.png)")
    assert [f for f in r.files if f.binary] == [f for f in r.files if f.path == "docs/logo.png"]


def test_odd_paths_come_through_verbatim(history) -> None:
    _, shas, records = history
    r = by_sha(records)[shas["odd"]]
    assert ODD in {f.path for f in r.files}
    assert r.status == "kept", r.reject_reason
    assert r.symbols[ODD] == ["odd"]


def test_rejects_a_merge_without_pull_request_title(history) -> None:
    _, shas, records = history
    r = by_sha(records)[shas["local_merge"]]
    assert r.is_merge and r.reject_reason == "merge without a pull-request title"


def test_rejects_a_commit_over_the_size_bounds(history) -> None:
    _, shas, records = history
    assert by_sha(records)[shas["too_big"]].reject_reason.startswith("too many lines")


def test_thresholds_come_from_the_config(history) -> None:
    path, shas, _ = history
    strict = by_sha(mining.mine_repo(path, MiningConfig(max_lines=5)))
    assert strict[shas["kept"]].reject_reason.startswith("too many lines")


def test_progress_counts_every_commit(history) -> None:
    path, _, records = history
    seen: list[tuple[int, int]] = []
    mining.mine_repo(path, MiningConfig(), progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(records), len(records))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_file_counts_agree_with_pydriller(history) -> None:
    from pydriller import Git

    path, _, records = history
    gr = Git(str(path))
    try:
        for record in records:
            if record.is_merge or record.parent is None:
                continue  # PyDriller gives merges no files; the root has no parent
            theirs = {(m.new_path or m.old_path, m.added_lines, m.deleted_lines)
                      for m in gr.get_commit(record.sha).modified_files}
            ours = {(f.path, f.added, f.deleted) for f in record.files}
            assert ours == theirs, record.title
    finally:
        gr.clear()


def test_funnel_of_the_mined_records(history, tmp_path: Path) -> None:
    _, _, records = history
    db = Database(tmp_path / "cra.db")
    repo = RepoRecord(name="lib", origin_url="x", head_sha=records[-1].sha, default_branch="main",
                      python_version="3.11", test_cmd="pytest")
    register_repo(db, repo, [], records)
    result = funnel(db, "lib")
    rejected = {s["stage"]: s["rejected"] for s in result["stages"]}
    assert result["commits"] == len(records)
    assert result["kept"] == sum(r.status == "kept" for r in records)
    assert all(rejected[s] == sum(r.reject_stage == s for r in records) for s in STAGES)
    db.close()


def test_a_repository_without_commits_is_not_found(tmp_path: Path) -> None:
    RepoBuilder(tmp_path / "empty")
    with pytest.raises(NotFound, match="no commit 'HEAD'"):
        mining.mine_repo(tmp_path / "empty", MiningConfig())


def test_a_folder_that_is_not_a_repository_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="not a git repository"):
        mining.mine_repo(tmp_path, MiningConfig())


# --------------------------------------------------------------------- stage 2 on churn

def klass(name: str, methods: int, *, extra: str = "") -> str:
    body = "".join(f"    def m{i}(self, x):\n        y = x + {i}\n        return y\n\n" for i in range(methods))
    return f"class {name}:\n    \"\"\"{name}.\"\"\"\n\n{body}{extra}"


def build_churn(path: Path) -> RepoBuilder:
    """One module edited over and over: kept commits with rejected ones in between, so a
    kept commit's old version is not the one stage 2 parsed last."""
    repo = RepoBuilder(path)
    parts = [klass(n, 6) for n in ("Alpha", "Beta", "Gamma")]
    module = lambda: "import os\n\n\n" + "\n\n".join(parts)
    tests = "def test_base():\n    assert True\n"
    repo.commit("Create the package", {"pkg/__init__.py": "", "pkg/mod.py": module(), "tests/test_mod.py": tests})
    edits = [
        ("Change how Alpha.m1 adds numbers", lambda: parts.__setitem__(0, parts[0].replace("x + 1", "x + 100"))),
        ("Refactor Beta internals", lambda: parts.__setitem__(1, parts[1].replace("x + 2", "x - 2"))),  # rejected
        ("Add a method to Gamma", lambda: parts.__setitem__(2, parts[2] + "    def added(self):\n        return 1\n")),
        ("Give Beta.m3 a keyword argument", lambda: parts.__setitem__(1, parts[1].replace("def m3(self, x)", "def m3(self, x, k=1)"))),
        ("Refactor Alpha", lambda: parts.__setitem__(0, parts[0].replace("x + 4", "x * 4"))),  # rejected
        ("Add a module-level helper", lambda: parts.append("def helper(v):\n    return v\n")),
        ("Drop Gamma.m5 which nobody calls", lambda: parts.__setitem__(2, parts[2].replace(
            "    def m5(self, x):\n        y = x + 5\n        return y\n\n", ""))),
        ("Rename Beta to Bravo everywhere", lambda: parts.__setitem__(1, parts[1].replace("Beta", "Bravo"))),
    ]
    for n, (title, edit) in enumerate(edits):
        edit()
        files = {"pkg/mod.py": module()}
        if not title.startswith("Refactor"):
            tests += f"\n\ndef test_{n}():\n    assert True\n"
            files["tests/test_mod.py"] = tests
        repo.commit(title, files)
    return repo


def expected_symbols(path: Path, record: CommitRecord) -> dict[str, list[str]]:
    """Symbols from full parses of both versions and ``git diff -U0``: the oracle."""
    def show(rev: str, file: str) -> str | None:
        done = subprocess.run(["git", "-C", str(path), "show", f"{rev}:{file}"],
                              capture_output=True, text=True, check=False)
        return done.stdout if done.returncode == 0 else None

    out: dict[str, list[str]] = {}
    for f in record.files:
        if not f.path.endswith((".py", ".pyi")):
            continue
        diff = git_out(path, "diff", "-U0", "-M", record.parent, record.sha, "--", *{f.path, f.old_path or f.path})
        added, deleted = set(), set()
        for line in diff.splitlines():
            if line.startswith("@@ "):
                old, new = line.split()[1:3]
                a, b = (old[1:].split(",") + ["1"])[:2]
                c, d = (new[1:].split(",") + ["1"])[:2]
                deleted |= set(range(int(a), int(a) + int(b)))
                added |= set(range(int(c), int(c) + int(d)))
        after, before = show(record.sha, f.path), show(record.parent or "", f.old_path or f.path)
        names = pysource.symbols_touching(pysource.parse_symbols(after), added) if after is not None else []
        if before is not None:
            names += [n for n in pysource.symbols_touching(pysource.parse_symbols(before), deleted)
                      if n not in names]
        out[f.path] = names
    return out


@pytest.mark.parametrize("catch_up_bytes", [0, mining.CATCH_UP_BYTES])
def test_symbols_match_full_parses_of_every_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catch_up_bytes: int
) -> None:
    path = tmp_path / "churn"
    build_churn(path)
    # 0: every old version is re-parsed from the last one parsed (what big files get);
    # the default: small files like this one are parsed in full.
    monkeypatch.setattr(mining, "CATCH_UP_BYTES", catch_up_bytes)
    calls: list[str] = []
    reparse = pyparse.reparse
    monkeypatch.setattr(pyparse, "reparse", lambda *a: calls.append(a[3]) or reparse(*a))
    records = mining.mine_repo(path, MiningConfig(max_lines=2000))
    # six kept commits re-parse their new version; with catch-up on, the two that follow
    # a rejected commit re-parse their old version too
    assert calls.count("pkg/mod.py") == (8 if catch_up_bytes == 0 else 6)
    kept = [r for r in records if r.status == "kept"]
    assert [r.title for r in records if r.reject_stage == "message"] == ["Refactor Beta internals", "Refactor Alpha"]
    assert len(kept) == 6, [(r.title, r.reject_reason) for r in records]
    for record in kept:
        assert record.symbols == expected_symbols(path, record), record.title
    by_title = {r.title: r.symbols["pkg/mod.py"] for r in kept}
    assert by_title["Change how Alpha.m1 adds numbers"] == ["Alpha.m1"]
    assert by_title["Give Beta.m3 a keyword argument"] == ["Beta.m3"]
    assert by_title["Add a method to Gamma"] == ["Gamma.added"]
    assert "Gamma.m5" in by_title["Drop Gamma.m5 which nobody calls"]  # and Gamma: a blank line went too


def test_parse_log_reads_renames_binaries_and_odd_paths() -> None:
    mark = b"\x1e"
    header = b"\0".join([mark + b"a" * 40, b"b" * 40, b"2020-09-13T12:26:40+00:00", b"1600000000",
                         b"Ada", b"ada@example.com", b"Add x\n"]) + b"\0\0"
    numstat = (b"\n3\t1\t\0old name.py\0new\tname.py\0" + b"-\t-\tlogo.png\0" + b"2\t0\tsrc/a.py\0")
    (raw,) = mining.parse_log(header + numstat)
    assert [(f.path, f.old_path, f.added, f.deleted, f.binary) for f in raw.files] == [
        ("new\tname.py", "old name.py", 3, 1, False), ("logo.png", None, 0, 0, True), ("src/a.py", None, 2, 0, False)]
    assert raw.parents == ["b" * 40] and raw.author == "Ada <ada@example.com>"


def test_parse_hunks_reads_quoted_paths_and_symlinks() -> None:
    out = (
        b"a" * 40 + b"\n"
        b":100644 120000 " + b"1" * 40 + b" " + b"2" * 40 + b" T\tlink.py\n"
        b"diff --git \"a/q\\tz.py\" \"b/q\\tz.py\"\n"
        b"index 1..2 100644\n"
        b"--- \"a/q\\tz.py\"\n"
        b"+++ \"b/q\\tz.py\"\n"
        b"@@ -3,0 +4,2 @@ def f():\n"
        b"+--- not a header\n"
        b"+@@ -1 +1 @@ not a hunk either\n"
        b"@@ -10 +12 @@\n"
        b"-x\n"
        b"+y\n"
        b"diff --git a/gone.py b/gone.py\n"
        b"deleted file mode 100644\n"
        b"--- a/gone.py\n"
        b"+++ /dev/null\n"
        b"@@ -1,2 +0,0 @@\n"
    )
    (diff,) = mining.parse_hunks(out)
    assert diff.blocks == {"q\tz.py": [(3, 3, 3, 5), (9, 10, 11, 12)], "gone.py": [(0, 2, 0, 0)]}
    assert diff.links == {"link.py"}


def test_stage2_split_across_processes_gives_the_same_verdicts(history, monkeypatch: pytest.MonkeyPatch) -> None:
    # Real repos have thousands of commits and both stages run on every core, one segment
    # of the walk each; force the split on this small history and compare with one process.
    path, _, serial = history
    monkeypatch.setattr(mining, "SEGMENT_MIN_COMMITS", 2)
    monkeypatch.setattr(mining, "_cores", lambda: 2)
    seen: list[tuple[int, int]] = []
    split = mining.mine_repo(path, MiningConfig(), progress=lambda done, total: seen.append((done, total)))
    assert [r.to_dict() for r in split] == [r.to_dict() for r in serial]
    assert seen[0] == (0, len(serial)) and seen[-1] == (len(serial), len(serial)) and len(seen) == 3


def test_segments_cover_the_walk_once_oldest_first() -> None:
    chain = [f"c{i}" for i in range(10, 0, -1)]  # newest first, as rev-list prints it
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mining, "SEGMENT_MIN_COMMITS", 3)
        assert mining._segments(chain, 2) == [["c5"], ["c10", "^c5"]]
        assert mining._segments(chain, 4) == [["c4"], ["c7", "^c4"], ["c10", "^c7"]]  # at least 3 each
        assert mining._segments(chain, 1) == [["c10"]]
        mp.setattr(mining, "SEGMENT_MAX_COMMITS", 4)
        assert len(mining._segments(chain, 1)) == 3  # long walks get more segments than cores
    assert mining._segments(chain[:1], 8) == [["c10"]] and mining._segments([], 2) == []


def test_churn_symbols_are_the_same_when_stage2_is_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "churn"
    build_churn(path)
    serial = mining.mine_repo(path, MiningConfig(max_lines=2000))
    monkeypatch.setattr(mining, "SEGMENT_MIN_COMMITS", 2)
    monkeypatch.setattr(mining, "_cores", lambda: 3)
    split = mining.mine_repo(path, MiningConfig(max_lines=2000))
    assert [r.to_dict() for r in split] == [r.to_dict() for r in serial]


# --------------------------------------------------------------------- PyDriller as the reference


def _kinds(path: Path, rev: str | None, file: str) -> dict[str, str]:
    done = subprocess.run(["git", "-C", str(path), "show", f"{rev}:{file}"], capture_output=True, text=True,
                          check=False)
    return {s.qualname: s.kind for s in pysource.parse_symbols(done.stdout)} if done.returncode == 0 else {}


def _compare_with_pydriller(path: Path, records: list[CommitRecord]) -> int:
    """cra's changed functions and methods against PyDriller's ``changed_methods`` (lizard),
    commit by commit; returns how many files were compared.

    The two name things differently, and only that is normalised: lizard names a method
    without its class (``m1`` for ``Alpha.m1``) and a closure as its own function
    (``render.substitute``), which cra counts as part of the function around it
    (``render``: nobody can name a closure from outside); cra also names classes, which
    lizard does not report.
    """
    from pydriller import Git

    gr = Git(str(path))
    compared = 0
    try:
        for record in records:
            if record.status != "kept" or record.is_merge:
                continue  # PyDriller gives merges no files
            for mf in gr.get_commit(record.sha).modified_files:
                file = mf.new_path or mf.old_path
                if not file or not file.endswith(".py") or file not in record.symbols:
                    continue
                kinds = {**_kinds(path, record.parent, mf.old_path or file), **_kinds(path, record.sha, file)}
                ours = {q.rsplit(".", 1)[-1] for q in record.symbols[file] if kinds.get(q) != "class"}
                theirs = {m.name.split(".", 1)[0] for m in mf.changed_methods}
                assert ours == theirs, (record.title, file)
                compared += 1
    finally:
        gr.clear()
    return compared


def test_changed_methods_agree_with_pydriller_on_the_churn(tmp_path: Path) -> None:
    path = tmp_path / "churn"
    build_churn(path)
    assert _compare_with_pydriller(path, mining.mine_repo(path, MiningConfig(max_lines=2000))) == 12


def test_changed_methods_agree_with_pydriller_on_the_sample_history(tmp_path: Path) -> None:
    from appliance.demo import SAMPLE_BUNDLE

    path = tmp_path / "inkwell"
    subprocess.run(["git", "clone", "-q", str(SAMPLE_BUNDLE), str(path)], check=True)
    assert _compare_with_pydriller(path, mining.mine_repo(path, MiningConfig())) >= 50


# --------------------------------------------------------------------- the project's pytest settings


def test_test_modules_follow_the_projects_pytest_settings_over_history(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    repo.commit("Start the library", {"lib/__init__.py": "X = 1\n", "tests/test_x.py": "def test_x():\n    pass\n"})
    before = repo.commit("Parse amounts with two decimals", {
        "lib/__init__.py": "X = 2\n", "tests/amount_tests.py": "def test_amount():\n    pass\n"})
    repo.commit("Collect *_tests.py modules as tests", {
        "pytest.ini": "[pytest]\npython_files = *_tests.py test_*.py\ntestpaths = tests\n"})
    after = repo.commit("Parse amounts with a single decimal", {
        "lib/__init__.py": "X = 3\n", "tests/amount_tests.py": "def test_amount():\n    pass\n\n\ndef test_one():\n    pass\n"})
    outside = repo.commit("Round amounts half to even", {
        "lib/__init__.py": "X = 4\n", "benchmarks/test_speed.py": "def test_speed():\n    pass\n"})
    renamed = repo.commit("Check amounts with a custom module name", {
        "lib/__init__.py": "X = 5\n", "checks/check_amount.py": "def check_amount():\n    pass\n",
        "pytest.ini": "[pytest]\npython_files = check_*.py\ntestpaths = checks\n"})
    by_sha = {r.sha: r for r in mining.mine_repo(repo.path, MiningConfig(min_lines=1))}
    assert by_sha[before].reject_reason == "no test module changed"
    assert by_sha[after].status == "kept"
    # benchmarks/test_speed.py matches python_files but lies outside testpaths
    assert by_sha[outside].reject_reason == "no test module changed"
    assert by_sha[renamed].status == "kept"
    assert {f.path: f.kind for f in by_sha[renamed].files}["checks/check_amount.py"] == "test"


# --------------------------------------------------------------------- maintenance branches


def test_a_maintenance_branch_is_walked_by_first_parent_each_commit_once(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    base = repo.commit("Start the library", {
        "lib/core.py": "def f():\n    return 1\n", "tests/test_core.py": "def test_f():\n    pass\n",
        "lib/util.py": "def u():\n    return 1\n", "tests/test_util.py": "def test_u():\n    pass\n"})
    repo.branch("2.x-line")
    fix = repo.commit("Fix u returning the wrong constant", {
        "lib/util.py": "def u():\n    return 2\n", "tests/test_util.py": "def test_u():\n    pass\n\n\ndef test_v():\n    pass\n"})
    repo.checkout("main")
    feature = repo.commit("Add g next to f for the next release", {
        "lib/core.py": "def f():\n    return 1\n\n\ndef g():\n    return 3\n",
        "tests/test_core.py": "def test_f():\n    pass\n\n\ndef test_h():\n    pass\n"})
    merge = repo.merge("2.x-line", "Merge branch '2.x-line'")
    only_main = mining.mine_repo(repo.path, MiningConfig(min_lines=1))
    assert fix not in {r.sha for r in only_main}  # reached only inside the merge, which is rejected
    assert {r.sha: r.reject_stage for r in only_main}[merge] == "message"
    both = mining.mine_repo(repo.path, MiningConfig(min_lines=1), branches=["2.x-line"])
    shas = [r.sha for r in both]
    assert len(shas) == len(set(shas)) == len(only_main) + 1  # base is on both walks, mined once
    assert shas.count(base) == 1
    by_sha = {r.sha: r for r in both}
    assert by_sha[fix].status == "kept" and by_sha[fix].parent == base
    assert by_sha[feature].status == "kept"
    with pytest.raises(NotFound, match="no-such-branch"):
        mining.mine_repo(repo.path, MiningConfig(), branches=["no-such-branch"])
