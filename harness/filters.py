"""The commit filter's rules: small named functions in tables, one reason string each.

Every rule answers one question about a candidate commit and returns ``None`` (pass) or
a short reason (reject). The tables fix the order in which rules run inside a stage, so
the reason recorded for a commit is always the first rule it broke, and each rule can be
tested on its own. The stage names are ``appliance.db.corpus.STAGES``; stage 1
(``message``, ``size``, ``tests``) runs here on what ``git log --numstat`` printed, stage 2
(``parse``) needs file contents and lives in ``harness.mining``.

The layout copies SWE-bench's log parsers (``MAP_REPO_TO_PARSER``): adding a rule is
writing one function and one table entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from appliance.config import MiningConfig
from appliance.records import FileChange, FileKind
from harness.pytest_config import DEFAULT as DEFAULT_SETTINGS
from harness.pytest_config import PytestSettings

T = TypeVar("T")

# ---------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Message:
    """What the message rules look at.

    ``title`` and ``body`` (the whole message, title included) are what a task would use
    as its instruction: for a pull-request merge, the PR title and description, not the
    "Merge pull request #12 from user/branch" line, which stays in ``raw_title``.
    """

    title: str
    body: str
    raw_title: str
    author: str  # "Name <email>"
    is_merge: bool = False

    @property
    def first_word(self) -> str:
        return first_word(self.title)


# "Merge pull request #12 from user/branch" (GitHub) and
# "Merge branch 'x' into 'main'" + "See merge request group/p!12" (GitLab).
_GITHUB_MERGE = re.compile(r"^Merge pull request #\d+ from \S+")
_GITLAB_MERGE = re.compile(r"^Merge branch '[^']+' into '[^']+'")
_GITLAB_TRAILER = re.compile(r"^See merge request \S+$", re.MULTILINE)
_ANY_MERGE = re.compile(
    r"^Merge (pull request|branch|remote-tracking branch|tag|commit|changes|remote branch)\b"
    r"|^Merged? (in|from) \S+$",
    re.IGNORECASE,
)


def split_message(raw: str, *, is_merge: bool) -> tuple[str, str]:
    """(title, message) a task would use for this commit.

    A pull-request merge's instruction is the PR title (the merge message's second
    paragraph) and the PR description after it. Anything else keeps its own first line.
    A PR merge without a title keeps its "Merge pull request" line, which the message
    rules then reject.
    """
    text = raw.strip()
    first = text.split("\n", 1)[0].strip()
    if is_merge and (_GITHUB_MERGE.match(first) or _GITLAB_MERGE.match(first)):
        paragraphs = re.split(r"\n\s*\n", text, maxsplit=1)
        rest = paragraphs[1].strip() if len(paragraphs) > 1 else ""
        rest = _GITLAB_TRAILER.sub("", rest).strip()
        if rest:
            return rest.split("\n", 1)[0].strip(), rest
    return first, text


# Conventional-commit and tag prefixes stripped before looking at the first word:
# "fix(api): ...", "docs: ...", "[typing] ...", "gh-123: ...".
_PREFIX = re.compile(r"^\s*(\[[^\]\n]{1,40}\]\s*|[\w.\-/`]{1,30}(\([^)\n]{0,40}\))?!?:\s+)")


def strip_prefixes(title: str) -> str:
    for _ in range(3):
        stripped = _PREFIX.sub("", title, count=1)
        if stripped == title:
            break
        title = stripped
    return title.strip()


def first_word(title: str) -> str:
    words = strip_prefixes(title).split()
    return words[0].strip("`'\"*_,.;:!?()") if words else ""


_BOT_AUTHOR = re.compile(
    r"\[bot\]|dependabot|renovate|pre-commit-ci|github-actions|greenkeeper|pyup|snyk-bot"
    r"|allcontributors|imgbot|mergify|codecov|web-flow-bot|deepsource",
    re.IGNORECASE,
)
_BOT_MESSAGE = re.compile(
    r"\[pre-commit\.ci\]|pre-commit autoupdate|\bautoupdate\b|^\[?auto\]?\s*update pre-commit"
    r"|^update pre-commit|^(chore|build)\(deps(-dev)?\)|^bump \S+ from \S+ to \S+"
    r"|^update dependency \S+|^lock file maintenance|^\[Snyk\]|^pin dependencies",
    re.IGNORECASE,
)
_VERSION = r"v?\d+(\.\d+)+\S*"
_VERSION_BUMP = re.compile(
    rf"^(bump|update|increase|set|change)\b.{{0,20}}\bversion\b"
    rf"|^(release|releasing|prepare|preparing|prep|tag|version|start|starting|open|back to)\b"
    rf".{{0,40}}{_VERSION}"
    rf"|^{_VERSION}$"
    rf"|^(release|prepare|preparing) (for )?(the )?(next )?(release|version)\b"
    rf"|^back to development|^post-release|^dev version|^bump to {_VERSION}",
    re.IGNORECASE,
)
_TYPO = re.compile(r"\btypos?\b|\bspelling\b|\bmisspell|\bgrammar\b", re.IGNORECASE)
# The title only: a squashed pull request may list a revert among its commits.
_REVERT = re.compile(r"^(revert|reapply)\b", re.IGNORECASE)
_WIP = re.compile(
    r"^(fixup|squash|amend)!|^(tmp|temp|todo|xxx|draft|do not merge|dnm)\b|\bwip\b"
    r"|^(more|oops|stuff|fixes|changes|update|updates|cleanup|wip|test|tests|foo|asdf|\.+)$",
    re.IGNORECASE,
)
# Changes that keep behaviour as it is: no failing test can tell the commit apart from its
# parent, so no task comes out of them.
_MAINTENANCE_TYPES = re.compile(
    r"^\s*(docs?|ci|chore|build|style|tests?|typing|lint|deps?|release|meta|infra|dev-?deps?)"
    r"(\([^)\n]*\))?!?:",
    re.IGNORECASE,
)
# A maintenance word among the first four words says what the commit is about; later
# ("Add a Twisted logger and docs") it is only a mention.
_MAINTENANCE_WORD = re.compile(
    r"\b(flake8|pylint|isort|black|mypy|pyright|ruff|pyupgrade|pre-commit|linters?|linting"
    r"|lint|reformat\w*|formatting|code style|coverage|codecov|tox|nox|travis|appveyor"
    r"|github actions|ci|docs|documentation|docstrings?|changelog|readme|news ?fragments?"
    r"|dependenc(y|ies)|deps|requirements)\b",
    re.IGNORECASE,
)
_MAINTENANCE_PHRASE = re.compile(
    r"^(drop|remove|add|deprecate) (support for )?(python|py|pypy) ?\d"
    r"|^(add|more|improve|better|fix|update|refactor|move|split|clean ?up|simplify) "
    r"(the |some |a )?(unit |missing )?tests?\b"
    r"|^tests? (for|with|on)\b|^refactor\b|^clean ?up\b|^cosmetics?\b|^polish\b",
    re.IGNORECASE,
)
# "tin/override-hooks": the title GitHub makes from a branch name.
_BRANCH_NAME = re.compile(r"^[\w.-]+/[\w./-]+( \(#\d+\))?$")
# GitHub's web editor suggests "Update README.md", "Create foo.py": says nothing.
_GENERIC = re.compile(r"^(update|create|delete|add|edit|fix|rename) \S+\.\w{1,5}$", re.IGNORECASE)

# Real verbs that end like a past tense, gerund or third person.
_LOOKS_INFLECTED_BUT_FINE = frozenset({
    "bring", "embed", "exceed", "feed", "need", "proceed", "seed", "shed", "speed", "succeed",
    "shred", "string", "ping", "spring", "ring", "sing", "wing", "bed", "red",
    "access", "address", "bypass", "discuss", "express", "focus", "pass", "process",
    "compress", "harness", "alias", "canvas", "bias", "gas", "does", "unless", "suppress",
})
_INFLECTED = re.compile(r"^[a-z]{2,}(ed|ing)$|^[a-z]{2,}[^su]s$")


def is_imperative(word: str) -> bool:
    """A cheap test for "Add", "Fix", "Don't" against "Added", "Fixing", "Fixes".

    Not a dictionary look-up: it only catches inflected forms, which is what people write
    instead of the imperative. A word that is not a verb at all passes.
    """
    w = word.lower()
    if not w or not w[0].isalpha():
        return True
    return w in _LOOKS_INFLECTED_BUT_FINE or not _INFLECTED.match(w)


MessageRule = Callable[[Message, MiningConfig], "str | None"]


def reject_bot(msg: Message, config: MiningConfig) -> str | None:
    if _BOT_AUTHOR.search(msg.author):
        return f"bot author ({msg.author})"
    if _BOT_MESSAGE.search(msg.raw_title) or _BOT_MESSAGE.search(msg.title):
        return "bot or dependency update"
    return None


def reject_merge_without_title(msg: Message, config: MiningConfig) -> str | None:
    if _ANY_MERGE.match(msg.title):
        return "merge without a pull-request title"
    return None


def reject_revert(msg: Message, config: MiningConfig) -> str | None:
    return "revert" if _REVERT.search(msg.title.strip()) else None


def reject_version_bump(msg: Message, config: MiningConfig) -> str | None:
    return "version bump or release" if _VERSION_BUMP.search(strip_prefixes(msg.title)) else None


def reject_typo(msg: Message, config: MiningConfig) -> str | None:
    return "typo or spelling fix" if _TYPO.search(msg.title) else None


def reject_wip(msg: Message, config: MiningConfig) -> str | None:
    title = msg.title.strip()
    return "work in progress" if _WIP.search(title) or _WIP.search(strip_prefixes(title)) else None


def reject_maintenance(msg: Message, config: MiningConfig) -> str | None:
    title = strip_prefixes(msg.title)
    head = " ".join(title.split()[:4])
    if (
        _MAINTENANCE_TYPES.match(msg.title)
        or _MAINTENANCE_WORD.search(head)
        or _MAINTENANCE_PHRASE.search(title)
    ):
        return "maintenance (docs, CI, linting, tests or dependencies: no behaviour change)"
    return None


def reject_short_title(msg: Message, config: MiningConfig) -> str | None:
    n = len(msg.title.strip())
    if n < config.min_message_chars:
        return f"title too short to describe a task ({n} < {config.min_message_chars} chars)"
    if _GENERIC.match(strip_prefixes(msg.title)):
        return "generic title (names a file, not a change)"
    if _BRANCH_NAME.match(msg.title.strip()):
        return "title is a branch name"
    return None


def reject_long_message(msg: Message, config: MiningConfig) -> str | None:
    n = len(msg.body)
    if n > config.max_message_chars:
        return f"message too long ({n} > {config.max_message_chars} chars)"
    return None


def reject_not_imperative(msg: Message, config: MiningConfig) -> str | None:
    word = msg.first_word
    if is_imperative(word):
        return None
    return f"title does not start with an imperative verb ({word!r})"


# Order matters: the most specific reason wins (a dependabot "Bump version" is a bot).
MESSAGE_RULES: dict[str, MessageRule] = {
    "bot": reject_bot,
    "merge_without_title": reject_merge_without_title,
    "revert": reject_revert,
    "version_bump": reject_version_bump,
    "typo": reject_typo,
    "wip": reject_wip,
    "maintenance": reject_maintenance,
    "short_title": reject_short_title,
    "long_message": reject_long_message,
    "not_imperative": reject_not_imperative,
}


def message_score(msg: Message) -> float:
    """A 0..1 ranking signal for kept commits (not a gate: the rules above are).

    Half for an imperative first word, 0.3 for a title of eight words or more, 0.2
    for a body (two lines or more) that explains the change.
    """
    words = len(strip_prefixes(msg.title).split())
    body_lines = [ln for ln in msg.body.splitlines()[1:] if ln.strip()]
    score = (
        0.5 * is_imperative(msg.first_word)
        + 0.3 * min(1.0, words / 8)
        + 0.2 * min(1.0, len(body_lines) / 2)
    )
    return round(score, 3)


# ---------------------------------------------------------------------------- files

TEST_FILE_NAMES = ("conftest.py",)
_TEST_DIR = re.compile(r"^(tests?|testing)$|_tests?$|^tests?_")
# Python files that are not the library under test.
NON_SOURCE_DIRS = frozenset({"docs", "doc", ".github", "benchmarks", "benchmark", "bench",
                             "examples", "example", "scripts", "tools", "ci", ".ci"})
TOOL_FILES = frozenset({"setup.py", "noxfile.py", "tasks.py", "fabfile.py", "toxfile.py",
                        "dodo.py", "bootstrap.py"})
PYTHON_SUFFIXES = (".py", ".pyi")


def classify_path(path: str, settings: PytestSettings = DEFAULT_SETTINGS) -> FileKind:
    """``test`` for anything in a tests folder, named like a pytest file or collected as
    one by the project's own pytest settings (``python_files`` within ``testpaths``),
    ``source`` for the library's own Python files, ``other`` for the rest (docs, config,
    changelog)."""
    parts = path.split("/")  # git paths: always "/", never "./" or "//"
    name = parts[-1]
    dirs = parts[:-1]
    if any(_TEST_DIR.search(d) for d in dirs):
        return "test"
    if settings.is_test_module(path):
        return "test"
    if name.endswith(".py") and (
        name.startswith("test_") or name.endswith("_test.py") or name in TEST_FILE_NAMES
    ):
        return "test"
    if name.endswith(PYTHON_SUFFIXES):
        if any(d in NON_SOURCE_DIRS for d in dirs) or (not dirs and name in TOOL_FILES):
            return "other"
        return "source"
    return "other"


def is_python(path: str) -> bool:
    return path.endswith(PYTHON_SUFFIXES)


@dataclass(frozen=True)
class Change:
    """What the size and tests rules look at: a commit's files against its first parent,
    and the pytest settings in force at the commit (``harness.pytest_config``)."""

    files: Sequence[FileChange]
    is_root: bool = False
    settings: PytestSettings = DEFAULT_SETTINGS

    @property
    def lines(self) -> int:
        return sum(f.added + f.deleted for f in self.files)


ChangeRule = Callable[[Change, MiningConfig], "str | None"]


def reject_root(change: Change, config: MiningConfig) -> str | None:
    return "root commit (no parent to diff against)" if change.is_root else None


def reject_empty(change: Change, config: MiningConfig) -> str | None:
    return "no files changed" if not change.files else None


def reject_binary(change: Change, config: MiningConfig) -> str | None:
    for f in change.files:
        if f.binary:
            return f"binary file changed ({f.path})"
    return None


def reject_too_many_files(change: Change, config: MiningConfig) -> str | None:
    n = len(change.files)
    return f"too many files ({n} > {config.max_files})" if n > config.max_files else None


def reject_too_few_files(change: Change, config: MiningConfig) -> str | None:
    n = len(change.files)
    return f"too few files ({n} < {config.min_files})" if n < config.min_files else None


def reject_too_many_lines(change: Change, config: MiningConfig) -> str | None:
    n = change.lines
    return f"too many lines ({n} > {config.max_lines})" if n > config.max_lines else None


def reject_too_few_lines(change: Change, config: MiningConfig) -> str | None:
    n = change.lines
    return f"too few lines ({n} < {config.min_lines})" if n < config.min_lines else None


def reject_too_many_source_files(change: Change, config: MiningConfig) -> str | None:
    n = sum(1 for f in change.files if f.kind == "source")
    if n > config.max_source_files:
        return f"too many source files ({n} > {config.max_source_files})"
    return None


SIZE_RULES: dict[str, ChangeRule] = {
    "root": reject_root,
    "empty": reject_empty,
    "binary": reject_binary,
    "too_many_files": reject_too_many_files,
    "too_few_files": reject_too_few_files,
    "too_many_lines": reject_too_many_lines,
    "too_few_lines": reject_too_few_lines,
    "too_many_source_files": reject_too_many_source_files,
}


def reject_no_source(change: Change, config: MiningConfig) -> str | None:
    ok = any(f.kind == "source" and f.path.endswith(".py") for f in change.files)
    return None if ok else "no source .py file changed"


def is_runnable_test(path: str, settings: PytestSettings = DEFAULT_SETTINGS) -> bool:
    """A test module pytest collects (by the project's ``python_files`` and ``testpaths``):
    the task's FAIL_TO_PASS can only come from one."""
    return settings.is_test_module(path)


def reject_no_test(change: Change, config: MiningConfig) -> str | None:
    ok = any(f.kind == "test" and is_runnable_test(f.path, change.settings) for f in change.files)
    return None if ok else "no test module changed"


TESTS_RULES: dict[str, ChangeRule] = {
    "no_source": reject_no_source,
    "no_test": reject_no_test,
}


def first_rejection(
    rules: Mapping[str, Callable[[T, MiningConfig], str | None]], subject: T, config: MiningConfig
) -> str | None:
    """The reason of the first rule in ``rules`` that rejects ``subject``, or None."""
    for rule in rules.values():
        reason = rule(subject, config)
        if reason:
            return reason
    return None
