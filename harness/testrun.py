"""Small, separately testable pieces of a test run: split a commit, run pytest, read results.

The shape follows SWE-bench: a commit becomes a ``test_patch`` (its changes to test files)
and a ``gold_patch`` (the rest); pytest runs only the commit's own test files, in the
sandbox; results come from the junit XML, with the ``-rA`` short summary as the fallback.

Results are read as if the code under test were hostile, because later it is (model
output), and each guard is named after the attack it stops:

* *fake PASSED lines*: only the last short-summary section is read, its per-outcome line
  counts must match pytest's closing counts line, and it must agree with the junit file.
* *overwritten junit file*: the file is written to a fresh folder outside the checkout;
  it must be the only thing in that folder, a regular file, and agree with the summary.
* *forged exit status*: the exit code must agree with the outcomes (0 with a failure, or
  1 without one, is a lie somewhere).

A run whose sources disagree is *untrusted*: every test in it counts as ``error``, so a
forgery can only ever turn a pass into a failure, never the other way round. Code running
inside pytest's own process could still forge all three consistently; that needs a
deliberate attack on this harness and is what the later plan-diff checks look for.
"""

from __future__ import annotations

import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from appliance.records import FileChange
from harness.filters import classify_path
from harness.git import git

OUTCOMES = ("passed", "failed", "error", "skipped")
FAILING = frozenset({"failed", "error"})
_RANK = {"skipped": 0, "passed": 1, "failed": 2, "error": 3}
JUNIT_NAME = "junit.xml"
MAX_JUNIT_BYTES = 64 << 20
# Test-configuration files restored with the test files: a patch must not switch plugins
# on or collection off through them.
TEST_CONFIG_FILES = ("pytest.ini", ".pytest.ini")


# ----------------------------------------------------------------------------- splitting


def is_test_file(path: str) -> bool:
    """A test-side file (the miner's rule): anything under a tests folder, test_*.py,
    *_test.py, conftest.py, plus pytest's own config files."""
    return classify_path(path) == "test" or PurePosixPath(path).name in TEST_CONFIG_FILES


def is_runnable_test(path: str) -> bool:
    """A file pytest collects as a test module (what the commit's tests are run from)."""
    name = PurePosixPath(path).name
    return (
        classify_path(path) == "test"
        and name.endswith(".py")
        and (name.startswith("test_") or name.endswith("_test.py"))
    )


@dataclass
class CommitSplit:
    """A commit as a task sees it: which files are tests, and the two patches."""

    test_changed: list[str]  # test-side files the commit touches (added, changed, deleted)
    source_changed: list[str]  # everything else it touches
    run_files: list[str]  # test modules to run: touched, runnable, and present at the commit
    test_patch: str
    gold_patch: str


def changed_files(repo: Path, parent: str, sha: str) -> list[tuple[str, str]]:
    """(status letter, path) of every file the commit changes; renames as delete + add, so
    each path falls cleanly on one side of the split."""
    out = git(repo, "diff", "--name-status", "--no-renames", "-z", parent, sha)
    parts = [p for p in out.split("\0") if p]
    return [(parts[i][0], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]


def diff(repo: Path, parent: str, sha: str, paths: Sequence[str]) -> str:
    if not paths:
        return ""
    data = _git_bytes(repo, "diff", "--binary", "--no-renames", "--full-index", parent, sha, "--", *paths)
    return data.decode("utf-8", "surrogateescape")


def _git_bytes(repo: Path, *args: str) -> bytes:
    from harness.git import git_bytes

    return git_bytes(repo, *args)


def split_commit(
    repo: Path, parent: str, sha: str, files: Iterable[FileChange] | None = None
) -> CommitSplit:
    """Split ``parent..sha`` into ``test_patch`` and ``gold_patch``.

    The miner's ``FileChange.kind`` decides when given (so a task agrees with the filter
    that kept its commit); paths it does not cover fall back to the same rule.
    """
    kinds = {f.path: f.kind for f in files or ()}
    tests: list[str] = []
    sources: list[str] = []
    runnable: list[str] = []
    for status, path in changed_files(repo, parent, sha):
        kind = kinds.get(path)
        test_side = kind == "test" if kind is not None else is_test_file(path)
        if PurePosixPath(path).name in TEST_CONFIG_FILES:
            test_side = True
        (tests if test_side else sources).append(path)
        if test_side and status != "D" and is_runnable_test(path):
            runnable.append(path)
    return CommitSplit(
        test_changed=tests,
        source_changed=sources,
        run_files=sorted(runnable),
        test_patch=diff(repo, parent, sha, tests),
        gold_patch=diff(repo, parent, sha, sources),
    )


def patch_paths(patch: str) -> list[str]:
    """The paths a ``git diff`` patch touches (both sides of a rename)."""
    found: list[str] = []
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            m = re.match(r'diff --git "?a/(.+?)"? "?b/(.+?)"?$', line)
            if m:
                for p in m.groups():
                    if p not in found:
                        found.append(p)
    return found


# ----------------------------------------------------------------------------- junit


def _module_of(classname: str, name: str, file: str | None, run_files: Sequence[str]) -> str | None:
    """The test module a junit testcase came from.

    Read from ``classname`` (pytest derives it from the node id, relative to the rootdir,
    which cra pins to the checkout) against the files that were run, so it does not depend
    on the junit family. The ``file`` attribute is only a fallback: for a test method
    inherited from a mixin it names the mixin's file, not the test module.
    """
    dotted_target = classname or name
    best: str | None = None
    for f in run_files:
        dotted = f[:-3].replace("/", ".") if f.endswith(".py") else f.replace("/", ".")
        matches = dotted_target == dotted or dotted_target.startswith(dotted + ".")
        if matches and (best is None or len(f) > len(best)):
            best = f
    if best is None and file and file.endswith(".py"):
        return file.replace(os.sep, "/")
    return best


def junit_node_id(classname: str, name: str, file: str | None, run_files: Sequence[str]) -> str:
    """Turn a junit (classname, name) back into the pytest node id ``-rA`` prints."""
    module = _module_of(classname, name, file, run_files)
    if module is None:
        return f"{classname}::{name}" if classname else name
    dotted = module[:-3].replace("/", ".")
    if not classname and name == dotted:  # a collection error: the testcase is the module
        return module
    if classname == dotted:
        return f"{module}::{name}"
    if classname.startswith(dotted + "."):
        classes = classname[len(dotted) + 1:].split(".")
        return "::".join([module, *classes, name])
    return f"{module}::{name}"


def parse_junit(path: Path, run_files: Sequence[str]) -> dict[str, str] | None:
    """{node id: outcome} from a junit XML file; None when missing, oversized or invalid.

    A test reported twice (a pass, then a teardown error) keeps its worst outcome.
    """
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_JUNIT_BYTES:
            return None
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    if root.tag not in {"testsuites", "testsuite"}:
        return None
    outcomes: dict[str, str] = {}
    for case in root.iter("testcase"):
        node = junit_node_id(case.get("classname", ""), case.get("name", ""), case.get("file"), run_files)
        tags = {child.tag for child in case}
        outcome = (
            "error" if "error" in tags
            else "failed" if "failure" in tags
            else "skipped" if "skipped" in tags
            else "passed"
        )
        outcomes[node] = _worst(outcomes.get(node), outcome)
    return outcomes


def _worst(old: str | None, new: str) -> str:
    return new if old is None or _RANK[new] > _RANK[old] else old


# ----------------------------------------------------------------------------- -rA summary

_SUMMARY_MARK = re.compile(r"^=+ short test summary info =+\s*$")
_FINAL_LINE = re.compile(r"^=+ (?P<body>.*?) in [\d.]+\s*s(econds)?\b.*=+\s*$")
_COUNT = re.compile(
    r"(\d+) (subtests passed|passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?|rerun)"
)
_SUMMARY_LINE = re.compile(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS|SKIPPED) (.*)$")
# unittest subTest / pytest's subtests: "SUBFAILED[msg] (i=1) tests/x.py::T::test - ..."
_SUB_LINE = re.compile(r"^SUB(FAIL|PASS|SKIP|XFAIL)[A-Z]*\b(.*)$")
_SUB_COUNT = {"FAIL": "failed", "PASS": "subtests passed", "SKIP": "skipped", "XFAIL": "xfailed"}
_SKIPPED_N = re.compile(r"^\[(\d+)\]")
_SUMMARY_TO_OUTCOME = {
    "PASSED": "passed", "FAILED": "failed", "ERROR": "error", "XFAIL": "skipped", "XPASS": "passed",
}
# which closing-line counts each summary word is checked against
_COUNT_KEY = {"PASSED": "passed", "FAILED": "failed", "ERROR": "error", "XFAIL": "xfailed",
              "XPASS": "xpassed", "SKIPPED": "skipped"}


@dataclass
class Summary:
    outcomes: dict[str, str]
    counts: dict[str, int]  # from pytest's closing line ("3 passed, 1 failed in 0.1s")
    consistent: bool  # the lines match the closing counts


def _node_from_rest(rest: str) -> str:
    """The node id at the start of a summary line, before " - message"; a " - " inside
    a parametrize id's brackets is part of the id."""
    start = 0
    while True:
        i = rest.find(" - ", start)
        if i < 0:
            return rest.strip()
        head = rest[:i]
        if head.count("[") == head.count("]"):
            return head.strip()
        start = i + 1


def _sub_node(rest: str, run_files: Sequence[str]) -> str | None:
    """The node id inside a subtest line, after its free-text description: found by the
    test files that were run, since the description may hold anything."""
    found = [(i, f) for f in run_files for i in [rest.find(f + "::")] if i >= 0]
    if not found:
        return None
    start = min(found)[0]
    return _node_from_rest(rest[start:])


def parse_summary(output: str, run_files: Sequence[str] = ()) -> Summary | None:
    """Outcomes from the *last* short test summary section of pytest's output, or None.

    Lines printed before that marker (a test printing "PASSED ..." to stdout) are never
    read; lines forged after it must also forge pytest's closing counts to be believed.
    A failed subtest fails its test; a passed one says nothing about it.
    """
    lines = output.splitlines()
    marks = [i for i, line in enumerate(lines) if _SUMMARY_MARK.match(line)]
    if not marks:
        return None
    outcomes: dict[str, str] = {}
    seen = {k: 0 for k in [*_COUNT_KEY.values(), "subtests passed"]}
    counts: dict[str, int] | None = None
    for line in lines[marks[-1] + 1:]:
        final = _FINAL_LINE.match(line)
        if final:
            counts = {}
            for n, word in _COUNT.findall(final.group("body")):
                key = "error" if word.startswith("error") else "warning" if word.startswith("warning") else word
                counts[key] = int(n)
            break
        sub = _SUB_LINE.match(line)
        if sub:
            kind, rest = sub.groups()
            seen[_SUB_COUNT[kind]] += 1
            node = _sub_node(rest, run_files)
            if kind == "FAIL" and node is not None:
                outcomes[node] = _worst(outcomes.get(node), "failed")
            continue
        m = _SUMMARY_LINE.match(line)
        if not m:
            continue  # a wrapped message, an old pytest's indented "reason:" line
        word, rest = m.groups()
        if word == "SKIPPED":
            n = _SKIPPED_N.match(rest)
            seen["skipped"] += int(n.group(1)) if n else 1
            continue
        node = _node_from_rest(rest)
        seen[_COUNT_KEY[word]] += 1
        outcomes[node] = _worst(outcomes.get(node), _SUMMARY_TO_OUTCOME[word])
    if counts is None:
        return Summary(outcomes, {}, consistent=False)
    consistent = all(seen[k] == counts.get(k, 0) for k in seen)
    return Summary(outcomes, counts, consistent)


# ----------------------------------------------------------------------------- one run


@dataclass
class TestRun:
    """One pytest run's verdict per test, and how far it can be believed."""

    __test__ = False  # not a pytest test class, whatever its name

    outcomes: dict[str, str] = field(default_factory=dict)
    returncode: int | None = None
    timed_out: bool = False
    duration_s: float = 0.0
    source: str = "none"  # junit | summary | none
    trusted: bool = True
    note: str | None = None
    errored_files: list[str] = field(default_factory=list)  # test modules that failed to import
    isolation: str = ""
    output_tail: str = ""

    @property
    def completed(self) -> bool:
        """pytest ran to its end and reported something usable."""
        return not self.timed_out and self.source != "none" and self.returncode in (0, 1, 5)

    def status_of(self, node: str) -> str:
        """A test's outcome; one missing from a run whose module failed to import is an
        error, one otherwise missing is ``missing`` (it was not collected)."""
        if node in self.outcomes:
            return self.outcomes[node]
        module = node.split("::", 1)[0]
        return "error" if module in self.errored_files else "missing"


def _agree(junit: dict[str, str], summary: dict[str, str]) -> bool:
    loud = {"passed", "failed", "error"}
    j = {k: v for k, v in junit.items() if v in loud}
    s = {k: v for k, v in summary.items() if v in loud}
    return j == s


def interpret(
    returncode: int | None,
    stdout: str,
    junit_dir: Path,
    run_files: Sequence[str],
    *,
    timed_out: bool = False,
    output_truncated: bool = False,
) -> TestRun:
    """Combine junit, the short summary and the exit status into one ``TestRun``."""
    run = TestRun(returncode=returncode, timed_out=timed_out)
    junit_path = junit_dir / JUNIT_NAME
    junit: dict[str, str] | None = None
    notes: list[str] = []
    try:
        extra = sorted(p.name for p in junit_dir.iterdir() if p.name != JUNIT_NAME)
    except OSError:
        extra = []
    if extra:
        notes.append(f"unexpected files beside the junit report: {', '.join(extra[:5])}")
    junit = parse_junit(junit_path, run_files)
    if junit_path.exists() and junit is None:
        notes.append("junit report unreadable")
    summary = None if output_truncated else parse_summary(stdout, run_files)
    if summary is not None and not summary.consistent:
        notes.append("short summary does not match pytest's closing counts")

    suspicious = bool(extra) or (summary is not None and not summary.consistent)
    if junit is not None:
        run.source, run.outcomes = "junit", junit
        if summary is not None and summary.consistent and not _agree(junit, summary.outcomes):
            notes.append("junit report and short summary disagree")
            suspicious = True
    elif summary is not None and summary.consistent:
        run.source, run.outcomes = "summary", summary.outcomes
    if run.source != "none" and not timed_out:
        failing = any(v in FAILING for v in run.outcomes.values())
        if returncode == 0 and failing:
            notes.append("exit status 0 with failing tests")
            suspicious = True
        elif returncode == 1 and not failing:
            notes.append("exit status 1 with no failing test")
            suspicious = True
        elif returncode == 5 and any(v == "passed" for v in run.outcomes.values()):
            notes.append("exit status 5 (no tests) with passing tests")
            suspicious = True
    run.errored_files = sorted(
        node for node, v in run.outcomes.items() if v == "error" and "::" not in node and node in run_files
    )
    if suspicious:
        run.trusted = False
        run.outcomes = {k: "error" for k in run.outcomes}
    if timed_out:
        notes.append("timed out")
    elif run.source == "none":
        notes.append(f"no results (exit {returncode})")
    run.note = "; ".join(notes) or None
    run.output_tail = stdout[-4000:]
    return run


# ----------------------------------------------------------------------------- running


def run_env(python: Path, extra_bin: Sequence[Path] = ()) -> dict[str, str]:
    """The whole environment a test run sees: nothing of the host's but a PATH."""
    path = [str(python.parent), *(str(p) for p in extra_bin), "/usr/local/bin", "/usr/bin", "/bin"]
    return {
        "PATH": os.pathsep.join(dict.fromkeys(path)),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONHASHSEED": "0",
        # No .pyc next to the sources: checkouts within one second of each other can have
        # the same mtime and size, and a stale .pyc would test the wrong code.
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PY_COLORS": "0",
        "NO_COLOR": "1",
        "PIP_NO_INDEX": "1",
        "PIP_CONFIG_FILE": os.devnull,
    }


_INI_CANDIDATES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def _has_own_config(worktree: Path, files: Sequence[str]) -> bool:
    """Whether pytest will find a config file inside the checkout. If not, it would walk on
    upwards and might pick up a config of whatever folder holds CRA_HOME."""
    dirs = {worktree}
    for f in files:
        d = (worktree / f).parent
        while d != worktree and worktree in d.parents:
            dirs.add(d)
            d = d.parent
    for d in dirs:
        for name in _INI_CANDIDATES:
            p = d / name
            if not p.is_file():
                continue
            if name in {"pytest.ini", ".pytest.ini", "pyproject.toml"}:
                return True
            text = p.read_text(encoding="utf-8", errors="replace")
            if (name == "tox.ini" and "[pytest]" in text) or (name == "setup.cfg" and "[tool:pytest]" in text):
                return True
    return False


def pytest_argv(python: Path, worktree: Path, files: Sequence[str], run_dir: Path) -> list[str]:
    argv = [
        str(python), "-m", "pytest",
        "-p", "no:cacheprovider",  # nothing written into the checkout between runs
        "-p", "no:randomly",  # a fixed order: random order makes flaky tasks
        "-rA", "--continue-on-collection-errors",
        f"--rootdir={worktree}",
        f"--junitxml={run_dir / 'junit' / JUNIT_NAME}",
    ]
    if not _has_own_config(worktree, files):
        ini = run_dir / "conf" / "pytest.ini"
        ini.parent.mkdir(parents=True, exist_ok=True)
        ini.write_text("[pytest]\n", encoding="utf-8")
        argv += ["-c", str(ini)]
    return [*argv, *files]


def _empty_dir(path: Path) -> None:
    """``path`` as an empty folder. Reused between runs rather than removed and made again:
    on a busy disk every rmdir costs milliseconds, and a run makes several."""
    path.mkdir(parents=True, exist_ok=True)
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def run_pytest(
    python: Path,
    worktree: Path,
    files: Sequence[str],
    *,
    run_dir: Path,
    env: dict[str, str],
    limits: object | None = None,
    readonly: Sequence[Path] = (),
    level: str | None = None,
) -> TestRun:
    """Run pytest on ``files`` in the sandbox and read its verdicts.

    ``run_dir`` is a folder outside the checkout (reusable); the junit report goes to its
    ``junit/``, emptied first and the only writable path besides the checkout, the
    sandbox's HOME and TMPDIR to its ``scratch/``, a stand-in ``pytest.ini`` (see
    ``_has_own_config``) to ``conf/``.
    """
    from harness.sandbox import Limits, run_sandboxed

    junit_dir = run_dir / "junit"
    _empty_dir(junit_dir)
    scratch = run_dir / "scratch"
    scratch.mkdir(exist_ok=True)
    conf = run_dir / "conf"
    conf.mkdir(exist_ok=True)
    argv = pytest_argv(python, worktree, files, run_dir)
    result = run_sandboxed(
        argv, cwd=worktree, writable=[worktree, junit_dir], readonly=[*readonly, conf], env=env,
        limits=limits if isinstance(limits, Limits) else Limits(), scratch=scratch, level=level,
    )
    # Only stdout is read for the summary: pytest writes its report there.
    run = interpret(
        result.returncode, result.stdout, junit_dir, files,
        timed_out=result.timed_out, output_truncated=result.output_truncated,
    )
    run.output_tail = (result.stdout[-3000:] + "\n" + result.stderr[-1000:]).strip()
    run.duration_s = result.duration_s
    run.isolation = result.isolation
    if result.reason and result.reason not in (run.note or ""):
        run.note = f"{run.note}; {result.reason}" if run.note else result.reason
    return run
