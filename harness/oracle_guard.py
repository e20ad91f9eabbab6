"""What a model's patch may not touch (the oracle), and what in it looks like an attack on it.

A model's patch is graded by running the task's tests; a patch that edits what does the
grading could grade itself. ``tamper_reasons`` names every change that reaches the oracle,
and such a patch is refused before it is written (``ApplyStatus.ORACLE_TAMPER``):

* the task's own test files (its ``test_patch`` paths and the modules it runs);
* any ``conftest.py`` (pytest imports its hooks);
* pytest's configuration: ``pytest.ini``/``.pytest.ini``, ``tox.ini``'s ``[pytest]``,
  ``setup.cfg``'s ``[tool:pytest]``, ``pyproject.toml``'s ``[tool.pytest*]``;
* the packaging metadata that registers pytest plugins (``pytest11`` entry points in
  ``pyproject.toml``, ``setup.cfg``, and any ``setup.py`` line that names pytest or
  ``entry_points``);
* interpreter start-up files: ``sitecustomize.py``, ``usercustomize.py``, ``*.pth``;
* top-level modules that would shadow the grader when pytest runs from the checkout
  (``pytest``, ``_pytest``, ``pluggy``, ``py``, cra's ``cra_oracle``).

The task's test files are also restored before every run (``harness.worktrees``), so even
an edit that slipped through would not be graded.

``suspicious_reasons`` reads the lines a patch adds for what honest source code has no
reason to name (pytest internals and hooks, ``atexit``, ``os._exit``, the JUnit report,
cra's environment variables). A suspicious patch is still tested, stored with the flag and
its reason, and never counts as resolved, so it never becomes a chosen answer. The list
follows issue 9 and SWE-bench's notion of spoofing an evaluation; it errs towards flagging.
"""

from __future__ import annotations

import configparser
import re
import tomllib
from collections.abc import Collection, Mapping
from pathlib import PurePosixPath
from typing import Any

START_UP_FILES = frozenset({"sitecustomize.py", "usercustomize.py"})
SHADOWING_MODULES = frozenset({"pytest", "_pytest", "pluggy", "py", "cra_oracle"})
PYTEST_INI_FILES = frozenset({"pytest.ini", ".pytest.ini"})

Texts = Mapping[str, "str | None"]

# (pattern, what it is), read on added lines only.
_SUSPICIOUS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b_pytest\b"), "pytest internals (_pytest)"),
    (re.compile(r"\bpytest_(runtest_\w+|sessionfinish|sessionstart|terminal_summary|report_\w+"
                r"|collection_modifyitems|collectreport|configure|unconfigure|plugins)\b"),
     "a pytest hook"),
    (re.compile(r"""sys\.modules\s*(\[\s*['"]_?pytest|\.get\(\s*['"]_?pytest)"""),
     "sys.modules['pytest']"),
    (re.compile(r"\bpluggy\b"), "pytest's plugin manager (pluggy)"),
    (re.compile(r"\batexit\b"), "atexit"),
    (re.compile(r"\bos\._exit\b"), "os._exit"),
    (re.compile(r"junit", re.IGNORECASE), "the JUnit report"),
    (re.compile(r"short test summary info"), "pytest's summary text"),
    (re.compile(r"\bCRA_[A-Z_]+\b"), "cra's environment variables"),
    (re.compile(r"\bcra_oracle\b"), "cra's pytest plugin"),
)


def _added_lines(before: str | None, after: str | None) -> list[str]:
    old = set((before or "").splitlines())
    return [line for line in (after or "").splitlines() if line not in old]


def suspicious_reasons(before: Texts, after: Texts) -> list[str]:
    """What the lines a patch adds reach for, one reason per kind with its first line."""
    found: dict[str, str] = {}
    for path in sorted(after):
        for line in _added_lines(before.get(path), after.get(path)):
            for pattern, what in _SUSPICIOUS:
                if what not in found and pattern.search(line):
                    found[what] = f"references {what} in {path}: {line.strip()[:120]}"
    return list(found.values())


# --------------------------------------------------------------------------- tampering


def _toml_part(text: str | None) -> Any:
    if text is None:
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return _pytest_lines(text)
    tool = data.get("tool", {})
    project = data.get("project", {})
    return {
        "pytest": {k: v for k, v in tool.items() if k.startswith("pytest")},
        "entry-points": project.get("entry-points", {}).get("pytest11"),
        "poetry-plugins": tool.get("poetry", {}).get("plugins", {}).get("pytest11"),
    }


def _ini_part(text: str | None) -> Any:
    if text is None:
        return None
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return _pytest_lines(text)
    sections = {name: dict(parser[name]) for name in parser.sections()
                if name in {"pytest", "tool:pytest"}}
    if parser.has_option("options.entry_points", "pytest11"):
        sections["pytest11"] = {"": parser.get("options.entry_points", "pytest11")}
    return sections


def _pytest_lines(text: str | None) -> list[str]:
    return sorted(ln.strip() for ln in (text or "").splitlines()
                  if "pytest" in ln or "entry_points" in ln)


def _config_changed(name: str, before: str | None, after: str | None) -> str | None:
    if name == "pyproject.toml" and _toml_part(before) != _toml_part(after):
        return "pytest's configuration or plugin entry points in pyproject.toml"
    if name in {"setup.cfg", "tox.ini"} and _ini_part(before) != _ini_part(after):
        return f"pytest's configuration or plugin entry points in {name}"
    if name == "setup.py" and _pytest_lines(before) != _pytest_lines(after):
        return "a setup.py line naming pytest or entry_points (plugin registration)"
    return None


def tamper_reasons(before: Texts, after: Texts, task_tests: Collection[str]) -> list[str]:
    """Why the change from ``before`` to ``after`` ({path: text, None when absent}) reaches
    the oracle, one reason per path; empty when it does not."""
    reasons: list[str] = []
    for path in sorted(after):
        if before.get(path) == after.get(path):
            continue
        p = PurePosixPath(path)
        name, top = p.name, p.parts[0] if p.parts else ""
        why: str | None = None
        if path in task_tests:
            why = "one of the task's test files"
        elif name == "conftest.py":
            why = "a conftest.py (pytest loads its hooks)"
        elif name in PYTEST_INI_FILES:
            why = "pytest's configuration file"
        elif name in START_UP_FILES or name.endswith(".pth"):
            why = "an interpreter start-up file"
        elif top in SHADOWING_MODULES or top.removesuffix(".py") in SHADOWING_MODULES:
            why = f"a module that would shadow {top.removesuffix('.py')} when pytest runs"
        elif name in {"setup.cfg", "tox.ini", "pyproject.toml", "setup.py"}:
            why = _config_changed(name, before.get(path), after.get(path))
        if why:
            reasons.append(f"{path}: {why}")
    return reasons
