"""harness/pysource.py on the code real repositories contain, tricky corners first."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.pysource import (
    Symbol,
    module_imports,
    module_name,
    package_of,
    parse_module,
    parse_symbols,
    symbols_touching,
)

TRICKY = textwrap.dedent('''\
    """Parsers for dates.

    More prose here.
    """
    import functools


    def helper(x: int, *args, key: str = "a", **kw) -> list[int]:
        """Return x in a list.

        Second paragraph is not kept.
        """
        def inner():
            return x
        return [inner()]


    @functools.total_ordering
    @dataclass(frozen=True)
    class Parser(Base, metaclass=Meta):
        """Parse   ISO
        dates."""

        greeting = "hi"

        @property
        def name(self) -> str:
            return "p"

        @name.setter
        def name(self, value):
            pass

        async def fetch(self, url, /, *, timeout=1.0):
            pass

        class Inner:
            def deep(self):
                class Local:
                    pass
                return Local


    if TYPE_CHECKING:
        def typed_only() -> None: ...
    else:
        try:
            from fast import speedy
        except ImportError:
            def speedy():
                pass


    async def main():
        pass
''')


def by_name(symbols: list[Symbol]) -> dict[str, Symbol]:
    return {s.qualname: s for s in symbols}


def test_symbols_of_tricky_module_in_source_order():
    syms = parse_symbols(TRICKY)
    assert [s.qualname for s in syms] == [
        "helper",
        "Parser",
        "Parser.name",
        "Parser.name",
        "Parser.fetch",
        "Parser.Inner",
        "Parser.Inner.deep",
        "typed_only",
        "speedy",
        "main",
    ]
    kinds = {s.qualname: s.kind for s in syms}
    assert kinds["helper"] == "function"
    assert kinds["Parser"] == "class"
    assert kinds["Parser.fetch"] == "method"
    assert kinds["Parser.Inner"] == "class"
    assert kinds["Parser.Inner.deep"] == "method"
    assert kinds["main"] == "function"


def test_closures_and_local_classes_belong_to_their_function():
    names = [s.qualname for s in parse_symbols(TRICKY)]
    assert "helper.inner" not in names and "inner" not in names
    assert not any("Local" in n for n in names)


def test_line_ranges_include_decorators_and_are_inclusive():
    syms = by_name(parse_symbols(TRICKY))
    lines = TRICKY.splitlines()
    parser = syms["Parser"]
    assert lines[parser.lineno - 1] == "@functools.total_ordering"
    assert lines[parser.end_lineno - 1].strip() == "return Local"
    helper = syms["helper"]
    assert lines[helper.lineno - 1].startswith("def helper(")
    assert lines[helper.end_lineno - 1].strip() == "return [inner()]"
    getter = parse_symbols(TRICKY)[2]
    assert lines[getter.lineno - 1].strip() == "@property"


def test_signatures():
    syms = by_name(parse_symbols(TRICKY))
    assert syms["helper"].signature == "def helper(x: int, *args, key: str='a', **kw) -> list[int]"
    assert syms["Parser"].signature == "class Parser(Base, metaclass=Meta)"
    assert syms["Parser.fetch"].signature == "async def fetch(self, url, /, *, timeout=1.0)"
    assert syms["Parser.Inner"].signature == "class Inner"
    assert syms["main"].signature == "async def main()"


def test_docstring_is_first_paragraph_collapsed():
    syms = by_name(parse_symbols(TRICKY))
    assert syms["helper"].docstring == "Return x in a list."
    assert syms["Parser"].docstring == "Parse ISO dates."
    assert syms["Parser.fetch"].docstring == ""
    assert parse_module(TRICKY).docstring.startswith("Parsers for dates.\n\nMore prose")


def test_invalid_source_raises_syntax_error_only():
    with pytest.raises(SyntaxError):
        parse_symbols("def broken(:\n    pass\n")
    with pytest.raises(SyntaxError):
        parse_symbols("x = 1\x00\n")  # null bytes: ValueError on some Pythons
    with pytest.raises(SyntaxError):
        module_imports("import (\n", "a.py")


def test_empty_and_module_only_source():
    assert parse_symbols("") == []
    assert parse_symbols("X = 1\nprint(X)\n") == []


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("src/pkg/mod.py", "pkg.mod"),
        ("src/pkg/__init__.py", "pkg"),
        ("pkg/sub/mod.py", "pkg.sub.mod"),
        ("pkg/__init__.py", "pkg"),
        ("mod.py", "mod"),
        ("src/mod.py", "mod"),
        ("./tests/test_x.py", "tests.test_x"),
        ("pkg/stubs.pyi", "pkg.stubs"),
        ("lib/pkg/m.py", "lib.pkg.m"),
        ("src.py", "src"),
    ],
)
def test_module_name(path: str, name: str):
    assert module_name(path) == name


def test_package_of_module_and_init():
    assert package_of("src/pkg/sub/mod.py") == "pkg.sub"
    assert package_of("src/pkg/sub/__init__.py") == "pkg.sub"
    assert package_of("mod.py") == ""


def test_absolute_imports():
    text = textwrap.dedent("""\
        import os, json as j
        import pkg.sub.mod
        from pkg.core import parse, Node
        from pkg import *

        def late():
            import pkg.late
    """)
    assert module_imports(text, "pkg/x.py") == [
        "os", "json", "pkg.sub.mod", "pkg.core.parse", "pkg.core", "pkg.core.Node", "pkg", "pkg.late",
    ]


def test_relative_imports_resolved_against_the_package():
    text = "from . import x\nfrom .sib import y\nfrom ..pkg import z\nfrom .. import top\n"
    assert module_imports(text, "src/a/b/mod.py") == [
        "a.b.x", "a.b", "a.b.sib.y", "a.b.sib", "a.pkg.z", "a.pkg", "a.top", "a",
    ]


def test_relative_import_in_package_init_uses_the_package_itself():
    assert module_imports("from . import x\nfrom ._impl import f\n", "src/a/__init__.py") == [
        "a.x", "a", "a._impl.f", "a._impl",
    ]


def test_relative_import_beyond_top_level_is_dropped():
    assert module_imports("from ... import x\nimport os\n", "a/mod.py") == ["os"]
    assert module_imports("from . import x\n", "top.py") == []


CLASSY = textwrap.dedent('''\
    X = 1


    class A:
        attr = 2

        @staticmethod
        def m(self):
            return 1

        def n(self):
            return 2


    def f():
        def g():
            return 3
        return g
''')


def test_symbols_touching_innermost():
    syms = parse_symbols(CLASSY)
    assert symbols_touching(syms, {1}) == []  # module level
    assert symbols_touching(syms, {5}) == ["A"]  # class attribute
    assert symbols_touching(syms, {7}) == ["A.m"]  # decorator line
    assert symbols_touching(syms, {9, 12}) == ["A.m", "A.n"]
    assert symbols_touching(syms, {17}) == ["f"]  # a closure's line names its function
    assert symbols_touching(syms, {12, 5, 1, 18}) == ["A", "A.n", "f"]  # source order
    assert symbols_touching(syms, {100}) == []
    assert symbols_touching([], {1}) == []
    assert symbols_touching(syms, set()) == []


def test_symbols_touching_reports_a_redefined_name_once():
    syms = parse_symbols(TRICKY)
    getter, setter = (s for s in syms if s.qualname == "Parser.name")
    assert symbols_touching(syms, {getter.end_lineno, setter.end_lineno}) == ["Parser.name"]


def test_symbols_touching_matches_brute_force_on_real_code():
    """The sweep must agree with the obvious definition on every line of a real module."""
    import harness.pysource as mod

    text = Path(mod.__file__).read_text(encoding="utf-8")
    syms = parse_symbols(text)
    for line in range(1, text.count("\n") + 2):
        containing = [s for s in syms if s.lineno <= line <= s.end_lineno]
        expected = [max(containing, key=lambda s: (s.lineno, -s.end_lineno)).qualname] if containing else []
        assert symbols_touching(syms, {line}) == expected, line


def test_imports_and_defs_in_every_kind_of_block():
    text = textwrap.dedent("""\
        match sys.platform:
            case "win32":
                import winlib
                def opener(): ...
            case _:
                from posix import opener_impl as opener
        try:
            import fastjson
        except* ImportError:
            import slowjson
        else:
            import extra
        finally:
            import cleanup
        class K:
            import inside_class
            def m(self):
                with ctx():
                    for _ in x:
                        while y:
                            import deep
        lam = lambda: __import__("not_an_import_statement")
    """)
    assert module_imports(text, "m.py") == [
        "winlib", "posix.opener_impl", "posix", "fastjson", "slowjson", "extra", "cleanup",
        "inside_class", "deep",
    ]
    assert [s.qualname for s in parse_symbols(text)] == ["opener", "K", "K.m"]
