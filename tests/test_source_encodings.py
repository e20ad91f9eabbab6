"""Python sources in a declared encoding (PEP 263): read, taught and edited in it.

A Latin-1 module with ``# -*- coding: latin-1 -*-`` is valid Python. Read as UTF-8 it is not
even text, and every triple of a commit touching it was dropped as "no exact gold edits".
Real commits, built here; bytes written as the legacy files hold them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from repo_builder import RepoBuilder

from harness.edits import Edit, EditError, apply_edits, gold_edits, read_texts
from harness.groundtruth import ground_truth
from harness.pysource import coding_of_text, decode_source, source_encoding
from harness.triples import gold_examples, skip_key

LATIN1_OLD = b'# -*- coding: latin-1 -*-\n"""Labels."""\n\nDEFAULT = "caf\xe9"\n\n\ndef shout(label):\n    return label.upper()\n'
LATIN1_NEW = LATIN1_OLD + b'\n\ndef accents(label):\n    """Count \xe9 and \xe8."""\n    return sum(ch in "\xe9\xe8" for ch in label)\n'


def test_sources_decode_as_python_reads_them() -> None:
    assert decode_source(LATIN1_OLD)[1] == "iso8859-1"
    assert 'DEFAULT = "caf\u00e9"' in decode_source(LATIN1_OLD)[0]
    assert decode_source("x = '\u20ac'\n".encode())[1] == "utf-8"
    text, encoding = decode_source(b"\xef\xbb\xbfx = 1\n")
    assert (text, encoding) == ("x = 1\n", "utf-8-sig")
    cp1252 = b"#!/usr/bin/env python\n# vim: set fileencoding=cp1252 :\nEURO = '\x80'\n"
    assert decode_source(cp1252)[0].endswith("EURO = '\u20ac'\n")
    with pytest.raises(SyntaxError):
        source_encoding(b"# coding: no-such-codec\nx = 1\n")
    with pytest.raises(UnicodeDecodeError):
        decode_source(b"x = 'caf\xe9'\n")  # no coding line: UTF-8, and this is not
    assert coding_of_text("# -*- coding: latin-1 -*-\nx = 1\n") == "iso8859-1"
    assert coding_of_text("import os\n# coding: latin-1\n") == "utf-8"  # only the first two lines


@pytest.fixture
def latin1_commit(tmp_path: Path) -> tuple[RepoBuilder, str, str]:
    repo = RepoBuilder(tmp_path / "labelkit")
    repo.write_bytes({"labelkit/__init__.py": LATIN1_OLD})
    parent = repo.commit("Add label helpers", {"tests/test_labels.py": "def test_x():\n    pass\n"})
    repo.write_bytes({"labelkit/__init__.py": LATIN1_NEW})
    sha = repo.commit("Count accented letters in labels", {"tests/test_labels.py": "def test_y():\n    pass\n"})
    return repo, parent, sha


def test_gold_edits_of_a_latin1_module_are_exact(latin1_commit: tuple[RepoBuilder, str, str]) -> None:
    repo, parent, sha = latin1_commit
    texts = read_texts(repo.path, sha, ["labelkit/__init__.py"])
    assert '"""Count \u00e9 and \u00e8."""' in (texts["labelkit/__init__.py"] or "")
    (edit,) = gold_edits(repo.path, parent, sha, ["labelkit/__init__.py"])
    assert 'sum(ch in "\u00e9\u00e8" for ch in label)' in edit.replace


def test_every_triple_of_a_latin1_commit_is_kept(latin1_commit: tuple[RepoBuilder, str, str]) -> None:
    repo, parent, sha = latin1_commit
    truth = ground_truth(repo.path, parent, sha)
    assert truth.symbols == {"labelkit/__init__.py": ["accents"]} and not truth.unparsed
    ex = gold_examples(repo.path, repo="labelkit", sha=sha, parent=parent,
                       instruction="Count accented letters in labels", author_ts=0)
    assert ex.skipped == {}
    assert {t.stage for t in ex.triples} == {"scope", "precision", "execute"}


def test_a_triple_still_dropped_says_why(tmp_path: Path) -> None:
    """A module with bytes its (absent) coding line does not allow: Python would refuse it
    too, and the reason names the file's problem, counted by its kind."""
    repo = RepoBuilder(tmp_path / "lib")
    repo.write_bytes({"lib/legacy.py": b"X = 1\n"})
    parent = repo.commit("Add the legacy module", {"tests/test_legacy.py": "def test_x():\n    pass\n"})
    repo.write_bytes({"lib/legacy.py": b"X = 1\nNAME = 'caf\xe9'\n"})
    sha = repo.commit("Name the legacy module", {"tests/test_legacy.py": "def test_y():\n    pass\n"})
    with pytest.raises(EditError, match=r"lib/legacy.py is not text in its declared encoding \(utf-8\)"):
        gold_edits(repo.path, parent, sha, ["lib/legacy.py"])
    ex = gold_examples(repo.path, repo="lib", sha=sha, parent=parent, instruction="Name it", author_ts=0)
    why = ex.skipped["execute"]
    assert why.startswith("no exact gold edits: lib/legacy.py is not text in its declared encoding (utf-8)")
    assert why.endswith("byte 0xe9 is not utf-8")
    assert skip_key("execute", why) == ("execute: no exact gold edits: <file> is not text in its declared "
                                        "encoding (utf-8) at <rev>: byte 0xe9 is not utf-8")


def test_edits_to_a_latin1_module_are_written_back_in_latin1(tmp_path: Path) -> None:
    (tmp_path / "labelkit").mkdir()
    target = tmp_path / "labelkit" / "__init__.py"
    target.write_bytes(LATIN1_OLD)
    edit = Edit("labelkit/__init__.py", 'DEFAULT = "caf\u00e9"\n', 'DEFAULT = "cr\u00e8me"\n')
    result = apply_edits(tmp_path, [edit])
    assert result.ok and result.files == ["labelkit/__init__.py"]
    assert b'DEFAULT = "cr\xe8me"\n' in target.read_bytes()
    assert target.read_bytes().startswith(b"# -*- coding: latin-1 -*-\n")
    euro = Edit("labelkit/__init__.py", 'DEFAULT = "cr\u00e8me"\n', 'DEFAULT = "5 \u20ac"\n')
    before = target.read_bytes()
    result = apply_edits(tmp_path, [euro])
    assert not result.ok and "cannot be written in latin-1" in (result.apply_error or "")
    assert target.read_bytes() == before  # nothing written


def test_edits_keep_a_utf8_bom_and_other_files_as_they_were(tmp_path: Path) -> None:
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbfX = 1\n")
    (tmp_path / "notes.txt").write_bytes(b"caf\xe9\nend\n")  # not UTF-8, not Python: bytes kept
    assert apply_edits(tmp_path, [Edit("bom.py", "X = 1\n", "X = 2\n"),
                                  Edit("notes.txt", "end\n", "fin\n")]).ok
    assert (tmp_path / "bom.py").read_bytes() == b"\xef\xbb\xbfX = 2\n"
    assert (tmp_path / "notes.txt").read_bytes() == b"caf\xe9\nfin\n"
