"""The project's own pytest settings, read the way pytest reads them, at any commit.

Two of cra's decisions depend on them, and both change over a project's history, so they
are read at the commit in question, never once per repo:

* **What is a test module.** ``python_files`` (which file names pytest collects, default
  ``test_*.py`` and ``*_test.py``) within ``testpaths`` (where the project keeps its
  tests); ``python_classes`` and ``python_functions`` say what pytest collects inside
  one. Mining's test-existence filter and validation's choice of the files to run both
  ask ``PytestSettings.is_test_module``, so a project that names its modules
  ``*_tests.py`` (pytest-django's documented layout) has its commits kept and run.
* **What the oracle run may not inherit.** A project's ``addopts`` is meant for its
  developers, and some of it cuts or reshapes the run cra grades: ``-x``/``--maxfail``/
  ``--sw`` stop the session at the first failure, so the tests after it look "failed
  before" at the parent; ``-k``/``-m``/``--lf``/``--ff``/``--deselect`` and paths choose
  other tests than the commit's; ``-q``/``-v``/``--tb``/``-r``/``-n`` (xdist)/``--junitxml``/
  ``-p no:junitxml`` change the report the cross-checks read; ``--cov-fail-under`` turns a
  green run's exit status red. ``oracle_args`` keeps the rest, which is what the project
  needs to import and collect its tests (plugins, ``--import-mode``, ``--strict-markers``,
  warning filters, ``--doctest-modules``), and hands pytest the cleaned value with ``-o
  addopts=...`` (checked here on pytest 6.2 to 9: ``-o`` overrides the ini value before
  pytest reads it; pytest before 6.2 does not run on Python 3.11 at all).

Where pytest looks, and so where cra looks (pytest's ``locate_config``): from the common
folder of the paths given up to the root, in each folder the first of ``pytest.ini``,
``.pytest.ini`` (always), ``pyproject.toml`` (with ``[tool.pytest.ini_options]``, or pytest
9's ``[tool.pytest]``), ``tox.ini`` (with ``[pytest]``), ``setup.cfg`` (with
``[tool:pytest]``). INI files are read with ``configparser`` (no interpolation, inline
``#``/``;`` comments stripped, as pytest's own ``iniconfig`` does), which spares cra a
dependency for the few keys it reads.
"""

from __future__ import annotations

import configparser
import fnmatch
import posixpath
import re
import shlex
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from harness.git import cat_files

CONFIG_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
DEFAULT_PYTHON_FILES = ("test_*.py", "*_test.py")
DEFAULT_PYTHON_CLASSES = ("Test",)
DEFAULT_PYTHON_FUNCTIONS = ("test",)
MAX_CONFIG_BYTES = 1 << 20  # a config file bigger than this is not read (it is no config)

Read = Callable[[str], "str | None"]
"""read(repo-relative path) -> the file's text, or None when it is not there."""


@dataclass(frozen=True)
class PytestSettings:
    """The settings cra uses from one pytest configuration (defaults: pytest's own)."""

    source: str | None = None  # "pyproject.toml [tool.pytest.ini_options]"; None: no config
    addopts: tuple[str, ...] = ()
    python_files: tuple[str, ...] = DEFAULT_PYTHON_FILES
    python_classes: tuple[str, ...] = DEFAULT_PYTHON_CLASSES
    python_functions: tuple[str, ...] = DEFAULT_PYTHON_FUNCTIONS
    testpaths: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what could not be read, and why

    def is_test_module(self, path: str) -> bool:
        """Whether pytest, run on this project, collects ``path`` (repo-relative) as tests.

        Its name matches ``python_files`` (pytest's ``fnmatch_ex``: a pattern without a
        ``/`` matches the file name, one with a ``/`` the whole path) and, when the
        project sets ``testpaths``, it lies under one of them.
        """
        p = PurePosixPath(path)
        if p.suffix != ".py" or p.name in ("__init__.py", "conftest.py"):
            return False
        if not any(_fnmatch_ex(pattern, path) for pattern in self.python_files):
            return False
        return not self.testpaths or any(_under(path, tp) for tp in self.testpaths)

    def is_test_class(self, name: str) -> bool:
        return any(_prefix_or_glob(name, option) for option in self.python_classes)

    def is_test_function(self, name: str) -> bool:
        return any(_prefix_or_glob(name, option) for option in self.python_functions)


DEFAULT = PytestSettings()


def _fnmatch_ex(pattern: str, path: str) -> bool:
    name = path if "/" in pattern else posixpath.basename(path)
    return fnmatch.fnmatchcase(name, pattern)


def _under(path: str, testpath: str) -> bool:
    tp = posixpath.normpath(testpath.strip()).removeprefix("./")
    if tp in (".", ""):
        return True
    if any(ch in tp for ch in "*?["):  # pytest >= 7 expands globs in testpaths
        parts = PurePosixPath(path).parts
        depth = len(PurePosixPath(tp).parts)
        return len(parts) > depth and fnmatch.fnmatchcase("/".join(parts[:depth]), tp)
    return path.startswith(tp.rstrip("/") + "/")


def _prefix_or_glob(name: str, option: str) -> bool:
    """pytest's rule for python_classes / python_functions: a prefix, or a glob."""
    if name.startswith(option):
        return True
    return any(ch in option for ch in "*?[") and fnmatch.fnmatchcase(name, option)


# ----------------------------------------------------------------------------- reading


def _args(value: Any) -> tuple[str, ...]:
    """An "args"/"linelist" ini value: a TOML list as it is, a string split like a shell."""
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError:
            return tuple(value.split())
    return ()


def _from_table(table: Mapping[str, Any], source: str, notes: list[str]) -> PytestSettings:
    def get(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        if key not in table:
            return default
        return _args(table[key])

    return PytestSettings(
        source=source,
        addopts=get("addopts", ()),
        python_files=get("python_files", DEFAULT_PYTHON_FILES),
        python_classes=get("python_classes", DEFAULT_PYTHON_CLASSES),
        python_functions=get("python_functions", DEFAULT_PYTHON_FUNCTIONS),
        testpaths=get("testpaths", ()),
        notes=tuple(notes),
    )


# Text a file must hold for pytest to take it as its config (pytest.ini needs none).
_MARKERS = {"pyproject.toml": "pytest", "tox.ini": "[pytest]", "setup.cfg": "[tool:pytest]"}


def parse_config(name: str, text: str, where: str = "") -> PytestSettings | None:
    """Settings from one candidate file, or None when pytest would not take it as its config.

    ``name`` is the file's name (which decides the format and the section looked for),
    ``where`` its folder for messages. A file pytest would take but that does not parse
    gives the defaults with a note: pytest itself would refuse to start there.
    """
    label = posixpath.join(where, name) if where else name
    marker = _MARKERS.get(name)
    if marker is not None and marker not in text:
        return None  # no pytest section at all: spare the parse (mining reads many versions)
    if name == "pyproject.toml":
        try:
            data = _pytest_tables(text)
        except tomllib.TOMLDecodeError as exc:
            return None if "pytest" not in text else PytestSettings(
                source=label, notes=(f"{label}: not valid TOML ({exc}); pytest's defaults used",)
            )
        pytest_table = data.get("tool", {}).get("pytest") if isinstance(data.get("tool"), dict) else None
        if not isinstance(pytest_table, dict):
            return None
        ini_options = pytest_table.get("ini_options")
        if isinstance(ini_options, dict):
            return _from_table(ini_options, f"{label} [tool.pytest.ini_options]", [])
        native = {k: v for k, v in pytest_table.items() if k != "ini_options"}
        return _from_table(native, f"{label} [tool.pytest]", []) if native else None
    section = {"pytest.ini": "pytest", ".pytest.ini": "pytest", "tox.ini": "pytest",
               "setup.cfg": "tool:pytest"}.get(name)
    if section is None:
        return None
    ini = configparser.ConfigParser(interpolation=None, strict=False,
                                    inline_comment_prefixes=("#", ";"), default_section="\0")
    try:
        ini.read_string(text, source=label)
    except configparser.Error as exc:
        if name in ("pytest.ini", ".pytest.ini") or f"[{section}]" in text:
            why = str(exc).splitlines()[0]
            return PytestSettings(source=label, notes=(f"{label}: unreadable ({why}); pytest's defaults used",))
        return None
    if not ini.has_section(section):
        # pytest.ini is pytest's config even without a [pytest] section (an empty one)
        return PytestSettings(source=label) if name in ("pytest.ini", ".pytest.ini") else None
    return _from_table(dict(ini.items(section)), f"{label} [{section}]", [])


_TABLE = re.compile(r"^\[\s*tool\s*\.\s*pytest\s*(\.\s*ini_options\s*)?\]\s*(#.*)?$", re.MULTILINE)


def _pytest_tables(text: str) -> dict[str, Any]:
    """The ``[tool.pytest...]`` tables of a pyproject.toml, parsed alone when they can be
    cut out by their headers (a whole attrs pyproject takes 20 ms to parse, and mining
    reads every version of it); the whole file otherwise."""
    pieces = []
    for match in _TABLE.finditer(text):
        end = re.search(r"^\[", text[match.end():], re.MULTILINE)
        pieces.append(text[match.start(): match.end() + end.start() if end else len(text)])
    if pieces:
        try:
            return tomllib.loads("\n".join(pieces))
        except tomllib.TOMLDecodeError:
            pass  # cut in the wrong place (a value line starting with "["): parse it all
    return tomllib.loads(text)


def read_settings(read: Read, folders: Iterable[str] = ("",)) -> PytestSettings:
    """The settings pytest would use, looking in ``folders`` (deepest first) as pytest does."""
    for folder in folders:
        for name in CONFIG_FILES:
            text = read(posixpath.join(folder, name) if folder else name)
            if text is None:
                continue
            found = parse_config(name, text, folder)
            if found is not None:
                return found
    return DEFAULT


def settings_from_blobs(blobs: Mapping[str, bytes | None]) -> PytestSettings:
    """Settings from the root config files' contents, keyed by file name (None: absent)."""
    def read(name: str) -> str | None:
        data = blobs.get(name)
        if data is None or len(data) > MAX_CONFIG_BYTES:
            return None
        return data.decode("utf-8", "replace")

    return read_settings(read)


def settings_at(repo: Path | str, sha: str) -> PytestSettings:
    """The settings of commit ``sha`` (its root config files), read with one git process."""
    found = cat_files(Path(repo), [f"{sha}:{name}" for name in CONFIG_FILES])
    return settings_from_blobs({name: found[f"{sha}:{name}"][1] for name in CONFIG_FILES
                                if f"{sha}:{name}" in found})


def _folders(files: Sequence[str]) -> list[str]:
    """The folders pytest searches: from the common folder of ``files`` up to the root."""
    dirs = [posixpath.dirname(f) for f in files] or [""]
    common = posixpath.commonpath(dirs) if all(dirs) else ""
    out = []
    while True:
        out.append(common)
        if not common:
            return out
        common = posixpath.dirname(common)


def settings_in(worktree: Path, files: Sequence[str] = ()) -> PytestSettings:
    """The settings pytest will use in a checkout when run on ``files``."""
    def read(rel: str) -> str | None:
        path = worktree / rel
        try:
            if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_CONFIG_BYTES:
                return None
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    return read_settings(read, _folders(files))


# ----------------------------------------------------------------------------- the oracle run

# Options the oracle run may not inherit, and whether each takes a value. The comment
# says what each would do to the run cra grades.
_DROP: dict[str, bool | None] = {
    # stop the session early: tests after the first failure are never run
    "-x": False, "--exitfirst": False, "--maxfail": True,
    "--sw": False, "--stepwise": False, "--sw-skip": False, "--stepwise-skip": False,
    "--sw-reset": False, "--stepwise-reset": False,
    # choose other tests than the commit's (and need the cache cra switches off)
    "-k": True, "-m": True, "--deselect": True,
    "--lf": False, "--last-failed": False, "--ff": False, "--failed-first": False,
    "--nf": False, "--new-first": False, "--lfnf": True, "--last-failed-no-failures": True,
    "--cache-clear": False, "--cache-show": False,
    "--co": False, "--collect-only": False, "--collectonly": False,
    "--setup-only": False, "--setup-plan": False, "--fixtures": False, "--funcargs": False,
    "--fixtures-per-test": False, "--markers": False, "--help": False, "-h": False,
    "--version": False, "-V": False, "--pdb": False, "--trace": False, "--pdbcls": True,
    "-f": False, "--looponfail": False,
    "--count": True, "--repeat-scope": True,  # pytest-repeat
    "--reruns": True, "--reruns-delay": True, "--only-rerun": True, "--rerun-except": True,
    "--random-order": False, "--random-order-bucket": True, "--random-order-seed": True,
    # reshape the report the cross-checks read (closing line, summary, junit, exit status)
    "-q": False, "--quiet": False, "-v": False, "--verbose": False, "--verbosity": True,
    "--tb": True, "--no-summary": False, "--color": True, "--code-highlight": True,
    "--setup-show": False,
    "--junitxml": True, "--junit-xml": True, "--junit-prefix": True, "--junitprefix": True,
    "--resultlog": True, "--result-log": True, "--report-log": True,
    "-n": True, "--numprocesses": True, "--maxprocesses": True, "--dist": True, "--tx": True,
    "--cov": None,  # an optional value: taken when the next token is not an option
    "--cov-report": True, "--cov-config": True, "--cov-fail-under": True, "--cov-context": True,
    "--cov-append": False, "--cov-branch": False, "--no-cov": False, "--no-cov-on-fail": False,
}
# Options the project may keep, with a value: their value must not be read as an option.
# (-r is kept: cra's own -rA comes later on the command line and wins.)
_KEEP_WITH_VALUE = frozenset({
    "-p", "-r", "-W", "--pythonwarnings", "-c", "--config-file", "-o", "--override-ini", "--rootdir",
    "--import-mode", "--confcutdir", "--basetemp", "--ignore", "--ignore-glob", "--durations",
    "--durations-min", "--capture", "--log-level", "--log-format", "--log-date-format",
    "--log-cli-level", "--log-file", "--log-file-level", "--doctest-glob", "--doctest-report",
    "--show-capture", "--timeout", "--timeout-method", "--ds", "--dc", "--assert", "-P",
    "--asyncio-mode", "--hypothesis-profile", "--hypothesis-seed",
})
_SHORT_FLAGS = frozenset("xqvslfh")  # short options without a value
_SHORT_VALUED = frozenset("kmrnpWcoP")
# Plugins whose output the oracle reads: "-p no:<these>" would blind it.
ORACLE_PLUGINS = frozenset({"junitxml", "terminal", "reports", "runner", "main", "python", "skipping"})


@dataclass
class Neutralised:
    """A project's ``addopts`` split into what the oracle run keeps and what it drops."""

    kept: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def _plugin_blinds_oracle(value: str) -> bool:
    name = value.removeprefix("no:") if value.startswith("no:") else None
    return name is not None and (name in ORACLE_PLUGINS or name.startswith("cra"))


def neutralise(addopts: Sequence[str]) -> Neutralised:
    """Drop from ``addopts`` what cuts or reshapes the oracle run (see the module docstring).

    Paths given in ``addopts`` are dropped too: cra runs the commit's own test files. An
    option cra does not know is kept as it is, with the token after it if that does not
    look like an option (its value, or a path pytest would reject anyway).
    """
    out = Neutralised()
    tokens = list(addopts)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if not tok.startswith("-") or tok == "-":
            out.dropped.append(tok)  # a path or node id: selects tests
            continue
        if tok.startswith("--"):
            name, eq, _ = tok.partition("=")
            if name in _DROP:
                takes = _DROP[name]
                has_next = i < len(tokens)
                optional = takes is None and has_next and not tokens[i].startswith("-")
                group = [tok]
                if not eq and has_next and (takes or optional):
                    group.append(tokens[i])
                    i += 1
                out.dropped.extend(group)
            else:
                out.kept.append(tok)
                if not eq and name in _KEEP_WITH_VALUE and i < len(tokens):
                    out.kept.append(tokens[i])
                    i += 1
            continue
        kept, dropped, i = _short_cluster(tok, tokens, i)
        out.kept.extend(kept)
        out.dropped.extend(dropped)
    return out


def _short_cluster(tok: str, tokens: list[str], i: int) -> tuple[list[str], list[str], int]:
    """``-xq``, ``-rA``, ``-k expr``, ``-pno:x``: split as argparse would; unknown: kept whole."""
    letters = tok[1:]
    kept: list[str] = []
    dropped: list[str] = []
    j = 0
    while j < len(letters):
        ch = letters[j]
        if ch in _SHORT_VALUED:
            value = letters[j + 1:]
            if not value and i < len(tokens):
                value, i = tokens[i], i + 1
            option = [f"-{ch}", value] if value else [f"-{ch}"]
            if ch == "p" and not _plugin_blinds_oracle(value):
                kept.extend(option)
            elif f"-{ch}" in _DROP or ch == "p":
                dropped.extend(option)
            else:
                kept.extend(option)
            return kept, dropped, i
        if ch not in _SHORT_FLAGS:
            return [tok], [], i  # a letter cra does not know: keep the token as the project wrote it
        (dropped if f"-{ch}" in _DROP else kept).append(f"-{ch}")
        j += 1
    return kept, dropped, i


@dataclass
class OracleOptions:
    """What cra adds to its pytest command line for one run, and why."""

    args: list[str]
    source: str | None
    dropped: list[str]


def oracle_options(worktree: Path, files: Sequence[str]) -> OracleOptions:
    """The ``-o addopts=...`` that keeps the project's options but those that cut or reshape
    the run; no arguments when nothing needs dropping (the project's config then acts as
    it is). Read from the checkout as it is at run time, so a patch that adds ``-x`` to a
    config is neutralised as well."""
    settings = settings_in(worktree, files)
    result = neutralise(settings.addopts)
    if not result.dropped:
        return OracleOptions([], settings.source, [])
    return OracleOptions(["-o", "addopts=" + shlex.join(result.kept)], settings.source, result.dropped)
