"""Search/replace blocks: reading a model's answer, applying it, and gold edits from real commits."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from repo_builder import RepoBuilder

from harness.edits import (
    Edit,
    EditError,
    EditFormatError,
    apply_edits,
    apply_to_texts,
    edits_for_file,
    gold_edits,
    parse_edits,
    render_edits,
)
from harness.git import git_bytes

CORE = "def a():\n    return 1\n\n\ndef b():\n    return 2\n"


# ----------------------------------------------------------------------------- parsing


def test_render_then_parse_is_identity() -> None:
    edits = [
        Edit("pkg/core.py", "def a():\n    return 1\n", "def a():\n    return 10\n"),
        Edit("pkg/new.py", "", "X = 1\n"),
        Edit("pkg/old.py", "", "", delete=True),
        Edit("pkg/core.py", "def b():\n", ""),
    ]
    assert parse_edits(render_edits(edits)) == edits


def test_parse_strips_prose_fences_and_main_guard_junk() -> None:
    answer = (
        "Here is the fix. First the core module:\n\n"
        "```python\n"
        "pkg/core.py\n"
        "<<<<<<< SEARCH\n"
        "def a():\n"
        "    return 1\n"
        "=======\n"
        "def a():\n"
        "    return 10\n"
        ">>>>>>> REPLACE\n"
        "```\n\n"
        "And you can try it:\n"
        "```python\n"
        'if __name__ == "__main__":\n'
        "    print(a())\n"
        "```\n"
        "**pkg/api.py**\n"
        "```\n"
        "<<<<<<< SEARCH\n"
        "=======\n"
        "API = 1\n"
        ">>>>>>> REPLACE\n"
        "```\n"
        "That's all!"
    )
    assert parse_edits(answer) == [
        Edit("pkg/core.py", "def a():\n    return 1\n", "def a():\n    return 10\n"),
        Edit("pkg/api.py", "", "API = 1\n"),
    ]


@pytest.mark.parametrize(
    ("line", "path"),
    [
        ("pkg/core.py", "pkg/core.py"),
        ("File: pkg/core.py", "pkg/core.py"),
        ("### `pkg/core.py`", "pkg/core.py"),
        ("Change to ./pkg/core.py:", "pkg/core.py"),
    ],
)
def test_the_path_line_may_carry_markup(line: str, path: str) -> None:
    text = f"{line}\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n"
    assert parse_edits(text)[0].path == path


def test_a_block_without_a_path_reuses_the_previous_one() -> None:
    text = (
        "pkg/core.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n"
        "<<<<<<< SEARCH\nc\n=======\nd\n>>>>>>> REPLACE\n"
    )
    assert [e.path for e in parse_edits(text)] == ["pkg/core.py", "pkg/core.py"]


def test_windows_line_ends_in_an_answer_are_read() -> None:
    text = "pkg/core.py\r\n<<<<<<< SEARCH\r\na\r\n=======\r\nb\r\n>>>>>>> REPLACE\r\n"
    assert parse_edits(text) == [Edit("pkg/core.py", "a\n", "b\n")]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("pkg/core.py\n<<<<<<< SEARCH\na\n=======\nb\n", "not closed"),
        ("pkg/core.py\n<<<<<<< SEARCH\na\nb\n>>>>>>> REPLACE\n", "divider"),
        ("<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n", "names no file"),
        ("p.py\n<<<<<<< SEARCH\na\n<<<<<<< SEARCH\n=======\n>>>>>>> REPLACE\n", "before the next block"),
        ("p.py\n<<<<<<< DELETE\nstuff\n", "not closed"),
    ],
)
def test_broken_blocks_raise_edit_format_error(text: str, fragment: str) -> None:
    with pytest.raises(EditFormatError, match=fragment):
        parse_edits(text)


def test_no_blocks_is_an_empty_list() -> None:
    assert parse_edits("I could not find anything to change.") == []


# ----------------------------------------------------------------------------- applying


def make_tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "wt"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    root.mkdir(exist_ok=True)
    return root


def test_exact_edit_applies(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"pkg/core.py": CORE})
    result = apply_edits(root, [Edit("pkg/core.py", "    return 1\n", "    return 10\n")])
    assert result.ok and result.files == ["pkg/core.py"] and result.fuzzy == []
    assert (root / "pkg/core.py").read_text() == CORE.replace("return 1", "return 10")


def test_trailing_whitespace_is_tolerated(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"m.py": "x = 1   \ny = 2\n"})
    result = apply_edits(root, [Edit("m.py", "x = 1\ny = 2\n", "x = 3\ny = 2\n")])
    assert result.ok and result.fuzzy == [1]
    assert (root / "m.py").read_text() == "x = 3\ny = 2\n"


def test_a_uniform_indent_shift_is_tolerated_and_applied_to_the_replacement(tmp_path: Path) -> None:
    text = "class C:\n    def m(self):\n        return 1\n"
    root = make_tree(tmp_path, {"m.py": text})
    # The model quoted the method without the class's indentation.
    edit = Edit("m.py", "def m(self):\n    return 1\n", "def m(self):\n    if self:\n        return 2\n    return 1\n")
    result = apply_edits(root, [edit])
    assert result.ok and result.fuzzy == [1]
    assert (root / "m.py").read_text() == (
        "class C:\n    def m(self):\n        if self:\n            return 2\n        return 1\n")


def test_a_search_that_is_not_there_is_an_apply_error_naming_block_and_reason(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"pkg/core.py": CORE})
    result = apply_edits(root, [
        Edit("pkg/core.py", "def b():\n", "def b(x):\n"),
        Edit("pkg/core.py", "def a():\n    return 99\n", "def a():\n    return 3\n"),
    ])
    assert not result.ok
    assert result.apply_error is not None
    assert result.apply_error.startswith("block 2 (pkg/core.py): SEARCH not found")
    assert "'return 1'" in result.apply_error  # where the closest candidate diverges
    # All or nothing: block 1 applied in memory, but nothing was written.
    assert (root / "pkg/core.py").read_text() == CORE
    assert result.files == []


def test_an_ambiguous_search_is_an_apply_error(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"m.py": "x = 1\ny = 1\nx = 1\n"})
    result = apply_edits(root, [Edit("m.py", "x = 1\n", "x = 2\n")])
    assert not result.ok and "matches 2 places (lines 1, 3)" in (result.apply_error or "")


def test_create_append_and_delete(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"a.py": "A = 1", "gone.py": "G = 1\n"})
    result = apply_edits(root, [
        Edit("pkg/new.py", "", "N = 1\n"),
        Edit("a.py", "", "B = 2\n"),
        Edit("gone.py", "", "", delete=True),
    ])
    assert result.ok, result.apply_error
    assert (root / "pkg/new.py").read_text() == "N = 1\n"
    assert (root / "a.py").read_text() == "A = 1\nB = 2\n"
    assert not (root / "gone.py").exists()
    assert sorted(result.files) == ["a.py", "gone.py", "pkg/new.py"]


def test_edits_outside_the_tree_or_to_missing_files_fail_and_write_nothing(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"a.py": "A = 1\n"})
    outside = apply_edits(root, [Edit("a.py", "A = 1\n", "A = 2\n"), Edit("../evil.py", "", "x\n")])
    assert not outside.ok and "outside the repository" in (outside.apply_error or "")
    missing = apply_edits(root, [Edit("a.py", "A = 1\n", "A = 2\n"), Edit("nope.py", "x\n", "y\n")])
    assert not missing.ok and "does not exist" in (missing.apply_error or "")
    gone = apply_edits(root, [Edit("nope.py", "", "", delete=True)])
    assert not gone.ok and "cannot delete" in (gone.apply_error or "")
    assert (root / "a.py").read_text() == "A = 1\n"
    assert not (tmp_path / "evil.py").exists()


def test_a_file_without_a_final_newline_keeps_it_that_way(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"m.py": "x = 1\ny = 2"})
    result = apply_edits(root, [Edit("m.py", "y = 2\n", "y = 3\nz = 4\n")])
    assert result.ok
    assert (root / "m.py").read_text() == "x = 1\ny = 3\nz = 4"


def test_dry_run_reports_without_writing(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"m.py": "x = 1\n"})
    result = apply_edits(root, [Edit("m.py", "x = 1\n", "x = 2\n")], dry_run=True)
    assert result.ok and result.files == ["m.py"]
    assert (root / "m.py").read_text() == "x = 1\n"


# ----------------------------------------------------------------------------- gold edits


def assert_reproduces(repo: RepoBuilder, parent: str, sha: str, paths: list[str]) -> list[Edit]:
    """Check out the parent, apply the gold edits, compare every path with the commit."""
    edits = gold_edits(repo.path, parent, sha, paths)
    repo.checkout(parent)
    result = apply_edits(repo.path, edits)
    assert result.ok, result.apply_error
    for path in paths:
        want = git_bytes(repo.path, "show", f"{sha}:{path}", check=False)
        exists = bool(git_bytes(repo.path, "ls-tree", sha, "--", path).strip())
        target = repo.path / path
        assert target.exists() == exists, path
        if exists:
            assert target.read_bytes() == want, path
    return edits


def test_gold_edits_reproduce_a_commit_with_many_hunks_new_and_deleted_files(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(30))
    parent = repo.commit("init", {"pkg/core.py": body, "pkg/old.py": "OLD = 1\n", "README.md": "hi\n"})
    new_body = body.replace("return x + 3\n", "return x * 3\n").replace("return x + 20\n", "return x - 20\n")
    new_body = new_body.replace("def f10(x):\n", "def f10(x, y=0):\n") + "def g():\n    return None\n"
    repo.delete("pkg/old.py")
    sha = repo.commit("Rework arithmetic", {"pkg/core.py": new_body, "pkg/new.py": "NEW = 2\n"})
    edits = assert_reproduces(repo, parent, sha, ["pkg/core.py", "pkg/old.py", "pkg/new.py"])
    core = [e for e in edits if e.path == "pkg/core.py"]
    assert len(core) == 4  # four separate hunks, far apart: four blocks
    assert Edit("pkg/old.py", "", "", delete=True) in edits
    assert Edit("pkg/new.py", "", "NEW = 2\n") in edits


def test_gold_edits_grow_context_until_every_search_is_unique(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    same = "    if x is None:\n        return None\n        # same\n        # same\n"
    text = "".join(f"def f{i}(x):\n{same}    return x\n\n\n" for i in range(5))
    parent = repo.commit("init", {"m.py": text})
    changed = text.replace("def f3(x):\n" + same, "def f3(x):\n" + same.replace("return None", "return 0"))
    sha = repo.commit("Return zero", {"m.py": changed})
    (edit,) = assert_reproduces(repo, parent, sha, ["m.py"])
    assert "def f3(x):" in edit.search  # grown back to the line that tells the copies apart


def test_gold_edits_merge_overlapping_hunks(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    parent = repo.commit("init", {"m.py": "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\n"})
    sha = repo.commit("Change two", {"m.py": "a = 1\nb = 20\nc = 3\nd = 40\ne = 5\n"})
    edits = assert_reproduces(repo, parent, sha, ["m.py"])
    assert len(edits) == 1


def test_gold_edits_keep_a_missing_final_newline_and_crlf(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    parent = repo.commit("init", {"a.py": "x = 1\ny = 2", "w.py": "p = 1\r\nq = 2\r\n"})
    sha = repo.commit("Bump", {"a.py": "x = 1\ny = 3", "w.py": "p = 1\r\nq = 3\r\n"})
    assert_reproduces(repo, parent, sha, ["a.py", "w.py"])


def test_gold_edits_refuse_what_the_format_cannot_carry(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    parent = repo.commit("init", {"a.py": "x = 1"})
    sha = repo.commit("Add final newline", {"a.py": "x = 1\n"})
    with pytest.raises(EditError, match="final newline"):
        gold_edits(repo.path, parent, sha, ["a.py"])
    (repo.path / "blob.bin").write_bytes(b"\0\1\2")
    binsha = repo.commit("Add binary")
    with pytest.raises(EditError, match="binary"):
        gold_edits(repo.path, sha, binsha, ["blob.bin"])


_LINES = st.sampled_from(["a", "b", "", "    x = 1", "def f():", "    return None", "# same"])


@settings(max_examples=250, deadline=None)
@given(st.lists(_LINES, max_size=25), st.lists(_LINES, max_size=25))
def test_gold_blocks_always_reproduce_the_new_text(old: list[str], new: list[str]) -> None:
    # Few distinct lines: SEARCH uniqueness is hard, which is the point.
    old_text = "".join(ln + "\n" for ln in old)
    new_text = "".join(ln + "\n" for ln in new)
    edits = edits_for_file("m.py", old_text, new_text, context=1)
    state, result = apply_to_texts({"m.py": old_text}, edits)
    assert result.ok, result.apply_error
    assert state["m.py"] == new_text
    assert parse_edits(render_edits(edits)) == edits
