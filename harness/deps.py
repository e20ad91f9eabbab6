"""What a commit declares it needs: runtime and test requirements, build back-end, eras.

Old commits of a real repo need other packages than new ones (a 2021 commit builds with
setuptools and tests with pytest 6, a 2026 one with hatchling and pytest 9), so cra locks
each *era* of declarations separately. Everything here reads files at a commit with
``git show`` (no checkout, no network, no code from the repo is ever executed: a
``setup.py`` is parsed with ``ast``, never run), so it is cheap and safe to call on
thousands of commits.

What counts as a declaration, and why:

* ``pyproject.toml``: ``[project].dependencies``, the test extras (``test``, ``tests``,
  ``testing``, ``dev``), PEP 735 ``[dependency-groups]`` of the same names (with
  ``{include-group = ...}``), setuptools ``dynamic`` files, and Poetry's tables (rich).
* ``*requirements*.txt`` at the root and ``requirements/*.txt``, following ``-r``; files
  named for docs are skipped (Sphinx pins are never needed to run tests and often do not
  resolve on a newer Python).
* ``setup.cfg`` ``install_requires`` / ``extras_require`` / ``tests_require``.
* ``setup.py``: literal lists and dicts passed to ``setup()``, resolving module-level
  names (``EXTRAS["tests"] = EXTRAS["x"] + [...]`` included); anything computed is
  skipped with a note.
* ``tox.ini``: the base ``[testenv]``'s ``deps`` (following ``-r`` and ``{[section]deps}``)
  and its ``extras``. Older projects often declare their test tools nowhere else (structlog
  in 2013: ``pretend`` only there). Lines conditional on a tox factor (``py27: mock``) are
  skipped with a note: which factor the box's interpreter matches is a guess.
* The build back-end (``[build-system].requires``, default ``setuptools>=40.8.0`` +
  ``wheel``) plus what an *editable* install asks for at build time, because an offline
  editable install fails on exactly these: ``editables`` for hatchling, ``hatch-vcs`` /
  ``setuptools-scm`` when the version comes from git, hatch build-hook dependencies,
  ``setup_requires``.
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import json
import posixpath
import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from appliance.records import CommitRecord, EraRecord
from harness.git import git, show_file

TEST_GROUPS = ("test", "tests", "testing", "dev")
DEFAULT_SETUPTOOLS = ("setuptools>=40.8.0", "wheel")
HATCHLING_EDITABLES = "editables~=0.3"  # what hatchling's get_requires_for_build_editable asks

# Paths whose change can change a declaration; `assign_eras` adds any other file a
# declaration turned out to read (``-r ci/test.txt``, setuptools dynamic files).
BASE_PATHSPECS = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "tox.ini",
    ":(glob)*requirements*.txt",
    ":(glob)requirements/*.txt",
)
_ROOT_REQ_FILE = re.compile(r"^[^/]*requirements[^/]*\.txt$", re.IGNORECASE)
_REQ_DIR_FILE = re.compile(r"^requirements/[^/]+\.txt$", re.IGNORECASE)
_DOCS = re.compile(r"doc", re.IGNORECASE)


@dataclass
class Declaration:
    """The normalised requirements one commit declares.

    ``key`` depends only on the two requirement sets, so commits that declare the same
    things in different files still share an era (and a lock, and an environment).
    """

    requirements: list[str]
    build_requires: list[str]
    sources: list[str] = field(default_factory=list)  # files read, repo-relative
    project_name: str | None = None
    build_backend: str | None = None
    requires_python: str | None = None  # informational: not part of the key
    notes: list[str] = field(default_factory=list)  # what was skipped, and why

    @property
    def key(self) -> str:
        payload = json.dumps(
            {
                "requirements": sorted(self.requirements),
                "build_requires": sorted(self.build_requires),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


# ---------------------------------------------------------------------------------------
# Requirement strings


def normalise(req: Requirement) -> str:
    """One spelling per requirement: canonical name, sorted extras and specifiers."""
    text: str = canonicalize_name(req.name)
    if req.extras:
        text += "[" + ",".join(sorted(canonicalize_name(e) for e in req.extras)) + "]"
    if req.url:
        text += f" @ {req.url}"
    else:
        text += ",".join(sorted(str(s) for s in req.specifier))
    if req.marker:
        text += (" ; " if req.url else "; ") + str(req.marker)
    return text


class _Collector:
    """Parses requirement strings, remembering what it had to skip."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def parse(self, items: Iterable[Any], where: str) -> list[Requirement]:
        out: list[Requirement] = []
        for item in items:
            if not isinstance(item, str):
                self.notes.append(f"{where}: ignored non-string entry {item!r}")
                continue
            text = item.strip()
            if not text:
                continue
            try:
                out.append(Requirement(text))
            except InvalidRequirement:
                self.notes.append(f"{where}: ignored unparsable requirement {text!r}")
        return out


# ---------------------------------------------------------------------------------------
# Reading files at a commit


class _Tree:
    """Files of one commit, read lazily and remembered (each read is a git process)."""

    def __init__(self, repo: Path, sha: str):
        self.repo = repo
        self.sha = sha
        self.read: list[str] = []
        listing = git(repo, "ls-tree", "--name-only", sha).splitlines()
        listing += git(repo, "ls-tree", "--name-only", sha, "--", "requirements/").splitlines()
        self.names = set(listing)

    def text(self, path: str) -> str | None:
        text = show_file(self.repo, self.sha, path)
        if text is not None and path not in self.read:
            self.read.append(path)
        return text


@dataclass
class _Found:
    """What the collectors gather from one commit's declaration files, in their order."""

    reqs: list[Requirement] = field(default_factory=list)
    build: list[Requirement] = field(default_factory=list)
    extras: dict[str, list[Requirement]] = field(default_factory=dict)  # for self-references
    project_name: str | None = None  # the first file that names the project wins
    requires_python: str | None = None
    uses_scm_in_setup_py: bool = False

    def name(self, value: Any) -> None:
        if self.project_name is None and isinstance(value, str) and value.strip():
            self.project_name = value.strip()

    def python(self, value: Any) -> None:
        if self.requires_python is None and isinstance(value, str) and value.strip():
            self.requires_python = value.strip()

    def test_extras(self, extras: dict[str, list[Requirement]]) -> None:
        """Extras a later file declares: kept for self-references, test ones required."""
        for name, items in extras.items():
            self.extras.setdefault(name, items)
            if name in TEST_GROUPS:
                self.reqs += items


Collector = Callable[[_Tree, dict[str, Any], _Collector, _Found], None]
"""collect(tree, pyproject table, notes, found): one declaration file's contribution."""


def _from_pyproject(tree: _Tree, pyproject: dict[str, Any], col: _Collector, found: _Found) -> None:
    """``[project]``: dependencies, extras (setuptools ``dynamic`` files too), requires-python."""
    project = _dig(pyproject, "project")
    if not project:
        return
    found.name(project.get("name"))
    found.python(project.get("requires-python"))
    found.reqs += col.parse(_list(project.get("dependencies")), "pyproject.toml [project].dependencies")
    for name, items in _dig(project, "optional-dependencies").items():
        found.extras[canonicalize_name(name)] = col.parse(_list(items), f"pyproject.toml extra {name}")
    dynamic = project.get("dynamic") or []
    st_dynamic = _dig(pyproject, "tool", "setuptools", "dynamic")
    if "dependencies" in dynamic and isinstance(st_dynamic.get("dependencies"), dict):
        for path in _as_list(st_dynamic["dependencies"].get("file")):
            found.reqs += _requirements_file(tree, path, col, set())
    if "optional-dependencies" in dynamic and isinstance(st_dynamic.get("optional-dependencies"), dict):
        for name, spec in st_dynamic["optional-dependencies"].items():
            if isinstance(spec, dict):
                found.extras[canonicalize_name(name)] = [
                    r for p in _as_list(spec.get("file")) for r in _requirements_file(tree, p, col, set())
                ]
    for name in TEST_GROUPS:
        found.reqs += found.extras.get(name, [])


def _from_dependency_groups(
    tree: _Tree, pyproject: dict[str, Any], col: _Collector, found: _Found
) -> None:
    """PEP 735 ``[dependency-groups]`` named like test extras, includes resolved."""
    groups = pyproject.get("dependency-groups")
    if isinstance(groups, dict):
        table: dict[str, Any] = {canonicalize_name(k): v for k, v in groups.items()}
        for name in TEST_GROUPS:
            if name in table:
                found.reqs += _group(table, name, col, ())


def _from_poetry(tree: _Tree, pyproject: dict[str, Any], col: _Collector, found: _Found) -> None:
    poetry = _dig(pyproject, "tool", "poetry")
    if poetry:
        found.name(poetry.get("name"))
        found.reqs += _poetry(poetry, col)


def _from_setup_cfg(tree: _Tree, pyproject: dict[str, Any], col: _Collector, found: _Found) -> None:
    if "setup.cfg" not in tree.names:
        return
    cfg = _setup_cfg(tree.text("setup.cfg") or "", col)
    found.name(cfg.name)
    found.python(cfg.python_requires)
    found.reqs += cfg.install_requires + cfg.tests_require
    found.build += cfg.setup_requires
    found.test_extras(cfg.extras)


def _from_setup_py(tree: _Tree, pyproject: dict[str, Any], col: _Collector, found: _Found) -> None:
    if "setup.py" not in tree.names:
        return
    info = _setup_py(tree.text("setup.py") or "", col)
    found.name(info.name)
    found.python(info.python_requires)
    found.reqs += info.install_requires + info.tests_require
    found.build += info.setup_requires
    found.uses_scm_in_setup_py = info.use_scm_version
    found.test_extras(info.extras)


def _from_tox_ini(tree: _Tree, pyproject: dict[str, Any], col: _Collector, found: _Found) -> None:
    if "tox.ini" not in tree.names:
        return
    tox_reqs, tox_extras = _tox_ini(tree, tree.text("tox.ini") or "", col)
    found.reqs += tox_reqs
    for name in tox_extras:
        found.reqs += found.extras.get(name, [])


def _from_requirements_files(
    tree: _Tree, pyproject: dict[str, Any], col: _Collector, found: _Found
) -> None:
    for path in sorted(tree.names):
        if (_ROOT_REQ_FILE.match(path) or _REQ_DIR_FILE.match(path)) and not _DOCS.search(path):
            found.reqs += _requirements_file(tree, path, col, set())


# The order decides which file names the project when several do, and tox's extras see
# every extra declared before them.
COLLECTORS: tuple[Collector, ...] = (
    _from_pyproject, _from_dependency_groups, _from_poetry, _from_setup_cfg, _from_setup_py,
    _from_tox_ini, _from_requirements_files,
)


def _read_pyproject(tree: _Tree, col: _Collector) -> dict[str, Any]:
    if "pyproject.toml" not in tree.names:
        return {}
    try:
        return tomllib.loads(tree.text("pyproject.toml") or "")
    except tomllib.TOMLDecodeError as exc:
        col.notes.append(f"pyproject.toml: not valid TOML ({exc}); ignored")
        return {}


def _build_system(
    tree: _Tree, pyproject: dict[str, Any], col: _Collector, found: _Found
) -> tuple[list[Requirement], str | None]:
    """The build back-end's requirements (and name), plus what an editable install asks for."""
    build = list(found.build)
    build_system = _dig(pyproject, "build-system")
    backend = build_system.get("build-backend")
    backend = backend if isinstance(backend, str) else None
    has_build_info = (
        bool(_dig(pyproject, "project") or build_system or _dig(pyproject, "tool", "poetry"))
        or "setup.py" in tree.names
        or "setup.cfg" in tree.names
    )
    if "requires" in build_system:
        build += col.parse(_list(build_system.get("requires")), "pyproject.toml [build-system].requires")
    elif has_build_info:
        build += [Requirement(r) for r in DEFAULT_SETUPTOOLS]
    if has_build_info and backend is None:
        backend = "setuptools.build_meta:__legacy__"
    build += _editable_needs(backend, build, _dig(pyproject, "tool"), found.uses_scm_in_setup_py)
    return build, backend


def declared_requirements(repo_dir: Path, sha: str) -> Declaration:
    """Everything commit ``sha`` declares, normalised; see the module docstring.

    One collector per declaration file (``COLLECTORS``), then the build back-end. The
    project's own name is never a requirement: ``attrs[tests]`` in attrs means "these
    extras of me" and is expanded; a test tool that depends on the project is the lock's
    business (``appliance.packaging.wheelhouse`` leaves the project out of it).
    """
    tree = _Tree(Path(repo_dir), sha)
    col = _Collector()
    found = _Found()
    pyproject = _read_pyproject(tree, col)
    for collect in COLLECTORS:
        collect(tree, pyproject, col, found)
    own = canonicalize_name(found.project_name) if found.project_name else None
    reqs = _expand_self(found.reqs, found.extras, own, set())
    build, backend = _build_system(tree, pyproject, col, found)
    build = [r for r in build if canonicalize_name(r.name) != own]
    if "pytest" not in {canonicalize_name(r.name) for r in reqs}:
        reqs.append(Requirement("pytest"))  # cra runs tests with pytest, always
    return Declaration(
        requirements=sorted({normalise(r) for r in reqs}),
        build_requires=sorted({normalise(r) for r in build}),
        sources=sorted(tree.read),
        project_name=found.project_name,
        build_backend=backend,
        requires_python=found.requires_python,
        notes=col.notes,
    )


def _list(value: Any) -> list[Any]:
    """A TOML array, or nothing: a malformed table must not crash the whole walk."""
    return value if isinstance(value, list) else []


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _group(
    table: dict[str, Any], name: str, col: _Collector, stack: tuple[str, ...]
) -> list[Requirement]:
    """A PEP 735 group with its ``{include-group = ...}`` entries resolved."""
    if name in stack:
        col.notes.append(
            f"pyproject.toml: dependency group cycle {' -> '.join([*stack, name])}; cut"
        )
        return []
    items = table.get(name)
    if not isinstance(items, list):
        col.notes.append(f"pyproject.toml: dependency group {name!r} missing or not a list")
        return []
    out: list[Requirement] = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("include-group"), str):
            out += _group(table, canonicalize_name(item["include-group"]), col, (*stack, name))
        else:
            out += col.parse([item], f"pyproject.toml dependency group {name}")
    return out


def _expand_self(
    reqs: list[Requirement], extras: dict[str, list[Requirement]], own: str | None, seen: set[str]
) -> list[Requirement]:
    out: list[Requirement] = []
    for r in reqs:
        if own is None or canonicalize_name(r.name) != own:
            out.append(r)
            continue
        for extra in sorted(canonicalize_name(e) for e in r.extras):
            if extra not in seen:
                seen.add(extra)
                out += _expand_self(extras.get(extra, []), extras, own, seen)
    return out


def _editable_needs(
    backend: str | None, build: list[Requirement], tool: dict[str, Any], scm_in_setup_py: bool
) -> list[Requirement]:
    """Build-time packages an editable install asks the back-end for, beyond ``requires``."""
    names = {canonicalize_name(r.name) for r in build}
    backend = backend or ""
    extra: list[str] = []
    hatch = _dig(tool, "hatch")
    if backend.startswith("hatchling") or "hatchling" in names:
        extra.append(HATCHLING_EDITABLES)
        version = _dig(hatch, "version")
        hooks = _dig(hatch, "build", "hooks")
        if version.get("source") == "vcs" or "vcs" in hooks:
            extra.append("hatch-vcs")
        for hook_table in (hooks, _dig(hatch, "build", "targets", "wheel", "hooks")):
            for hook in hook_table.values():
                if isinstance(hook, dict):
                    extra += _as_list(hook.get("dependencies"))
    if backend.startswith("pdm.pep517"):
        extra.append("editables")
    if (
        backend.startswith("pdm.backend")
        and _dig(tool, "pdm", "build").get("editable-backend") == "editables"
    ):
        extra.append("editables")
    if backend.startswith("setuptools"):
        extra.append("wheel")  # setuptools < 70.1 asks for it in get_requires_for_build_*
        if "setuptools_scm" in tool or "setuptools-scm" in tool or scm_in_setup_py:
            extra.append("setuptools-scm")
    out = []
    for text in extra:
        req = Requirement(text)
        if canonicalize_name(req.name) not in names:
            names.add(canonicalize_name(req.name))
            out.append(req)
    return out


def _dig(table: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``table[k1][k2]...`` when every step is a table, else ``{}``: TOML from strangers."""
    for k in keys:
        nxt = table.get(k)
        if not isinstance(nxt, dict):
            return {}
        table = nxt
    return table


# ---------------------------------------------------------------------------------------
# requirements files


def _requirements_file(
    tree: _Tree, path: str, col: _Collector, seen: set[str]
) -> list[Requirement]:
    """pip's requirements format: ``-r`` followed, options, editables and paths ignored."""
    path = posixpath.normpath(path)
    if path in seen or path.startswith("../"):
        return []
    seen.add(path)
    text = tree.text(path)
    if text is None:
        col.notes.append(f"{path}: referenced but not in the commit; ignored")
        return []
    out: list[Requirement] = []
    for line in _logical_lines(text):
        if line.startswith(("-r", "--requirement")):
            ref = re.sub(r"^(-r|--requirement)\s*=?\s*", "", line).strip()
            out += _requirements_file(tree, posixpath.join(posixpath.dirname(path), ref), col, seen)
            continue
        if line.startswith("-"):
            continue  # -e ., -c constraints, --index-url, --hash on its own line ...
        line = re.split(r"\s+--?[a-z]", line, maxsplit=1)[0].strip()  # foo==1 --hash=...
        if line.startswith((".", "/")) or re.match(r"^[a-z+]+://", line) or "#egg=" in line:
            col.notes.append(f"{path}: ignored path or URL requirement {line!r}")
            continue
        out += col.parse([line], path)
    return out


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    buf = ""
    for raw in text.splitlines():
        raw = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if raw.endswith("\\"):
            buf += raw[:-1] + " "
            continue
        buf += raw
        if buf.strip():
            lines.append(buf.strip())
        buf = ""
    if buf.strip():
        lines.append(buf.strip())
    return lines


# ---------------------------------------------------------------------------------------
# setup.cfg


def _setup_cfg(text: str, col: _Collector) -> _SetupArgs:
    """setup.cfg's ``[metadata]`` name and ``[options]`` requirements."""
    info = _SetupArgs()
    cfg = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cfg.read_string(text)
    except configparser.Error as exc:
        col.notes.append(f"setup.cfg: unreadable ({exc.__class__.__name__}); ignored")
        return info

    def items(section: str, key: str) -> list[str]:
        value = cfg.get(section, key, fallback="")
        return [
            ln.strip() for ln in value.splitlines() if ln.strip() and not ln.strip().startswith("#")
        ]

    info.name = cfg.get("metadata", "name", fallback=None)
    info.python_requires = cfg.get("options", "python_requires", fallback=None)
    info.install_requires = col.parse(items("options", "install_requires"), "setup.cfg install_requires")
    info.tests_require = col.parse(items("options", "tests_require"), "setup.cfg tests_require")
    info.setup_requires = col.parse(items("options", "setup_requires"), "setup.cfg setup_requires")
    if cfg.has_section("options.extras_require"):
        for key in cfg.options("options.extras_require"):
            info.extras[canonicalize_name(key)] = col.parse(
                items("options.extras_require", key), f"setup.cfg extra {key}"
            )
    return info


# ---------------------------------------------------------------------------------------
# tox.ini

_TOX_SUBST = re.compile(r"\{\[([^\]]+)\]([\w-]+)\}")


def _tox_ini(tree: _Tree, text: str, col: _Collector) -> tuple[list[Requirement], list[str]]:
    """The base test environment's deps and extras (canonical names)."""
    cfg = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cfg.read_string(text)
    except configparser.Error as exc:
        col.notes.append(f"tox.ini: unreadable ({exc.__class__.__name__}); ignored")
        return [], []

    def lines(section: str, key: str, seen: frozenset[tuple[str, str]]) -> list[str]:
        if (section, key) in seen or not cfg.has_section(section):
            return []
        out: list[str] = []
        for raw in cfg.get(section, key, fallback="").splitlines():
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            ref = _TOX_SUBST.fullmatch(line)
            if ref:
                out += lines(ref[1], ref[2], seen | {(section, key)})
            else:
                out.append(line)
        return out

    reqs: list[Requirement] = []
    for line in lines("testenv", "deps", frozenset()):
        line = line.replace("{toxinidir}/", "").replace("{toxinidir}", ".")
        if line.startswith(("-r", "--requirement")):
            ref = re.sub(r"^(-r|--requirement)\s*=?\s*", "", line).strip()
            reqs += _requirements_file(tree, ref, col, set())
        elif "{" in line or ("://" not in line and ":" in line):
            col.notes.append(f"tox.ini: conditional or substituted dep {line!r} skipped")
        elif line.startswith(("-", ".", "/")):
            continue  # -e ., -c constraints, the project itself
        else:
            reqs += col.parse([line], "tox.ini [testenv] deps")
    extras = [
        canonicalize_name(name)
        for line in lines("testenv", "extras", frozenset())
        for name in re.split(r"[,\s]+", line)
        if name and ":" not in line
    ]
    return reqs, extras


# ---------------------------------------------------------------------------------------
# setup.py, read with ast and never executed


@dataclass
class _SetupArgs:
    """What setup() is given, from setup.py's literals or setup.cfg's options."""

    name: str | None = None
    python_requires: str | None = None
    install_requires: list[Requirement] = field(default_factory=list)
    tests_require: list[Requirement] = field(default_factory=list)
    setup_requires: list[Requirement] = field(default_factory=list)
    extras: dict[str, list[Requirement]] = field(default_factory=dict)
    use_scm_version: bool = False


class _Unknown(Exception):
    """A value that is not a literal cra can follow (a call, a file read, a comprehension)."""


def _setup_py(text: str, col: _Collector) -> _SetupArgs:
    info = _SetupArgs()
    try:
        module = ast.parse(text)
    except SyntaxError as exc:
        col.notes.append(f"setup.py: does not parse ({exc.msg}, line {exc.lineno}); ignored")
        return info
    names: dict[str, Any] = {}
    for stmt in module.body:  # module level only: enough for the usual REQUIRES = [...] style
        try:
            if isinstance(stmt, ast.Assign):
                value = _literal(stmt.value, names)
                for target in stmt.targets:
                    _assign(target, value, names)
            elif (
                isinstance(stmt, ast.AugAssign)
                and isinstance(stmt.op, ast.Add)
                and isinstance(stmt.target, ast.Name)
                and stmt.target.id in names
            ):
                names[stmt.target.id] = names[stmt.target.id] + _literal(stmt.value, names)
        except (_Unknown, TypeError, KeyError):
            for target in getattr(stmt, "targets", [getattr(stmt, "target", None)]):
                if isinstance(target, ast.Name):
                    names.pop(target.id, None)
    call = _find_setup_call(module)
    if call is None:
        col.notes.append("setup.py: no setup() call found; ignored")
        return info
    for kw in call.keywords:
        if kw.arg is None:
            col.notes.append("setup.py: setup(**kwargs) not followed")
            continue
        if kw.arg == "use_scm_version":
            info.use_scm_version = not (isinstance(kw.value, ast.Constant) and not kw.value.value)
            continue
        if kw.arg not in {
            "name",
            "python_requires",
            "install_requires",
            "tests_require",
            "setup_requires",
            "extras_require",
        }:
            continue
        try:
            value = _literal(kw.value, names)
        except (_Unknown, TypeError, KeyError):
            col.notes.append(f"setup.py: {kw.arg} is computed, not a literal; ignored")
            continue
        if kw.arg in ("name", "python_requires"):
            setattr(info, kw.arg, value if isinstance(value, str) else None)
        elif kw.arg == "extras_require":
            if isinstance(value, dict):
                for key, items in value.items():
                    key = str(key).split(":")[0]  # "tests:python_version<'3'" style keys
                    got = col.parse(_str_list(value=items), f"setup.py extra {key}")
                    info.extras.setdefault(canonicalize_name(key), []).extend(got)
        else:
            setattr(info, kw.arg, col.parse(_str_list(value), f"setup.py {kw.arg}"))
    return info


def _str_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return value.splitlines()  # setuptools accepts a newline-separated string
    return list(value) if isinstance(value, (list, tuple, set)) else []


def _assign(target: ast.expr, value: Any, names: dict[str, Any]) -> None:
    if isinstance(target, ast.Name):
        names[target.id] = value
    elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
        container = names[target.value.id]
        container[_literal(target.slice, names)] = value
    else:
        raise _Unknown


def _literal(node: ast.expr, names: dict[str, Any]) -> Any:
    """A tiny evaluator: constants, containers, names, ``+``, ``x[k]``; nothing that runs."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_literal(e, names) for e in node.elts]
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                out.update(_literal(v, names))  # {**OTHER, ...}
            else:
                out[_literal(k, names)] = _literal(v, names)
        return out
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise _Unknown(node.id)
        value = names[node.id]
        return json.loads(json.dumps(value))  # a copy: later subscript writes must not alias
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal(node.left, names) + _literal(node.right, names)
    if isinstance(node, ast.Subscript):
        return _literal(node.value, names)[_literal(node.slice, names)]
    if isinstance(node, ast.Starred):
        raise _Unknown
    raise _Unknown(type(node).__name__)


def _find_setup_call(module: ast.Module) -> ast.Call | None:
    for node in ast.walk(module):
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name == "setup":
                return node
    return None


# ---------------------------------------------------------------------------------------
# Poetry (rich and others): caret and tilde constraints translated to PEP 440


def _poetry(poetry: dict[str, Any], col: _Collector) -> list[Requirement]:
    tables: list[tuple[str, Any]] = [("tool.poetry.dependencies", poetry.get("dependencies"))]
    tables.append(("tool.poetry.dev-dependencies", poetry.get("dev-dependencies")))
    groups = _dig(poetry, "group")
    for name, group in groups.items():
        if canonicalize_name(name) in TEST_GROUPS and isinstance(group, dict):
            tables.append((f"tool.poetry.group.{name}.dependencies", group.get("dependencies")))
    out: list[Requirement] = []
    for where, table in tables:
        if not isinstance(table, dict):
            continue
        for name, spec in table.items():
            if canonicalize_name(name) == "python":
                continue
            if (
                isinstance(spec, dict)
                and spec.get("optional")
                and where == "tool.poetry.dependencies"
            ):
                continue  # optional main deps belong to extras, not to the test environment
            text = _poetry_requirement(name, spec)
            if text is None:
                col.notes.append(
                    f"pyproject.toml {where}: {name} is a git/path/url dependency; ignored"
                )
                continue
            out += col.parse([text], f"pyproject.toml {where}")
    return out


def _poetry_requirement(name: str, spec: Any) -> str | None:
    extras: list[str] = []
    marker = ""
    if isinstance(spec, list):
        return name  # several constraints by platform: keep the name, let the resolver pick
    if isinstance(spec, dict):
        if any(k in spec for k in ("git", "path", "url")):
            return None
        extras = [e for e in spec.get("extras", []) if isinstance(e, str)]
        marker = spec.get("markers", "") if isinstance(spec.get("markers"), str) else ""
        spec = spec.get("version", "*")
    if not isinstance(spec, str):
        return name
    text = name + (f"[{','.join(extras)}]" if extras else "") + _poetry_constraint(spec)
    return text + (f"; {marker}" if marker else "")


def _poetry_constraint(spec: str) -> str:
    parts = []
    if "||" in spec:
        return ""  # an "or" of ranges has no PEP 440 spelling; loosen rather than guess
    for part in re.split(r"\s*,\s*|\s+(?=[<>=!~^])", spec.strip()):
        part = part.replace(" ", "")
        if part in ("", "*"):
            continue
        if part[0] == "^":
            parts.append(_caret(part[1:]))
        elif part[0] == "~" and not part.startswith("~="):
            parts.append(_tilde(part[1:]))
        elif part[0].isdigit():
            parts.append(f"=={part}")
        else:
            parts.append(part)
    return ",".join(parts)


def _caret(version: str) -> str:
    nums = [int(x) for x in re.findall(r"\d+", version)[:3]] or [0]
    for i, n in enumerate(nums):
        if n != 0 or i == len(nums) - 1:
            upper = nums[: i + 1]
            upper[-1] += 1
            break
    return f">={version},<{'.'.join(map(str, upper))}"


def _tilde(version: str) -> str:
    nums = [int(x) for x in re.findall(r"\d+", version)[:3]] or [0]
    upper = [nums[0] + 1] if len(nums) == 1 else [nums[0], nums[1] + 1]
    return f">={version},<{'.'.join(map(str, upper))}"


# ---------------------------------------------------------------------------------------
# Eras


def assign_eras(
    repo_dir: Path, commits: list[CommitRecord], tips: Sequence[str] | None = None
) -> list[EraRecord]:
    """Group ``commits`` (oldest first) into dependency eras and set each ``era_key``.

    ``tips`` are the heads whose first-parent chains hold the commits (the default branch,
    then maintenance branches); default: the last commit. Declarations are re-read only
    where a declaring file changed. Which commits changed one comes from a single
    path-limited ``git log --first-parent`` over each chain, not from the commits' own
    file lists: a rejected commit between two kept ones may have changed the
    requirements, and it is not in ``commits``. If a declaration reads a file outside the
    usual paths (``-r ci/tests.txt``), the walk is redone with that path added, until the
    set of paths is stable. A commit on no chain is read directly.
    """
    if not commits:
        return []
    repo_dir = Path(repo_dir)
    cache: dict[str, Declaration] = {}  # sha -> declaration read there
    decl_at: dict[str, Declaration] = {}
    for tip in tips or [commits[-1].sha]:
        todo = {c.sha for c in commits} - decl_at.keys()
        if todo:
            decl_at.update(_walk_chain(repo_dir, tip, todo, cache))
    for c in commits:
        if c.sha not in decl_at:  # on no chain walked: read it directly
            decl_at[c.sha] = cache.get(c.sha) or declared_requirements(repo_dir, c.sha)

    eras: dict[str, EraRecord] = {}
    for c in commits:
        decl = decl_at[c.sha]
        c.era_key = decl.key
        era = eras.get(decl.key)
        if era is None:
            era = eras[decl.key] = EraRecord(
                key=decl.key,
                requirements=list(decl.requirements),
                build_requires=list(decl.build_requires),
                first_commit=c.sha,
                project=canonicalize_name(decl.project_name) if decl.project_name else None,
                requires_python=decl.requires_python,
            )
        era.commits.append(c.sha)
    return list(eras.values())


def _walk_chain(
    repo_dir: Path, tip: str, wanted: set[str], cache: dict[str, Declaration]
) -> dict[str, Declaration]:
    """The declarations of the ``wanted`` commits on ``tip``'s first-parent chain."""
    chain = git(repo_dir, "rev-list", "--first-parent", "--reverse", tip).split()
    if not wanted & set(chain):
        return {}
    pathspecs = list(BASE_PATHSPECS)
    while True:
        changed = set(
            git(repo_dir, "log", "--first-parent", "--format=%H", tip, "--", *pathspecs).split()
        )
        decl_at: dict[str, Declaration] = {}
        current: Declaration | None = None
        for sha in chain:
            if sha in changed:
                current = None
            if sha in wanted:
                if current is None:
                    current = cache.get(sha) or declared_requirements(repo_dir, sha)
                    cache[sha] = current
                decl_at[sha] = current
        extra = sorted(
            {s for d in decl_at.values() for s in d.sources if not _covered(s)} - set(pathspecs)
        )
        if not extra:
            return decl_at
        pathspecs += extra


def _covered(path: str) -> bool:
    """True when ``BASE_PATHSPECS`` already watch ``path``."""
    return path in ("pyproject.toml", "setup.py", "setup.cfg", "tox.ini") or bool(
        re.match(r"^[^/]*requirements[^/]*\.txt$", path)
        or re.match(r"^requirements/[^/]+\.txt$", path)
    )
