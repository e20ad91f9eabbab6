"""Small, separately testable pieces of a test run: split a commit, run pytest, read results.

The shape follows SWE-bench: a commit becomes a ``test_patch`` (its changes to test files)
and a ``gold_patch`` (the rest); pytest runs only the commit's own test files, in the
sandbox.

Results are read as if the code under test were hostile, because later it is (model
output). The verdict comes from cra's own pytest plugin (``harness/oracle_plugin``),
loaded with ``-p`` before any project code, which streams every phase's outcome through a
pipe the harness opened (``read_stream``): a line, once written, is out of the process, so
nothing that runs later (an ``atexit`` hook, ``os._exit``) can take it back. JUnit, the
``-rA`` short summary with pytest's closing counts, and the exit status are kept as
cross-checks, each guard named after the attack it stops:

* *conftest hook flips the verdict*: the plugin sends each phase's raw outcome (as the
  phase ended) and the report pytest logged for it; a failure reported as a pass, or the
  other way round, disagrees (xfail's documented rewrites excepted).
* *forged JUnit / summary / exit status* (an ``atexit`` hook rewriting the JUnit file,
  printing a matching summary and counts, ending with ``os._exit(0)``): each must agree
  with the streamed outcomes and the streamed exit status.
* *fake PASSED lines*: only the last short-summary section is read, and its per-outcome
  line counts must match pytest's closing counts line.
* *planted report files*: the JUnit file is written to a fresh folder outside the checkout
  and must be the only thing there.

Any disagreement is a *grading conflict* (``TestRun.conflict``, the disagreement in
words): the run is untrusted and every test in it counts as ``error``, so a forgery can
only turn a pass into a failure; validation records the task ``grading_conflict`` and an
agent run never counts it resolved.
"""

from __future__ import annotations

import json
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
from harness.oracle_plugin import FD_ENV, PLUGIN, PLUGIN_DIR
from harness.pytest_config import oracle_options

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


# ----------------------------------------------------------------------------- the stream


@dataclass
class Stream:
    """What cra's pytest plugin reported through the channel (``read_stream``).

    ``outcomes``: {node id: outcome} as the logged reports say (a failed setup or teardown
    is ``error``, an xfail ``skipped``, a collection error ``error`` on the module);
    ``exitstatus``: from the ``finish`` event, None when pytest never finished;
    ``conflicts``: each disagreement between a phase's raw outcome and its report, and
    anything in the stream that pytest cannot have written (duplicates, garbage).
    """

    started: bool = False
    exitstatus: int | None = None
    outcomes: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)


# (raw, report) pairs xfail legitimately rewrites: an expected failure is reported skipped
# (wasxfail), a strict unexpected pass failed.
_XFAIL_REWRITES = {("failed", "skipped"), ("xfailed", "skipped"), ("passed", "failed")}


def _phase_outcome(when: str, outcome: str) -> str | None:
    """What one logged report means for its test: None for a setup or teardown that passed."""
    if outcome == "rerun":
        return None
    if when == "call":
        return outcome
    if outcome == "failed":
        return "error"
    return "skipped" if outcome == "skipped" else None


def read_stream(data: bytes) -> Stream:
    """The plugin's events, checked: raw outcomes against reports, one report per phase."""
    stream = Stream()
    raws: dict[tuple[str, str], list[dict[str, object]]] = {}
    reported: set[tuple[str, str]] = set()
    contributions: dict[str, list[str]] = {}
    for n, line in enumerate(data.splitlines(), 1):
        try:
            event = json.loads(line)
            kind = event["event"]
        except (ValueError, TypeError, KeyError):
            stream.conflicts.append(f"line {n} of the oracle stream is not an event pytest wrote")
            continue
        if kind == "start":
            if stream.started:
                stream.conflicts.append("the oracle stream starts twice")
            stream.started = True
        elif kind == "finish":
            if stream.exitstatus is not None:
                stream.conflicts.append("the oracle stream finishes twice")
            stream.exitstatus = int(event.get("exitstatus", -1))
        elif kind == "collect":
            node = str(event.get("node", ""))
            contributions.setdefault(node, []).append(
                "error" if event.get("outcome") == "failed" else "skipped")
        elif kind == "raw":
            key = (str(event.get("node")), str(event.get("when")))
            raws.setdefault(key, []).append(event)
        elif kind == "report":
            node, when = str(event.get("node")), str(event.get("when"))
            outcome, wasxfail = str(event.get("outcome")), bool(event.get("wasxfail"))
            meaning = _phase_outcome(when, outcome)
            if meaning is not None:
                contributions.setdefault(node, []).append(meaning)
            if event.get("sub"):  # a subtest's report: no phase of its own
                continue
            pending = raws.get((node, when))
            if not pending:
                stream.conflicts.append(f"{node} ({when}) was reported {outcome} without "
                                        "running through pytest's phase hooks")
                continue
            raw = pending.pop(0)
            raw_outcome = str(raw.get("outcome"))
            if outcome == "rerun":
                continue
            if (node, when) in reported:
                stream.conflicts.append(f"{node} ({when}) was reported twice")
            reported.add((node, when))
            xfail = wasxfail or bool(raw.get("xfail_marker")) or raw_outcome == "xfailed"
            if raw_outcome != outcome and not (xfail and (raw_outcome, outcome) in _XFAIL_REWRITES):
                stream.conflicts.append(
                    f"the {when} phase of {node} ended {raw_outcome} but its report says "
                    f"{outcome}: a hook rewrote the report")
        else:
            stream.conflicts.append(f"unknown oracle event {kind!r}")
    unreported = sorted(f"{node} ({when})" for (node, when), left in raws.items() if left)
    if unreported and stream.exitstatus is not None:
        stream.conflicts.append(f"phases that ran but were never reported: {', '.join(unreported[:3])}")
    for node, outs in contributions.items():
        worst = outs[0]
        for o in outs[1:]:
            worst = _worst(worst, o)
        stream.outcomes[node] = worst
    return stream


# ----------------------------------------------------------------------------- one run


@dataclass
class TestRun:
    """One pytest run's verdict per test, and how far it can be believed."""

    __test__ = False  # not a pytest test class, whatever its name

    outcomes: dict[str, str] = field(default_factory=dict)
    returncode: int | None = None
    timed_out: bool = False
    duration_s: float = 0.0
    source: str = "none"  # stream | junit | summary | none
    trusted: bool = True
    note: str | None = None
    conflict: str | None = None  # the disagreement between the oracle's sources, in words
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
    return not _differences(junit, summary)


def _differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Tests whose pass/fail/error outcome differs between two sources (skips are quiet:
    JUnit and the summary report them differently)."""
    loud = {"passed", "failed", "error"}
    x = {k: v for k, v in a.items() if v in loud}
    y = {k: v for k, v in b.items() if v in loud}
    return [f"{k}: {x.get(k, 'absent')} vs {y.get(k, 'absent')}"
            for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]


def _exit_conflict(returncode: int | None, outcomes: dict[str, str]) -> str | None:
    failing = any(v in FAILING for v in outcomes.values())
    if returncode == 0 and failing:
        return "exit status 0 with failing tests"
    if returncode == 1 and not failing:
        return "exit status 1 with no failing test"
    if returncode == 5 and any(v == "passed" for v in outcomes.values()):
        return "exit status 5 (no tests) with passing tests"
    return None


def interpret(
    returncode: int | None,
    stdout: str,
    junit_dir: Path,
    run_files: Sequence[str],
    *,
    timed_out: bool = False,
    output_truncated: bool = False,
    stream: Stream | None = None,
) -> TestRun:
    """Combine the oracle stream, JUnit, the short summary and the exit status into one
    ``TestRun``. ``stream`` None: a run without cra's plugin (JUnit first, the summary as
    fallback); with it, the stream decides and every other source must agree with it."""
    run = TestRun(returncode=returncode, timed_out=timed_out)
    junit_path = junit_dir / JUNIT_NAME
    notes: list[str] = []
    conflicts: list[str] = []
    try:
        extra = sorted(p.name for p in junit_dir.iterdir() if p.name != JUNIT_NAME)
    except OSError:
        extra = []
    if extra:
        conflicts.append(f"unexpected files beside the junit report: {', '.join(extra[:5])}")
    junit = parse_junit(junit_path, run_files)
    if junit_path.exists() and junit is None:
        conflicts.append("junit report unreadable")
    summary = None if output_truncated else parse_summary(stdout, run_files)
    if summary is not None and not summary.consistent:
        conflicts.append("short summary does not match pytest's closing counts")
    ran = not timed_out and returncode in (0, 1, 5)

    if stream is not None and stream.started and stream.exitstatus is not None:
        run.source, run.outcomes = "stream", stream.outcomes
        conflicts += stream.conflicts
        if stream.exitstatus != returncode and not timed_out:
            conflicts.append(f"pytest's closing event says exit status {stream.exitstatus}, "
                             f"the process exited {returncode}")
        if junit is None and not junit_path.exists():
            conflicts.append("pytest finished but wrote no junit report")
        elif junit is not None and (diffs := _differences(stream.outcomes, junit)):
            conflicts.append("junit report disagrees with the streamed outcomes: "
                             + "; ".join(diffs[:3]))
        if summary is not None and summary.consistent and (
                diffs := _differences(stream.outcomes, summary.outcomes)):
            conflicts.append("short summary disagrees with the streamed outcomes: "
                             + "; ".join(diffs[:3]))
    elif stream is not None and ran:
        # pytest exited as if it had run tests, yet the plugin never started or finished:
        # something kept it out or cut it short.
        what = "never started" if not stream.started else "never saw the session finish"
        conflicts.append(f"cra's oracle plugin {what} but pytest exited {returncode}")
        conflicts += stream.conflicts
    elif stream is None:
        if junit is not None:
            run.source, run.outcomes = "junit", junit
            if summary is not None and summary.consistent and not _agree(junit, summary.outcomes):
                conflicts.append("junit report and short summary disagree")
        elif summary is not None and summary.consistent:
            run.source, run.outcomes = "summary", summary.outcomes
    if run.source != "none" and not timed_out:
        why = _exit_conflict(returncode, run.outcomes)
        if why:
            conflicts.append(why)
    run.errored_files = sorted(
        node for node, v in run.outcomes.items() if v == "error" and "::" not in node and node in run_files
    )
    if conflicts:
        run.trusted = False
        run.conflict = "; ".join(conflicts)
        run.outcomes = {k: "error" for k in run.outcomes}
        notes.append(run.conflict)
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
    """The oracle's pytest command line, all in one place. cra's plugin comes first: ``-p``
    modules are imported while the command line is read, before conftests and entry points."""
    argv = [
        str(python), "-m", "pytest",
        "-p", PLUGIN,
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
    else:  # the project's addopts, less what would cut or reshape this run
        argv += oracle_options(worktree, files).args
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
    """Run pytest on ``files`` in the sandbox, with cra's oracle plugin, and read its verdicts.

    ``run_dir`` is a folder outside the checkout (reusable); the junit report goes to its
    ``junit/``, emptied first and the only writable path besides the checkout, the
    sandbox's HOME and TMPDIR to its ``scratch/``, a stand-in ``pytest.ini`` (see
    ``_has_own_config``) to ``conf/``. The plugin's folder is bound read-only and put on
    ``PYTHONPATH``; its events come back through the sandbox's channel.
    """
    from harness.sandbox import Limits, run_sandboxed

    junit_dir = run_dir / "junit"
    _empty_dir(junit_dir)
    scratch = run_dir / "scratch"
    scratch.mkdir(exist_ok=True)
    conf = run_dir / "conf"
    conf.mkdir(exist_ok=True)
    argv = pytest_argv(python, worktree, files, run_dir)
    env = {**env, "PYTHONPATH": os.pathsep.join(
        p for p in (str(PLUGIN_DIR), env.get("PYTHONPATH", "")) if p)}
    result = run_sandboxed(
        argv, cwd=worktree, writable=[worktree, junit_dir],
        readonly=[*readonly, conf, PLUGIN_DIR], env=env,
        limits=limits if isinstance(limits, Limits) else Limits(), scratch=scratch, level=level,
        pythons=[python], channel_env=FD_ENV,
    )
    stream = read_stream(result.channel)
    if result.channel_truncated:
        stream.conflicts.append("the oracle stream overflowed its cap")
    # Only stdout is read for the summary: pytest writes its report there.
    run = interpret(
        result.returncode, result.stdout, junit_dir, files,
        timed_out=result.timed_out, output_truncated=result.output_truncated, stream=stream,
    )
    run.output_tail = (result.stdout[-3000:] + "\n" + result.stderr[-1000:]).strip()
    run.duration_s = result.duration_s
    run.isolation = result.isolation
    if result.reason and result.reason not in (run.note or ""):
        run.note = f"{run.note}; {result.reason}" if run.note else result.reason
    return run
