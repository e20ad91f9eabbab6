"""The commit filter's rules, one test per thing they reject.

The message, size and tests rules are pure functions over what ``git log`` printed, so
they are tested on plain values here; tests/test_mining.py runs them on real repos. The
parse stage's re-parser is tested in tests/test_pyparse.py.
"""

from __future__ import annotations

import pytest

from appliance.config import MiningConfig
from appliance.records import FileChange
from harness import filters
from harness.filters import Change, Message

CONFIG = MiningConfig()


def msg(title: str, body: str = "", *, author: str = "Ada Dev <ada@example.com>", merge: bool = False,
        raw: str | None = None) -> Message:
    text = title + (f"\n\n{body}" if body else "")
    return Message(title=title, body=text, raw_title=raw or title, author=author, is_merge=merge)


def message_verdict(m: Message) -> str | None:
    return filters.first_rejection(filters.MESSAGE_RULES, m, CONFIG)


# --------------------------------------------------------------------- message rules

# One example per rule, rejected by that rule and by no rule before it: a rule that an
# earlier one shadows completely would show up here.
REJECTED_BY = {
    "bot": msg("Bump attrs from 22.1.0 to 23.1.0", author="dependabot[bot] <49699333+dependabot[bot]@users.noreply.github.com>"),
    "merge_without_title": msg("Merge branch 'main' of github.com:ada/lib"),
    "revert": msg('Revert "Add parse_date() for ISO dates"', "This reverts commit 0123456789abcdef."),
    "version_bump": msg("Prepare release 23.1.0 of the library"),
    "typo": msg("Fix typo in the error message of parse_date"),
    "wip": msg("WIP: start on the date parser module"),
    "maintenance": msg("Make flake8 happy about unused imports"),
    "short_title": msg("Fix parser"),
    "long_message": msg("Add parse_date() for ISO dates", "x" * 3000),
    "not_imperative": msg("Added parse_date() for ISO dates"),
}


def test_every_message_rule_has_an_example() -> None:
    assert set(REJECTED_BY) == set(filters.MESSAGE_RULES)


@pytest.mark.parametrize("rule", list(filters.MESSAGE_RULES))
def test_each_message_rule_rejects_its_example_first(rule: str) -> None:
    m = REJECTED_BY[rule]
    names = list(filters.MESSAGE_RULES)
    for earlier in names[: names.index(rule)]:
        assert filters.MESSAGE_RULES[earlier](m, CONFIG) is None, f"{earlier} shadows {rule}"
    assert filters.MESSAGE_RULES[rule](m, CONFIG)


@pytest.mark.parametrize(
    "author",
    [
        "dependabot[bot] <support@github.com>",
        "pre-commit-ci[bot] <66853113+pre-commit-ci[bot]@users.noreply.github.com>",
        "renovate[bot] <bot@renovateapp.com>",
        "github-actions <41898282+github-actions[bot]@users.noreply.github.com>",
    ],
)
def test_rejects_bot_authors(author: str) -> None:
    assert "bot author" in (message_verdict(msg("Add parse_date() for ISO dates", author=author)) or "")


@pytest.mark.parametrize(
    "title",
    [
        "[pre-commit.ci] pre-commit autoupdate",
        "pre-commit autoupdate",
        "Update pre-commit hooks to the latest versions",
        "Bump actions/checkout from 3 to 4",
        "chore(deps): update dependency pytest to v8",
        "Update dependency hypothesis to v6.100.0",
    ],
)
def test_rejects_bot_and_dependency_messages(title: str) -> None:
    assert message_verdict(msg(title)) == "bot or dependency update"


@pytest.mark.parametrize(
    "title",
    ["Bump version to 1.2.3", "Release 1.2", "Release 21.1.0", "Prepare 22.1.0",
     "Start 22.2.0 development cycle", "v1.4.0", "1.4.0", "Back to development: 23.2.0",
     "Update version to 2.0.0 for the release"],
)
def test_rejects_version_bumps(title: str) -> None:
    assert message_verdict(msg(title)) == "version bump or release"


@pytest.mark.parametrize("title", ["Fix typo in README and in parse_date", "Typos in the docstrings of core",
                                   "Fix spelling of 'occurred' everywhere"])
def test_rejects_typo_fixes(title: str) -> None:
    assert message_verdict(msg(title)) == "typo or spelling fix"


@pytest.mark.parametrize("title", ['Revert "Add parse_date()"', "Revert parse_date changes from last week",
                                   "Reapply the parse_date speedup after the fix"])
def test_rejects_reverts(title: str) -> None:
    assert message_verdict(msg(title)) == "revert"


@pytest.mark.parametrize(
    "title",
    ["Merge branch 'main' into feature", "Merge branch 'main' of github.com:ada/lib",
     "Merge pull request #12 from ada/feature", "Merge remote-tracking branch 'origin/main'"],
)
def test_rejects_merges_without_a_pull_request_title(title: str) -> None:
    assert message_verdict(msg(title, merge=True)) == "merge without a pull-request title"


@pytest.mark.parametrize("title", ["WIP", "wip: parser", "fixup! Add parse_date() for ISO dates",
                                   "squash! Add parse_date() for ISO dates", "Dataclass support WIP"])
def test_rejects_work_in_progress(title: str) -> None:
    assert message_verdict(msg(title)) == "work in progress"


@pytest.mark.parametrize(
    "title",
    ["docs: explain the parser options", "ci: run the tests on Python 3.13", "Update the changelog for 2.0",
     "Improve coverage of the date parser", "Add tests for parse_date edge cases", "Drop Python 3.7",
     "Refactor the parser into two modules", "Make mypy happy with the new overloads", "Run black on src"],
)
def test_rejects_maintenance_without_behaviour_change(title: str) -> None:
    assert (message_verdict(msg(title)) or "").startswith("maintenance")


@pytest.mark.parametrize("title", ["Fix bug", "Tweak it", "Fix #123", "Handle None"])
def test_rejects_short_titles(title: str) -> None:
    assert (message_verdict(msg(title)) or "").startswith("title too short")


@pytest.mark.parametrize("title", ["Update src/lib/core.py", "Create parser_utils.py"])
def test_rejects_titles_that_only_name_a_file(title: str) -> None:
    assert message_verdict(msg(title)) == "generic title (names a file, not a change)"


def test_rejects_titles_that_are_branch_names() -> None:
    assert message_verdict(msg("tin/override-hooks (#326)")) == "title is a branch name"


def test_rejects_changelog_sized_messages() -> None:
    assert (message_verdict(msg("Add parse_date() for ISO dates", "- item\n" * 400)) or "").startswith("message too long")


@pytest.mark.parametrize("title", ["Added parse_date() for ISO dates", "Fixes crash on empty input strings",
                                   "Adding a parser for ISO dates", "Updates the retry logic of the client"])
def test_rejects_titles_that_do_not_start_with_an_imperative(title: str) -> None:
    assert (message_verdict(msg(title)) or "").startswith("title does not start with an imperative")


@pytest.mark.parametrize(
    "title",
    [
        "Add parse_date() for ISO dates",
        "Fix crash when the input string is empty (#123)",
        "fix(parser): handle leap seconds in ISO dates",
        "[parser] Accept a trailing Z as UTC",
        "Don't swallow KeyError in the converter",
        "Pass the field to validators as a third argument",
        "Speed up attribute lookup on slotted classes",
        "Support `typing.Annotated` in field types (#1001)",
    ],
)
def test_keeps_descriptive_imperative_titles(title: str) -> None:
    assert message_verdict(msg(title)) is None


def test_message_score_prefers_imperative_explained_changes() -> None:
    good = filters.message_score(msg("Add parse_date() for ISO dates with time zones",
                                     "The parser accepts offsets.\nIt returns aware datetimes."))
    bare = filters.message_score(msg("Added parse_date"))
    assert 0.0 <= bare < good <= 1.0


def test_split_message_takes_the_pull_request_title_of_a_merge() -> None:
    raw = "Merge pull request #12 from ada/feature\n\nAdd format_date() helper\n\nIt formats dates.\n"
    assert filters.split_message(raw, is_merge=True) == (
        "Add format_date() helper", "Add format_date() helper\n\nIt formats dates.")


def test_split_message_takes_the_title_of_a_gitlab_merge_request() -> None:
    raw = "Merge branch 'feature' into 'main'\n\nAdd format_date() helper\n\nSee merge request ada/lib!7"
    assert filters.split_message(raw, is_merge=True) == ("Add format_date() helper", "Add format_date() helper")


def test_split_message_keeps_a_merge_without_title_as_it_is() -> None:
    raw = "Merge pull request #12 from ada/feature"
    title, _ = filters.split_message(raw, is_merge=True)
    assert title == raw and message_verdict(msg(title, merge=True)) == "merge without a pull-request title"


def test_split_message_leaves_squash_commits_alone() -> None:
    raw = "Add format_date() helper (#12)\n\n* wip\n* fix tests\n"
    assert filters.split_message(raw, is_merge=False)[0] == "Add format_date() helper (#12)"


# --------------------------------------------------------------------- files

@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("src/lib/core.py", "source"),
        ("lib/__init__.pyi", "source"),
        ("tests/test_core.py", "test"),
        ("tests/helpers.py", "test"),
        ("tests/data/sample.json", "test"),
        ("src/lib/test_core.py", "test"),
        ("src/lib/core_test.py", "test"),
        ("conftest.py", "test"),
        ("typing_tests/baseline.py", "test"),
        ("testing/util.py", "test"),
        ("docs/conf.py", "other"),
        ("setup.py", "other"),
        ("noxfile.py", "other"),
        ("benchmarks/bench_core.py", "other"),
        ("README.md", "other"),
        ("changelog.d/12.change.md", "other"),
        ("src/lib/contest.py", "source"),
    ],
)
def test_classify_path(path: str, kind: str) -> None:
    assert filters.classify_path(path) == kind


def fc(path: str, added: int = 5, deleted: int = 1, *, binary: bool = False) -> FileChange:
    return FileChange(path, added, deleted, kind=filters.classify_path(path), binary=binary)


GOOD = [fc("src/lib/core.py"), fc("tests/test_core.py")]


def change_verdict(files: list[FileChange], *, root: bool = False, config: MiningConfig = CONFIG) -> str | None:
    change = Change(files=files, is_root=root)
    return filters.first_rejection(filters.SIZE_RULES, change, config) or filters.first_rejection(
        filters.TESTS_RULES, change, config)


def test_keeps_a_change_to_code_and_its_tests() -> None:
    assert change_verdict(GOOD) is None


def test_rejects_root_commit() -> None:
    assert change_verdict(GOOD, root=True) == "root commit (no parent to diff against)"


def test_rejects_empty_commit() -> None:
    assert change_verdict([]) == "no files changed"


def test_rejects_binary_file() -> None:
    assert change_verdict([*GOOD, fc("docs/logo.png", 0, 0, binary=True)]) == "binary file changed (docs/logo.png)"


def test_rejects_too_many_files() -> None:
    files = GOOD + [fc(f"docs/page{i}.md") for i in range(CONFIG.max_files)]
    assert change_verdict(files).startswith("too many files")


def test_rejects_too_few_files() -> None:
    assert change_verdict([fc("src/lib/core.py")]).startswith("too few files")


def test_rejects_too_many_lines() -> None:
    assert change_verdict([fc("src/lib/core.py", 500, 0), fc("tests/test_core.py", 200, 0)]).startswith("too many lines")


def test_rejects_too_few_lines() -> None:
    assert change_verdict([fc("src/lib/core.py", 1, 0), fc("tests/test_core.py", 1, 0)]).startswith("too few lines")


def test_rejects_too_many_source_files() -> None:
    files = [fc(f"src/lib/m{i}.py") for i in range(CONFIG.max_source_files + 1)] + [fc("tests/test_m.py")]
    assert change_verdict(files).startswith("too many source files")


def test_rejects_no_source_file() -> None:
    assert change_verdict([fc("docs/index.md"), fc("tests/test_core.py")]) == "no source .py file changed"


def test_rejects_no_test_module() -> None:
    # A helper in tests/ is test-side, but pytest runs no test from it.
    assert change_verdict([fc("src/lib/core.py"), fc("tests/helpers.py")]) == "no test module changed"


def test_size_bounds_come_from_the_config() -> None:
    assert change_verdict(GOOD, config=MiningConfig(max_files=1, min_files=1)).startswith("too many files")


def test_every_size_and_tests_rule_is_reachable() -> None:
    examples = {
        "root": (GOOD, True), "empty": ([], False),
        "binary": ([*GOOD, fc("a.png", 0, 0, binary=True)], False),
        "too_many_files": (GOOD + [fc(f"d{i}.md") for i in range(20)], False),
        "too_few_files": ([fc("src/a.py")], False),
        "too_many_lines": ([fc("src/a.py", 900), fc("tests/test_a.py")], False),
        "too_few_lines": ([fc("src/a.py", 1, 0), fc("tests/test_a.py", 1, 0)], False),
        "too_many_source_files": ([fc(f"src/m{i}.py") for i in range(7)] + [fc("tests/test_m.py")], False),
        "no_source": ([fc("README.md"), fc("tests/test_a.py")], False),
        "no_test": ([fc("src/a.py"), fc("README.md")], False),
    }
    assert set(examples) == set(filters.SIZE_RULES) | set(filters.TESTS_RULES)
    rules = {**filters.SIZE_RULES, **filters.TESTS_RULES}
    for name, (files, root) in examples.items():
        change = Change(files=files, is_root=root)
        first = next(n for n, rule in rules.items() if rule(change, CONFIG))
        assert first == name
