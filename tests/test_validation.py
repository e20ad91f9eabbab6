"""Gold-patch validation end to end: a real repo, a real offline env, real sandboxed pytest.

One scenario repo (``calc``) is built per module: a base commit and, branching off it,
one commit per scenario, each registered as a kept commit whose parent is the base. The
repo is validated once (interrupted after the first task, then resumed), and each test
reads the task its scenario produced. Attack tests validate the "fix add" commit again
with a hostile patch in place of its gold patch: the verdict must not change to valid.

The environment comes from a real wheelhouse: ``pip download`` of pytest and setuptools
(network, once per session), locked with hashes, installed offline.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from repo_builder import RepoBuilder
from wheels import make_lock

from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import get_commits, get_eras, register_repo
from appliance.db.tasks import get_task, list_tasks, task_counts
from appliance.records import CommitRecord, EraRecord, FileChange, RepoRecord
from harness.sandbox import Limits
from harness.testrun import TestRun, diff
from harness.validation import (
    GeneratedTest,
    TaskContext,
    ValidationOptions,
    classify,
    supplement,
    validate_commit,
    validate_repo,
)

network = pytest.mark.network
TIMEOUT_S = 12.0  # per pytest run; a normal run of these tests takes about a second


# ----------------------------------------------------------------------------- classify (no env)


def _run(outcomes: dict[str, str], errored: list[str] | None = None, trusted: bool = True) -> TestRun:
    return TestRun(outcomes=outcomes, returncode=1, source="junit", trusted=trusted,
                   errored_files=errored or [])


def test_classify_fail_to_pass_pass_to_pass_and_missing_before() -> None:
    before = _run({"t.py::a": "failed", "t.py::b": "passed", "u.py": "error"}, errored=["u.py"])
    after = _run({"t.py::a": "passed", "t.py::b": "passed", "u.py::c": "passed", "t.py::new": "passed"})
    v = classify(before, after, after)
    assert v.status == "valid"
    assert v.fail_to_pass == ["t.py::a", "t.py::new", "u.py::c"]
    assert v.pass_to_pass == ["t.py::b"]


def test_classify_flaky_candidates_are_left_out() -> None:
    before = _run({"t.py::a": "failed", "t.py::b": "failed"})
    v = classify(before, _run({"t.py::a": "passed", "t.py::b": "passed"}),
                 _run({"t.py::a": "failed", "t.py::b": "passed"}))
    assert v.status == "valid" and v.fail_to_pass == ["t.py::b"] and v.flaky == ["t.py::a"]
    v = classify(before, _run({"t.py::a": "passed"}), _run({"t.py::a": "failed"}))
    assert v.status == "flaky" and v.fail_to_pass == []


def test_classify_untrusted_after_run_never_yields_fail_to_pass() -> None:
    before = _run({"t.py::a": "failed"})
    forged = _run({"t.py::a": "error"}, trusted=False)
    v = classify(before, forged, forged)
    assert v.status == "no_fail_to_pass" and v.fail_to_pass == []


# ----------------------------------------------------------------------------- the tasks table (no env)


def _registered(db: Database, n: int = 3) -> list[CommitRecord]:
    commits = [
        CommitRecord(sha=f"{i:x}" * 40 if i < 16 else f"{i:040x}", parent="f" * 40,
                     author_date="2020-09-13T12:00:00+00:00", author_ts=1_600_000_000 + i * 86400,
                     title=f"Fix thing {i}", message=f"Fix thing {i}\n")
        for i in range(1, n + 1)
    ]
    rejected = CommitRecord(sha="e" * 40, parent=None, author_date="2020-09-13T12:00:00+00:00",
                            author_ts=1_600_000_000, title="wip", message="wip\n")
    rejected.reject("message", "too short")
    register_repo(db, RepoRecord("lib", "/src/lib", "a" * 40, "main", "3.11", "python -m pytest"),
                  [], [*commits, rejected])
    return commits


def test_tasks_round_trip_whole_with_non_utf8_patches(db: Database) -> None:
    from appliance.db.tasks import TaskRecord, save_task

    commits = _registered(db)
    patch = b"diff --git a/x.py b/x.py\n+caf\xe9 = 1\n".decode("utf-8", "surrogateescape")
    task = TaskRecord(repo="lib", sha=commits[0].sha, parent=commits[0].parent, status="valid",
                      instruction="Fix thing 1", test_patch=patch, gold_patch="+x\n",
                      test_files=["tests/test_x.py"], fail_to_pass=["tests/test_x.py::test_a"],
                      outcomes={"before": {"tests/test_x.py::test_a": "failed"}},
                      durations={"total": 1.5}, supplemented=True)
    save_task(db, task)
    got = get_task(db, "lib", commits[0].sha[:6])
    assert got.test_patch == patch and got.test_patch.encode("utf-8", "surrogateescape").endswith(b"\xe9 = 1\n")
    assert got.fail_to_pass == task.fail_to_pass and got.outcomes == task.outcomes and got.supplemented
    assert got.to_dict()["version"] == 1 and got.summary()["fail_to_pass"] == 1


def test_a_second_save_of_the_same_commit_keeps_one_row(db: Database) -> None:
    from appliance.db.tasks import TaskRecord, save_task

    commits = _registered(db)
    first = TaskRecord(repo="lib", sha=commits[0].sha, parent=None, status="valid", instruction="a")
    save_task(db, first)
    save_task(db, TaskRecord(repo="lib", sha=commits[0].sha, parent=None, status="timeout", instruction="b"))
    assert get_task(db, "lib", commits[0].sha).status == "valid"
    save_task(db, TaskRecord(repo="lib", sha=commits[0].sha, parent=None, status="timeout", instruction="b"),
              replace=True)
    assert get_task(db, "lib", commits[0].sha).status == "timeout"
    assert db.one("SELECT COUNT(*) FROM tasks")[0] == 1


def test_pending_commits_are_kept_ones_without_a_task_oldest_first(db: Database) -> None:
    from appliance.db.tasks import TaskRecord, pending_commits, save_task
    from appliance.errors import BadInput, NotFound

    commits = _registered(db)
    assert [c.sha for c in pending_commits(db, "lib")] == [c.sha for c in commits]
    save_task(db, TaskRecord(repo="lib", sha=commits[0].sha, parent=None, status="flaky", instruction="x"))
    assert [c.sha for c in pending_commits(db, "lib")] == [c.sha for c in commits[1:]]
    assert [c.sha for c in pending_commits(db, "lib", limit=1)] == [commits[1].sha]
    assert [c.sha for c in pending_commits(db, "lib", since_ts=commits[2].author_ts)] == [commits[2].sha]
    assert [c.sha for c in pending_commits(db, "lib", shas=[commits[2].sha[:8]])] == [commits[2].sha]
    assert len(pending_commits(db, "lib", include_done=True)) == 3
    with pytest.raises(NotFound, match="kept commit"):
        pending_commits(db, "lib", shas=["e" * 10])  # rejected, so not a task candidate
    with pytest.raises(BadInput, match="not a commit sha"):
        pending_commits(db, "lib", shas=["xyz"])
    counts = task_counts(db, "lib")
    assert counts["flaky"] == 1 and sum(counts.values()) == 1 and next(iter(counts)) == "valid"


def test_parse_since_takes_dates_in_utc() -> None:
    from appliance.errors import BadInput
    from harness.validation import parse_since

    assert parse_since("2020-09-13") == 1_599_955_200
    assert parse_since("2020-09-13T02:00:00+02:00") == 1_599_955_200
    assert parse_since(None) is None and parse_since(5) == 5
    with pytest.raises(BadInput, match="YYYY-MM-DD"):
        parse_since("last tuesday")


# ----------------------------------------------------------------------------- fixtures


def make_package(home: Home, name: str, wheels: Path) -> Path:
    wheelhouse = home.wheelhouse(name)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    for whl in wheels.glob("*.whl"):
        os.link(whl, wheelhouse / whl.name)
    return wheelhouse


PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "calc"
version = "0.1"

[tool.setuptools]
packages = ["calc"]
"""
BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TESTS = "from calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n"
TEST_ADD = TESTS + "\n\ndef test_add():\n    assert add(2, 3) == 5\n"


@dataclass
class Scenarios:
    home: Home
    db: Database
    base: str
    shas: dict[str, str]
    interrupted_rows: int
    second: dict[str, int]
    third: dict[str, int]
    src: RepoBuilder


def _scenario_commits(src: RepoBuilder) -> tuple[str, dict[str, str]]:
    base = src.commit("Start calc", {
        "pyproject.toml": PYPROJECT, "calc/__init__.py": BUGGY, "tests/test_calc.py": TESTS,
        "conftest.py": "# the project's own conftest\n",
    })
    shas: dict[str, str] = {}

    def scenario(key: str, message: str, files: dict[str, str]) -> None:
        src.git("checkout", "-q", "-B", key, base)
        shas[key] = src.commit(message, files)

    scenario("valid", "Fix add so it adds", {"calc/__init__.py": FIXED, "tests/test_calc.py": TEST_ADD})
    scenario("no_f2p", "Document add in its docstring", {
        "calc/__init__.py": 'def add(a, b):\n    """a plus b"""\n    return a - b\n',
        "tests/test_calc.py": TESTS + "\n\ndef test_add_zero_right():\n    assert add(5, 0) == 5\n",
    })
    scenario("breaks_build", "Move the build to a back-end nobody packaged", {
        "pyproject.toml": PYPROJECT.replace('"setuptools>=64"', '"no-such-backend>=1"')
                                   .replace("setuptools.build_meta", "no_such_backend"),
        "calc/__init__.py": FIXED, "tests/test_calc.py": TEST_ADD,
    })
    scenario("timeout", "Retry add until the network answers", {
        "calc/__init__.py": FIXED,
        "tests/test_calc.py": TESTS + "\n\ndef test_hangs():\n    import time\n    time.sleep(3600)\n",
    })
    # Outcome depends on which run this is (the run's junit path), not on the code: the
    # deterministic stand-in for a test that depends on time or ordering.
    scenario("flaky", "Make add fast on the second call", {
        "calc/__init__.py": FIXED,
        "tests/test_calc.py": TESTS + (
            "\n\ndef test_sometimes():\n    import sys\n"
            "    assert 'after1' in ' '.join(sys.argv)\n"
        ),
    })
    scenario("no_wheel", "Use attrs for the calculator state", {
        "calc/__init__.py": FIXED, "tests/test_calc.py": TEST_ADD,
    })
    scenario("needs_tests", "Add mul for products", {
        "calc/__init__.py": BUGGY + "\n\ndef mul(a, b):\n    return a * b\n",
        "tests/test_calc.py": TESTS + "\n# mul is tested elsewhere\n",
    })
    # Hostile replacements for the "valid" commit's gold patch (never registered as commits).
    scenario("attack_conftest", "Force every test to pass", {
        "conftest.py": textwrap.dedent("""\
            import pytest

            @pytest.hookimpl(hookwrapper=True)
            def pytest_runtest_makereport(item, call):
                outcome = yield
                report = outcome.get_result()
                report.outcome = "passed"
        """),
    })
    scenario("attack_test_edit", "Make the failing test pass", {
        "tests/test_calc.py": TEST_ADD.replace("assert add(2, 3) == 5", "assert True"),
    })
    scenario("attack_fake_summary", "Report success", {
        "calc/__init__.py": BUGGY + textwrap.dedent("""\
            import atexit, os

            def _forge():
                os.write(1, b"=========================== short test summary info ===\\n"
                            b"PASSED tests/test_calc.py::test_add\\n"
                            b"PASSED tests/test_calc.py::test_zero\\n"
                            b"========================= 2 passed in 0.01s ===\\n")
                os._exit(0)

            atexit.register(_forge)
        """),
    })
    scenario("attack_junit", "Write a better report", {
        "calc/__init__.py": BUGGY + textwrap.dedent("""\
            import atexit, sys

            def _forge():
                for arg in sys.argv:
                    if arg.startswith("--junitxml="):
                        with open(arg.split("=", 1)[1], "w") as fh:
                            fh.write('<testsuites><testsuite>'
                                     '<testcase classname="tests.test_calc" name="test_add" file="tests/test_calc.py"/>'
                                     '<testcase classname="tests.test_calc" name="test_zero" file="tests/test_calc.py"/>'
                                     '</testsuite></testsuites>')

            atexit.register(_forge)
        """),
    })
    src.git("checkout", "-q", "main")
    return base, shas


REGISTERED = ("valid", "no_f2p", "breaks_build", "timeout", "flaky", "no_wheel", "needs_tests")


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> Scenarios:
    root = tmp_path_factory.mktemp("validation")
    home = Home(root / "home")
    src = RepoBuilder(root / "src")
    base, shas = _scenario_commits(src)
    shutil.copytree(src.path, home.repo_dir("calc"))
    wheelhouse = make_package(home, "calc", wheel_cache)
    good = make_lock(wheel_cache, wheelhouse / "locks" / "good.txt")
    bad = make_lock(wheel_cache, wheelhouse / "locks" / "bad.txt",
                    extra="attrs==25.3.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")

    def era(key: str, lock: Path) -> EraRecord:
        return EraRecord(key=key * 64, requirements=["pytest"], build_requires=["setuptools>=64"],
                         first_commit=base, lock_path=f"locks/{lock.name}",
                         lock_sha256=hashlib.sha256(lock.read_bytes()).hexdigest(), status="locked")

    commits = []
    for i, key in enumerate(REGISTERED):
        commits.append(CommitRecord(
            sha=shas[key], parent=base, author_date="2020-09-13T12:00:00+00:00",
            author_ts=1_600_000_000 + i, title=key, message=f"{key}\n\nscenario {key}\n",
            files=[FileChange("calc/__init__.py", 1, 1, "source"), FileChange("tests/test_calc.py", 2, 0, "test")],
            era_key=("b" if key == "no_wheel" else "a") * 64,
        ))
    db = Database(home.db_path)
    register_repo(db, RepoRecord("calc", str(src.path), base, "main", f"{sys.version_info[0]}.{sys.version_info[1]}",
                                 "python -m pytest"), [era("a", good), era("b", bad)], commits)
    options = ValidationOptions(limits=Limits(timeout_s=TIMEOUT_S))

    # A run stopped after its first task (Ctrl-C), then resumed, then run again.
    def stop_after_first(done: int, total: int, task: object) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        validate_repo(home, db, "calc", workers=2, progress=stop_after_first, options=options)
    interrupted_rows = db.one("SELECT COUNT(*) FROM tasks")[0]
    second = validate_repo(home, db, "calc", workers=2, options=options)
    third = validate_repo(home, db, "calc", workers=2, options=options)
    return Scenarios(home, db, base, shas, interrupted_rows, second, third, src)


def _task(s: Scenarios, key: str):
    return get_task(s.db, "calc", s.shas[key])


# ----------------------------------------------------------------------------- scenarios


@network
def test_a_commit_that_fixes_a_failing_test_is_a_valid_task(scenarios: Scenarios) -> None:
    task = _task(scenarios, "valid")
    assert task.status == "valid", task.reason
    assert task.fail_to_pass == ["tests/test_calc.py::test_add"]
    assert task.pass_to_pass == ["tests/test_calc.py::test_zero"]
    assert task.flaky == [] and task.test_files == ["tests/test_calc.py"]
    assert "return a + b" in task.gold_patch and "test_add" in task.test_patch
    assert "test_add" not in task.gold_patch and "return a + b" not in task.test_patch
    assert task.instruction.startswith("valid") and task.env_key
    assert task.outcomes["before"]["tests/test_calc.py::test_add"] == "failed"
    assert task.durations["pytest"] > 0 and task.durations["total"] >= task.durations["pytest"]
    assert Path(task.log_path).is_file() and "FAIL_TO_PASS" in Path(task.log_path).read_text()


@network
def test_a_commit_whose_new_test_already_passes_has_no_fail_to_pass(scenarios: Scenarios) -> None:
    task = _task(scenarios, "no_f2p")
    assert task.status == "no_fail_to_pass" and task.fail_to_pass == []
    assert "tests/test_calc.py::test_add_zero_right" in task.pass_to_pass


@network
def test_a_gold_patch_that_breaks_the_build_is_a_patch_error(scenarios: Scenarios) -> None:
    task = _task(scenarios, "breaks_build")
    assert task.status == "patch_error" and "editable install" in (task.reason or "")
    assert "no-such-backend" in Path(task.log_path).read_text()


@network
def test_a_test_that_hangs_is_a_timeout(scenarios: Scenarios) -> None:
    task = _task(scenarios, "timeout")
    assert task.status == "timeout"
    assert TIMEOUT_S <= task.durations["before"] < TIMEOUT_S + 30


@network
def test_a_test_whose_outcome_changes_between_runs_is_flaky(scenarios: Scenarios) -> None:
    task = _task(scenarios, "flaky")
    assert task.status == "flaky" and task.flaky == ["tests/test_calc.py::test_sometimes"]
    assert task.fail_to_pass == []


@network
def test_a_lock_the_wheelhouse_cannot_satisfy_is_an_env_error_with_the_log(scenarios: Scenarios) -> None:
    task = _task(scenarios, "no_wheel")
    assert task.status == "env_error" and "installing bad.txt" in (task.reason or "")
    assert "attrs" in Path(task.log_path).read_text()


@network
def test_an_interrupted_run_resumes_without_duplicates(scenarios: Scenarios) -> None:
    assert scenarios.interrupted_rows == 1
    assert sum(scenarios.second.values()) == len(REGISTERED) - 1
    assert sum(scenarios.third.values()) == 0
    assert scenarios.db.one("SELECT COUNT(*) FROM tasks")[0] == len(REGISTERED)
    counts = task_counts(scenarios.db, "calc")
    assert counts["valid"] == 1 and counts["timeout"] == 1 and counts["flaky"] == 1
    assert counts["no_fail_to_pass"] == 2 and counts["patch_error"] == 1 and counts["env_error"] == 1
    assert [t.sha for t in list_tasks(scenarios.db, "calc")] == [scenarios.shas[k] for k in REGISTERED]


# ----------------------------------------------------------------------------- attacks


def _attack(s: Scenarios, key: str):
    commit = next(c for c in get_commits(s.db, "calc") if c.sha == s.shas["valid"])
    era = next(e for e in get_eras(s.db, "calc") if e.key == commit.era_key)
    patch = diff(s.src.path, s.base, s.shas[key], [
        line for line in s.src.git("diff", "--name-only", s.base, s.shas[key]).split()
    ])
    options = ValidationOptions(limits=Limits(timeout_s=TIMEOUT_S))
    return validate_commit(s.home, "calc", commit, era, slot=5, options=options, gold_patch=patch)


@network
def test_attack_patch_edits_conftest_to_force_passes(scenarios: Scenarios) -> None:
    task = _attack(scenarios, "attack_conftest")
    assert task.status == "no_fail_to_pass", task.reason
    assert "restored from the commit: conftest.py" in Path(task.log_path).read_text()


@network
def test_attack_patch_edits_the_failing_test(scenarios: Scenarios) -> None:
    task = _attack(scenarios, "attack_test_edit")
    assert task.status == "no_fail_to_pass"
    assert task.outcomes["after1"]["tests/test_calc.py::test_add"] == "failed"
    assert "restored from the commit: tests/test_calc.py" in Path(task.log_path).read_text()


@network
def test_attack_patch_prints_fake_passed_lines_and_exit_status(scenarios: Scenarios) -> None:
    task = _attack(scenarios, "attack_fake_summary")
    assert task.status == "grading_conflict" and task.fail_to_pass == []
    assert "closing event says exit status 1, the process exited 0" in (task.reason or "")


@network
def test_attack_patch_overwrites_the_junit_file(scenarios: Scenarios) -> None:
    task = _attack(scenarios, "attack_junit")
    assert task.status == "grading_conflict" and task.fail_to_pass == []
    assert "junit report disagrees with the streamed outcomes" in (task.reason or "")


# ----------------------------------------------------------------------------- supplementation


class DiffReader:
    """A stand-in for the model-backed generator: writes a test for each function the gold
    patch adds, plus a test that proves nothing (which must be dropped)."""

    def __init__(self) -> None:
        self.seen: list[TaskContext] = []

    def generate(self, context: TaskContext) -> list[GeneratedTest]:
        self.seen.append(context)
        tests = [GeneratedTest("tests/test_generated_noop.py", "def test_noop():\n    pass\n"),
                 GeneratedTest("../outside.py", "def test_x():\n    pass\n")]
        if "def mul" in context.gold_patch:
            tests.append(GeneratedTest(
                "tests/test_generated_mul.py",
                "from calc import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n",
            ))
        return tests


@network
def test_supplement_keeps_only_generated_tests_that_fail_then_pass(scenarios: Scenarios) -> None:
    s = scenarios
    task = _task(s, "needs_tests")
    assert task.status == "no_fail_to_pass"
    commit = next(c for c in get_commits(s.db, "calc") if c.sha == s.shas["needs_tests"])
    era = next(e for e in get_eras(s.db, "calc") if e.key == commit.era_key)
    generator = DiffReader()
    options = ValidationOptions(limits=Limits(timeout_s=TIMEOUT_S))
    task = supplement(s.home, task, commit, era, generator, slot=6, options=options)
    assert generator.seen and generator.seen[0].source_files == ["calc/__init__.py"]
    assert task.status == "valid" and task.supplemented
    assert task.fail_to_pass == ["tests/test_generated_mul.py::test_mul"]
    assert "tests/test_generated_mul.py" in task.test_files
    assert "test_generated_noop" not in task.test_patch
    assert "+    assert mul(2, 3) == 6" in task.test_patch
    log = Path(task.log_path).read_text()
    assert "dropped ../outside.py" in log


@network
def test_supplement_leaves_a_task_alone_when_no_generated_test_helps(scenarios: Scenarios) -> None:
    s = scenarios
    task = _task(s, "no_f2p")
    commit = next(c for c in get_commits(s.db, "calc") if c.sha == s.shas["no_f2p"])
    era = next(e for e in get_eras(s.db, "calc") if e.key == commit.era_key)
    options = ValidationOptions(limits=Limits(timeout_s=TIMEOUT_S))
    after = supplement(s.home, task, commit, era, DiffReader(), slot=6, options=options)
    assert after.status == "no_fail_to_pass" and not after.supplemented


@network
def test_model_backed_supplement_keeps_the_module_that_fails_then_passes(scenarios: Scenarios) -> None:
    from appliance.llm.client import LLMClient
    from appliance.llm.providers.scripted import scripted
    from harness.testgen import ModelTestGenerator, extract_module

    s = scenarios
    task = _task(s, "needs_tests")
    commit = next(c for c in get_commits(s.db, "calc") if c.sha == s.shas["needs_tests"])
    era = next(e for e in get_eras(s.db, "calc") if e.key == commit.era_key)
    good = ("Here are the tests:\n```python\nfrom calc import mul\n\n\ndef test_mul_multiplies():\n"
            "    assert mul(4, 5) == 20\n```\nThey fail before the change.")
    garbage = "I cannot help with that ```python\ndef broken(:\n```"
    client = LLMClient(scripted(good, garbage), log=s.db)
    assert extract_module(garbage) is None
    options = ValidationOptions(limits=Limits(timeout_s=TIMEOUT_S))
    after = supplement(s.home, task, commit, era, ModelTestGenerator(client, samples=2), slot=6, options=options)
    assert after.status == "valid" and after.supplemented
    assert [t.split("::")[1] for t in after.fail_to_pass] == ["test_mul_multiplies"]
    calls = s.db.query("SELECT stage, status FROM llm_calls WHERE stage = 'testgen'")
    assert [tuple(r) for r in calls] == [("testgen", "ok")]


# ----------------------------------------------------------------------------- the project's own settings (no env)


def test_the_commit_split_follows_the_projects_pytest_settings(tmp_path: Path) -> None:
    from harness.validation import commit_split

    src = RepoBuilder(tmp_path / "money")
    parent = src.commit("Start", {"money/__init__.py": "X = 1\n", "checks/check_a.py": "def check_a():\n    pass\n",
                                  "pytest.ini": "[pytest]\npython_files = check_*.py\ntestpaths = checks\n"})
    sha = src.commit("Change X", {"money/__init__.py": "X = 2\n", "checks/check_a.py": "def check_b():\n    pass\n",
                                  "tools/check_release.py": "def check_release():\n    pass\n"})
    # what an older cra's miner recorded: the default rule calls both files source
    files = [FileChange("money/__init__.py", 1, 1, "source"), FileChange("checks/check_a.py", 1, 1, "source"),
             FileChange("tools/check_release.py", 2, 0, "other")]
    commit = CommitRecord(sha=sha, parent=parent, author_date="", author_ts=0, title="t", message="t", files=files)
    split, settings = commit_split(src.path, commit)
    assert settings.python_files == ("check_*.py",)
    assert split.run_files == ["checks/check_a.py"]  # tools/ lies outside testpaths
    assert "checks/check_a.py" in split.test_changed and "checks/check_a.py" not in split.gold_patch
    assert "money/__init__.py" in split.gold_patch


def test_a_generated_test_must_be_collected_by_the_projects_names() -> None:
    from harness.pytest_config import DEFAULT, parse_config
    from harness.validation import _collects_a_test

    checks = parse_config("pytest.ini", "[pytest]\npython_functions = check_\npython_classes = Check\n")
    assert checks is not None
    test_style = "def test_one():\n    pass\n\n\nclass TestX:\n    def test_two(self):\n        pass\n"
    assert _collects_a_test(test_style, DEFAULT)
    assert not _collects_a_test(test_style, checks)  # pytest would collect nothing here
    assert _collects_a_test("class CheckX:\n    def check_it(self):\n        pass\n", checks)
    assert not _collects_a_test("def check_(:\n", checks)
