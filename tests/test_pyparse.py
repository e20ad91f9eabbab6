"""Parsing Python file versions, and the incremental re-parse, against full parses.

The incremental re-parse must give exactly what a full parse gives (the same verdict, the
same spans); it is checked on hand-written edits and, with hypothesis, on random ones.
"""

from __future__ import annotations

import difflib
import textwrap

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import pyparse, pysource

MODULE = textwrap.dedent(
    '''\
    """A module."""
    import os

    LIMIT = 3


    def helper(x):
        def inner():
            return x
        return inner()


    @decorate
    class Parser(Base):
        """Parses."""

        flag = True

        def parse(self, text):
            return text.strip()

        @property
        def size(self):
            return LIMIT

        class Inner:
            def deep(self):
                pass


    if os.name == "nt":
        def windows_only():
            pass
    '''
)


def test_parse_file_names_symbols_like_pysource() -> None:
    pf = pyparse.parse_file(MODULE.encode(), "m.py")
    assert pf.error is None
    ours = [(a, b, n) for a, b, n in pf.spans]
    theirs = [(s.lineno, s.end_lineno, s.qualname) for s in pysource.parse_symbols(MODULE)]
    assert ours == theirs
    assert "helper.inner" not in {n for _, _, n in pf.spans}  # a closure is its function


def test_symbols_at_names_the_innermost_symbol_in_source_order() -> None:
    pf = pyparse.parse_file(MODULE.encode(), "m.py")
    lines = {4, 9, 17, 20, 28}  # LIMIT, helper's closure, Parser.flag, parse body, deep body
    assert pf.symbols_at(lines) == ["helper", "Parser", "Parser.parse", "Parser.Inner.deep"]
    syms = pysource.parse_symbols(MODULE)
    assert pf.symbols_at(lines) == pysource.symbols_touching(syms, lines)


def test_parse_python_reports_the_line() -> None:
    tree, error = pyparse.parse_python(b"def f(:\n    pass\n", "bad.py")
    assert tree is None and error is not None and "(line 1)" in error


def test_parse_python_honours_the_coding_line() -> None:
    source = "# -*- coding: latin-1 -*-\nNAME = 'caf\xe9'\n".encode("latin-1")
    assert pyparse.parse_python(source, "l1.py")[1] is None


def test_parse_python_turns_null_bytes_into_an_error() -> None:
    assert pyparse.parse_python(b"x = 1\x00\n", "nul.py")[1]


def blocks_between(old: str, new: str) -> list[pyparse.Block]:
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    return [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in
            difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if tag != "equal"]


def reparse_agrees(old: str, new: str) -> pyparse.PyFile:
    """Re-parse ``new`` from ``old`` and check it against a full parse."""
    base = pyparse.parse_file(old.encode(), "m.py")
    assert base.error is None
    inc = pyparse.reparse(base, new.encode(), blocks_between(old, new), "m.py")
    full = pyparse.parse_file(new.encode(), "m.py")
    assert (inc.error is None) == (full.error is None), (inc.error, full.error)
    if full.error is None:
        assert inc.spans == full.spans
        assert [(b.name, b.first, b.end) for b in inc.bodies] == [(b.name, b.first, b.end) for b in full.bodies]
    else:
        assert inc.error == full.error  # a failure is always the full parse's message
    return inc


def test_reparse_a_changed_method() -> None:
    reparse_agrees(MODULE, MODULE.replace("return text.strip()", "text = text.strip()\n        return text"))


def test_reparse_a_method_appended_after_the_class() -> None:
    reparse_agrees(MODULE, MODULE.replace(
        "                pass\n\n\nif", "                pass\n\n    def added(self):\n        return 1\n\n\nif"))


def test_reparse_a_method_appended_at_the_end_of_the_file() -> None:
    old = "class A:\n    def a(self):\n        pass\n"
    reparse_agrees(old, old + "\n    def b(self):\n        pass\n")


def test_reparse_a_new_signature() -> None:
    reparse_agrees(MODULE, MODULE.replace("def helper(x):", "def helper(x, y=2):"))


def test_reparse_a_renamed_class() -> None:
    reparse_agrees(MODULE, MODULE.replace("class Parser(Base):", "class Reader(Base):"))


def test_reparse_a_renamed_function_with_a_new_decorator() -> None:
    reparse_agrees(MODULE, MODULE.replace("def helper(x):", "@cache\ndef assist(x):"))


def test_reparse_code_appended_to_the_method_above() -> None:
    # git puts the new lines after the method's last line: they belong to that method.
    reparse_agrees(MODULE, MODULE.replace("return LIMIT\n", "return LIMIT\n        # more\n        x = 1\n"))


def test_reparse_deleted_methods() -> None:
    reparse_agrees(MODULE, MODULE.replace("    @property\n    def size(self):\n        return LIMIT\n\n", ""))


def test_reparse_catches_a_syntax_error_in_a_method() -> None:
    assert reparse_agrees(MODULE, MODULE.replace("return text.strip()", "return text.strip(")).error


def test_reparse_catches_code_that_leaves_a_class_open() -> None:
    # A top-level statement inserted where a class ends, then indented code appended:
    # each piece parses on its own, the file does not.
    old = "class A:\n    a = 1\n\nx = 2\n"
    new = "class A:\n    a = 1\ny = 3\n    b = 2\n\nx = 2\n"
    assert reparse_agrees(old, new).error


def test_reparse_catches_a_bad_indent() -> None:
    bad = MODULE.replace("        return text.strip()", "        text = text.strip()\n      return text")
    assert reparse_agrees(MODULE, bad).error


def test_reparse_of_a_file_with_tabs_is_a_full_parse() -> None:
    old = "def f():\n\treturn 1\n"
    inc = reparse_agrees(old, old.replace("1", "2"))
    assert not inc.incremental


def test_reparse_with_blocks_that_do_not_fit_is_a_full_parse() -> None:
    base = pyparse.parse_file(MODULE.encode(), "m.py")
    new = MODULE.replace("LIMIT = 3", "LIMIT = 4")
    result = pyparse.reparse(base, new.encode(), [(0, 1, 0, 5)], "m.py")
    assert result.spans == pyparse.parse_file(new.encode(), "m.py").spans


# Hypothesis: a module made of classes and functions, edited by random line operations.
NAMES = st.sampled_from(["alpha", "beta", "gamma", "delta"])
STATEMENT = st.sampled_from(["x = 1", "return x", "pass", "y = (1,\n     2)", "if x:\n    pass", "'''doc'''"])


@st.composite
def modules(draw: st.DrawFn) -> str:
    parts = ["import os\n"]
    for i in range(draw(st.integers(1, 4))):
        name = f"{draw(NAMES)}{i}"
        if draw(st.booleans()):
            methods = []
            for j in range(draw(st.integers(1, 3))):
                body = textwrap.indent(draw(STATEMENT), " " * 8)
                deco = "    @property\n" if draw(st.booleans()) else ""
                methods.append(f"{deco}    def m{j}(self):\n{body}\n")
            parts.append(f"class {name.title()}:\n" + "\n".join(methods))
        else:
            parts.append(f"def {name}(x):\n{textwrap.indent(draw(STATEMENT), '    ')}\n")
    return "\n\n".join(parts)


EDIT_LINES = st.sampled_from([
    "", "x = 2", "    y = 3", "        z = 4", "def added(self):", "    def added(self):",
    "        return 5", "class Added:", "@decorate", "    @decorate", "(", ")", "# comment", "  bad = 1",
])


@st.composite
def edits(draw: st.DrawFn, text: str) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        if op == "insert":
            lines[at:at] = [line + "\n" for line in draw(st.lists(EDIT_LINES, min_size=1, max_size=3))]
        elif op == "delete":
            del lines[at : at + draw(st.integers(1, 4))]
        elif op == "replace" and lines:
            lines[min(at, len(lines) - 1)] = draw(EDIT_LINES) + "\n"
        else:
            lines[at:at] = lines[at : at + draw(st.integers(1, 5))]
    return "".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reparse_agrees_with_a_full_parse(data: st.DataObject) -> None:
    old = data.draw(modules())
    if pyparse.parse_file(old.encode(), "m.py").error:
        return
    new = data.draw(edits(old))
    first = reparse_agrees(old, new)
    if first.error is None:  # and once more from the re-parsed version
        newer = data.draw(edits(new))
        inc = pyparse.reparse(first, newer.encode(), blocks_between(new, newer), "m.py")
        full = pyparse.parse_file(newer.encode(), "m.py")
        assert (inc.error is None) == (full.error is None)
        if full.error is None:
            assert inc.spans == full.spans
