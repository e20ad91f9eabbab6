"""Pure functions over Python source text: symbols, module names, imports.

The symbol index (harness/index.py) and the plan-diff alignment scorer both need the
same answer to "which symbols does this file define, and which of them does a set of
changed lines touch"; keeping it here, with no I/O, guarantees they never disagree.

Conventions, chosen so a model's plan and the gold diff can name the same thing:

* A symbol is a class, or a function defined at module level or directly in a class
  (at any depth of class nesting): ``helper``, ``Parser``, ``Parser.parse``,
  ``Outer.Inner.method``. Functions and classes defined *inside a function* are part of
  that function (nobody can name a closure from outside), so a change to a closure
  touches its enclosing function.
* ``lineno`` includes decorators: a change to ``@property`` changes the property.
* ``docstring`` is the first paragraph, whitespace collapsed to single spaces.
"""

from __future__ import annotations

import ast
import codecs
import io
import re
import tokenize
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "ImportSpec",
    "ParsedModule",
    "Symbol",
    "coding_of_text",
    "decode_source",
    "import_candidates",
    "module_imports",
    "module_name",
    "package_of",
    "parse_module",
    "parse_symbols",
    "source_encoding",
    "symbols_touching",
]


@dataclass(frozen=True)
class Symbol:
    qualname: str  # "Parser.parse", "helper", "Outer.Inner"
    kind: str  # "class" | "function" | "method"
    lineno: int  # 1-based, first line including decorators
    end_lineno: int  # inclusive
    signature: str  # "def parse(self, text: str) -> Node" / "class Parser(Base)"
    docstring: str  # first paragraph, "" if none


@dataclass(frozen=True)
class ImportSpec:
    """One import as written, independent of the importing file's path.

    ``import a.b``           -> ImportSpec("a.b", 0, ())
    ``from a.b import c, d`` -> ImportSpec("a.b", 0, ("c", "d"))
    ``from .. import x``     -> ImportSpec("", 2, ("x",))
    """

    module: str
    level: int
    names: tuple[str, ...]


@dataclass(frozen=True)
class ParsedModule:
    """Everything the index keeps from one file, from a single ``ast.parse``."""

    symbols: list[Symbol]
    docstring: str  # the whole module docstring, cleaned ("" if none)
    imports: list[ImportSpec]


def _parse(text: str) -> ast.Module:
    """``ast.parse`` that fails only with ``SyntaxError``.

    Null bytes raise ``ValueError`` on some Pythons and absurd nesting ``RecursionError``
    or ``MemoryError``; callers should have one exception to catch for "not parseable".
    Warnings (invalid escape sequences in old code) are noise here, not news.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text)
    except SyntaxError:
        raise
    except (ValueError, RecursionError, MemoryError) as exc:
        raise SyntaxError(f"cannot parse: {type(exc).__name__}: {exc}") from exc


def parse_symbols(text: str) -> list[Symbol]:
    """Classes, functions and methods of a module, in source order.

    Raises ``SyntaxError`` when the text is not valid Python (the caller decides whether
    that is fatal: the index records it, the scorer may fall back to file level).
    """
    return list(_walk(_parse(text).body, prefix="", in_class=False))


def parse_module(text: str) -> ParsedModule:
    """Symbols, module docstring and imports of a module in one parse (for the index)."""
    tree = _parse(text)
    return ParsedModule(
        symbols=list(_walk(tree.body, prefix="", in_class=False)),
        docstring=(ast.get_docstring(tree, clean=True) or "").strip(),
        imports=list(_import_specs(tree)),
    )


def _walk(body: Iterable[ast.stmt], *, prefix: str, in_class: bool) -> Iterator[Symbol]:
    for node in _defs(body):
        qualname = f"{prefix}{node.name}"
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        end = node.end_lineno or node.lineno
        if isinstance(node, ast.ClassDef):
            yield Symbol(qualname, "class", first, end, _class_signature(node), _first_paragraph(node))
            yield from _walk(node.body, prefix=f"{qualname}.", in_class=True)
        else:
            kind = "method" if in_class else "function"
            yield Symbol(qualname, kind, first, end, _def_signature(node), _first_paragraph(node))
            # Closures and local classes belong to this function: not walked.


def _defs(body: Iterable[ast.stmt]) -> Iterator[ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef]:
    """Definitions in a block, including those under ``if``/``try``/``with`` at that level.

    ``if TYPE_CHECKING:``, ``try: ... except ImportError: def fallback()`` and
    ``if sys.version_info ...: def f()`` define module (or class) level names too.
    """
    for node in body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            yield node
        elif isinstance(node, ast.If | ast.While | ast.For | ast.AsyncFor):
            yield from _defs(node.body)
            yield from _defs(node.orelse)
        elif isinstance(node, ast.With | ast.AsyncWith):
            yield from _defs(node.body)
        elif isinstance(node, ast.Try | ast.TryStar):
            yield from _defs(node.body)
            for handler in node.handlers:
                yield from _defs(handler.body)
            yield from _defs(node.orelse)
            yield from _defs(node.finalbody)
        elif isinstance(node, ast.Match):
            for case in node.cases:
                yield from _defs(case.body)


def _type_params(node: ast.AST) -> str:
    params = getattr(node, "type_params", None)  # Python 3.12+: class C[T], def f[T]()
    return f"[{', '.join(ast.unparse(p) for p in params)}]" if params else ""


def _def_signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
    return f"{prefix} {node.name}{_type_params(node)}({ast.unparse(node.args)}){returns}"


def _class_signature(node: ast.ClassDef) -> str:
    bases = [ast.unparse(b) for b in node.bases] + [ast.unparse(k) for k in node.keywords]
    args = f"({', '.join(bases)})" if bases else ""
    return f"class {node.name}{_type_params(node)}{args}"


def _first_paragraph(node: ast.AST) -> str:
    doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
    if not doc:
        return ""
    para = doc.strip().split("\n\n", 1)[0]
    return " ".join(para.split())


# --- module names and imports -------------------------------------------------------------


_CODING = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")  # PEP 263


def source_encoding(data: bytes) -> str:
    """The encoding Python reads ``data`` in: its PEP 263 coding line or UTF-8 BOM, else
    UTF-8 (``tokenize.detect_encoding``). Raises ``SyntaxError`` for a coding line naming
    an encoding Python does not know, or one that disagrees with a BOM."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        if "invalid or missing encoding declaration" not in str(exc):
            raise  # an unknown codec, or a coding line that contradicts a BOM
        return "utf-8"  # no declaration, bytes that are not UTF-8: decoding says where
    return codecs.lookup(encoding).name


def decode_source(data: bytes) -> tuple[str, str]:
    """(text, encoding) of a Python file's bytes, decoded as Python itself decodes them.

    A Latin-1 module with ``# -*- coding: latin-1 -*-`` is valid Python; read as UTF-8
    it would not even be text. A UTF-8 BOM is dropped from the text and the encoding is
    ``utf-8-sig``, so writing the text back with it restores the BOM. Raises
    ``SyntaxError`` for an unknown coding line and ``UnicodeDecodeError`` for bytes that
    are not in the declared encoding (Python would refuse the file too).
    """
    encoding = source_encoding(data)
    return data.decode(encoding), encoding


def coding_of_text(text: str) -> str:
    """The encoding a text's own coding line asks for when written to disk (UTF-8 when it
    names none): what an edited Python file must be encoded in to stay valid."""
    for line in text.split("\n", 2)[:2]:
        match = _CODING.match(line)
        if match:
            try:
                return codecs.lookup(match[1]).name
            except LookupError:
                return "utf-8"
        if line.strip() and not line.lstrip().startswith("#"):
            break
    return "utf-8"



def module_name(path: str) -> str:
    """The dotted module name of a repo-relative path.

    ``src/pkg/mod.py`` -> ``pkg.mod`` (src layout), ``pkg/__init__.py`` -> ``pkg``,
    ``mod.py`` -> ``mod``. Other leading folders are kept (``lib/pkg/m.py`` ->
    ``lib.pkg.m``); the index matches imports against such names by suffix.
    """
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts:
        return ""
    last = parts[-1]
    for suffix in (".pyi", ".py"):
        if last.endswith(suffix):
            last = last[: -len(suffix)]
            break
    parts[-1] = last
    if parts[-1] == "__init__":
        parts.pop()
    if len(parts) > 1 and parts[0] == "src":
        parts = parts[1:]
    return ".".join(parts)


def package_of(path: str) -> str:
    """The package that relative imports in ``path`` resolve against.

    For ``pkg/sub/mod.py`` it is ``pkg.sub``; for ``pkg/sub/__init__.py`` it is
    ``pkg.sub`` too (a package's ``__init__`` is inside the package).
    """
    name = module_name(path)
    is_init = path.replace("\\", "/").rsplit("/", 1)[-1] in ("__init__.py", "__init__.pyi")
    if is_init:
        return name
    return name.rpartition(".")[0]


def _statements(body: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement, at any depth, without visiting expressions.

    Imports are statements and expressions cannot hold statements, so this finds every
    import at a fraction of ``ast.walk``'s cost (which was most of the indexing time).
    """
    stack = list(body)[::-1]
    while stack:
        node = stack.pop()
        yield node
        inner: list[ast.stmt] = list(getattr(node, "body", ()))  # in source order:
        for handler in getattr(node, "handlers", ()):  # try: body, handlers, else, finally
            inner.extend(handler.body)
        for case in getattr(node, "cases", ()):
            inner.extend(case.body)
        inner.extend(getattr(node, "orelse", ()))
        inner.extend(getattr(node, "finalbody", ()))
        stack.extend(reversed(inner))


def _import_specs(tree: ast.Module) -> Iterator[ImportSpec]:
    """Every import statement in the module, including those inside functions."""
    for node in _statements(tree.body):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield ImportSpec(alias.name, 0, ())
        elif isinstance(node, ast.ImportFrom):
            names = tuple(a.name for a in node.names if a.name != "*")
            yield ImportSpec(node.module or "", node.level, names)


def import_candidates(spec: ImportSpec, package: str) -> list[list[str]]:
    """Absolute module names a spec may refer to, one list per imported thing.

    Each inner list is in order of preference: ``from pkg import x`` gives
    ``[["pkg.x", "pkg"]]`` because ``x`` may be a submodule or a name defined in
    ``pkg`` — only the caller knows which modules exist. A relative import reaching above
    the top-level package is dropped (it fails at run time too).
    """
    if spec.level:
        base_parts = package.split(".") if package else []
        up = spec.level - 1
        if up >= len(base_parts):
            return []
        base_parts = base_parts[: len(base_parts) - up]
        base = ".".join([*base_parts, *([spec.module] if spec.module else [])])
    else:
        base = spec.module
    if not spec.names:
        return [[base]] if base else []
    return [[f"{base}.{n}" if base else n, *([base] if base else [])] for n in spec.names]


def module_imports(text: str, path: str) -> list[str]:
    """Absolute module names imported by a file, relative imports resolved against its path.

    ``from a import b`` yields both ``a.b`` (in case ``b`` is a submodule) and ``a``;
    callers that know the set of existing modules keep the ones that exist. Order is
    first appearance, without duplicates. Raises ``SyntaxError`` like ``parse_symbols``.
    """
    package = package_of(path)
    seen: dict[str, None] = {}
    for spec in _import_specs(_parse(text)):
        for alternatives in import_candidates(spec, package):
            for name in alternatives:
                seen.setdefault(name, None)
    return list(seen)


# --- mapping changed lines to symbols --------------------------------------------------------


def symbols_touching(symbols: list[Symbol], lines: set[int]) -> list[str]:
    """Qualnames of the innermost symbols containing any of ``lines``, in source order.

    A line in a method body names the method, not its class; a class attribute line names
    the class; a module-level line names nothing. Each qualname appears once even when it
    is defined twice (property getter and setter).
    """
    if not symbols or not lines:
        return []
    # Symbols from one parse nest properly, so a sweep with a stack of open symbols finds,
    # for every line, the innermost open one in O(symbols + lines).
    order = sorted(range(len(symbols)), key=lambda i: (symbols[i].lineno, -symbols[i].end_lineno))
    hit: set[int] = set()
    stack: list[int] = []
    nxt = 0
    for line in sorted(lines):
        while nxt < len(order) and symbols[order[nxt]].lineno <= line:
            start = symbols[order[nxt]].lineno
            while stack and symbols[stack[-1]].end_lineno < start:
                stack.pop()
            stack.append(order[nxt])
            nxt += 1
        while stack and symbols[stack[-1]].end_lineno < line:
            stack.pop()
        if stack:
            hit.add(stack[-1])
    seen: dict[str, None] = {}
    for i in sorted(hit, key=lambda i: (symbols[i].lineno, i)):
        seen.setdefault(symbols[i].qualname, None)
    return list(seen)
