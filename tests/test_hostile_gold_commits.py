"""Hostile commits under gold validation, each named after its attack.

A real repo in a CRA_HOME outside /tmp, a real offline environment, real sandboxed pytest
with cra's oracle plugin. Each commit's test side or source attacks the host or the
oracle; each test states the outcome cra must record and that the planted secret (in the
user's home and in another worktree slot) reached no log, database row or triple.
The environment comes from a real wheelhouse (``pip download`` once: network).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from hostile_world import MONKEYPATCH_REPORTS, REPO, World, build_world, snoop_test
from test_validation import FIXED, TEST_ADD

from appliance.db.tasks import get_task
from harness.sandbox import Limits, available_levels
from harness.testrun import run_env, run_pytest
from harness.validation import ValidationOptions, validate_repo

network = pytest.mark.network
pytestmark = pytest.mark.skipif("bwrap" not in available_levels(),
                                reason="hiding the host needs the bwrap sandbox level")
TIMEOUT_S = 20.0

CONFTEST_FLIP = textwrap.dedent("""\
    import pytest


    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        outcome = yield
        report = outcome.get_result()
        import calc
        if getattr(calc, "FAST", False) and report.failed:  # only with the new source
            report.outcome = "passed"
            report.longrepr = None
""")

ATEXIT_FORGERY = textwrap.dedent("""\
    def add(a, b):
        return a - b


    import atexit, os, sys


    def _forge():
        for arg in sys.argv:
            if arg.startswith("--junitxml="):
                with open(arg.split("=", 1)[1], "w") as fh:
                    fh.write('<testsuites><testsuite name="pytest" tests="2">'
                             '<testcase classname="tests.test_calc" name="test_zero"/>'
                             '<testcase classname="tests.test_calc" name="test_add"/>'
                             '</testsuite></testsuites>')
        os.write(1, b"\\n=========================== short test summary info ============================\\n"
                    b"PASSED tests/test_calc.py::test_zero\\n"
                    b"PASSED tests/test_calc.py::test_add\\n"
                    b"============================== 2 passed in 0.01s ===============================\\n")
        os._exit(0)


    atexit.register(_forge)
""")

IMPORT_MONKEYPATCH = "def add(a, b):\n    return a - b\n\n\n" + MONKEYPATCH_REPORTS

SCENARIOS = {
    "snoop": ("Fix add so it adds", {
        "calc/__init__.py": FIXED, "tests/test_calc.py": TEST_ADD, "tests/test_probe.py": "",
    }),
    "conftest_flip": ("Make add fast", {
        "calc/__init__.py": "def add(a, b):\n    return a - b\n\n\nFAST = True\n",
        "tests/test_calc.py": TEST_ADD, "conftest.py": CONFTEST_FLIP,
    }),
    "atexit_forgery": ("Report add's results", {
        "calc/__init__.py": ATEXIT_FORGERY, "tests/test_calc.py": TEST_ADD,
    }),
    "import_monkeypatch": ("Tidy add", {
        "calc/__init__.py": IMPORT_MONKEYPATCH, "tests/test_calc.py": TEST_ADD,
    }),
}


@pytest.fixture(scope="module")
def world(wheel_cache: Path):
    yield from build_world(wheel_cache, SCENARIOS, snoop=True)


@pytest.fixture(scope="module")
def validated(world: World) -> World:
    counts = validate_repo(world.home, world.db, REPO, workers=1,
                           options=ValidationOptions(limits=Limits(timeout_s=TIMEOUT_S)))
    assert sum(counts.values()) == len(SCENARIOS), counts
    return world


def _task(world: World, key: str):
    return get_task(world.db, REPO, world.shas[key])


@network
def test_cra_home_is_outside_tmp_for_these_cases(world: World) -> None:
    assert not str(world.home.root).startswith("/tmp/")
    assert world.home_secret.parent == Path.home()


@network
def test_attack_reads_the_host_home_cra_home_other_slot_and_harness_environ(validated: World) -> None:
    task = _task(validated, "snoop")
    assert task.status == "valid", task.reason
    assert task.isolation == "bwrap"
    probe = "tests/test_probe.py::test_nothing_of_the_host_is_readable"
    assert probe in task.pass_to_pass, task.outcomes
    assert task.fail_to_pass == ["tests/test_calc.py::test_add"]
    assert validated.leaks() == []


@network
def test_the_snoop_probe_does_read_the_host_where_the_sandbox_cannot_hide_it(
    validated: World, tmp_path: Path,
) -> None:
    """The probe is not blind: below bwrap it finds the secrets (so its pass above means
    something); its output stays in this test's own tmp folder."""
    wt = tmp_path / "wt"
    (wt / "tests").mkdir(parents=True)
    (wt / "tests" / "test_probe.py").write_text(snoop_test(validated))
    (wt / "pytest.ini").write_text("[pytest]\n")
    run = run_pytest(Path(sys.executable), wt, ["tests/test_probe.py"], run_dir=tmp_path / "run",
                     env=run_env(Path(sys.executable)) | {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
                     level="rlimits")
    assert run.outcomes == {"tests/test_probe.py::test_nothing_of_the_host_is_readable": "failed"}
    assert validated.token in run.output_tail


@network
def test_attack_conftest_hook_flips_a_failure_into_a_pass(validated: World) -> None:
    task = _task(validated, "conftest_flip")
    assert task.status == "grading_conflict", task.reason
    assert "tests/test_calc.py::test_add ended failed but its report says passed" in task.reason
    assert "a hook rewrote the report" in task.reason
    assert task.fail_to_pass == [] and validated.leaks() == []


@network
def test_attack_atexit_rewrites_junit_prints_a_summary_and_exits_zero(validated: World) -> None:
    task = _task(validated, "atexit_forgery")
    assert task.status == "grading_conflict", task.reason
    assert "closing event says exit status 1, the process exited 0" in task.reason
    assert "junit report disagrees with the streamed outcomes" in task.reason
    assert task.fail_to_pass == [] and validated.leaks() == []


@network
def test_attack_source_monkeypatches_pytest_reporting_at_import(validated: World) -> None:
    task = _task(validated, "import_monkeypatch")
    assert task.status == "grading_conflict", task.reason
    assert "test_add ended failed but its report says passed" in task.reason
    assert task.fail_to_pass == [] and validated.leaks() == []
