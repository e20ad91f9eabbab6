"""Splitting commits and reading pytest's verdicts, including from hostile test code.

The parsing tests feed real pytest output shapes; the run tests start real pytest (cra's
own, so no network) in the real sandbox on real files. Attack tests are named after the
attack: each must end with the forged pass *not* counted.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from repo_builder import RepoBuilder

from harness.testrun import (
    interpret,
    is_runnable_test,
    is_test_file,
    junit_node_id,
    parse_junit,
    parse_summary,
    patch_paths,
    read_stream,
    run_env,
    run_pytest,
    split_commit,
)

PYTHON = Path(sys.executable)
PYTHON_DIRS = sorted({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()})
# cra's own venv has pytest plugins (hypothesis) that take seconds to import on a busy box.
FAST_ENV = run_env(PYTHON) | {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}

REAL_SUMMARY = """\
tests/test_a.py ..F                                                      [100%]
=================================== FAILURES ===================================
___________________________________ test_c ____________________________________
E   assert 1 == 2
=========================== short test summary info ============================
PASSED tests/test_a.py::TestX::test_p[a - b]
PASSED tests/test_a.py::test_b
SKIPPED [2] tests/test_a.py:7: nope
XFAIL tests/test_a.py::test_xf
ERROR tests/test_b.py
FAILED tests/test_a.py::test_c - assert 1 == 2
=================== 1 failed, 2 passed, 2 skipped, 1 xfailed, 1 error in 0.12s ===================
"""


# ----------------------------------------------------------------------------- rules


def test_test_side_rule_matches_the_miner() -> None:
    assert is_test_file("tests/helpers.py")
    assert is_test_file("conftest.py") and is_test_file("pkg/conftest.py")
    assert is_test_file("pkg/test_x.py") and is_test_file("pkg/x_test.py")
    assert is_test_file("pytest.ini")
    assert not is_test_file("pkg/core.py") and not is_test_file("README.md")
    assert is_runnable_test("tests/test_x.py") and is_runnable_test("pkg/x_test.py")
    assert not is_runnable_test("tests/conftest.py") and not is_runnable_test("tests/helpers.py")
    assert not is_runnable_test("tests/data/test_input.txt")


# ----------------------------------------------------------------------------- splitting


def test_split_commit_separates_test_and_gold_patches(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    parent = repo.commit("Start", {
        "lib/core.py": "X = 1\n", "tests/test_core.py": "def test_x():\n    pass\n",
        "tests/old_helper.py": "H = 1\n",
    })
    repo.delete("tests/old_helper.py")
    sha = repo.commit("Change X and its tests", {
        "lib/core.py": "X = 2\n", "conftest.py": "# root conftest\n",
        "tests/test_core.py": "def test_x():\n    assert True\n", "tests/data/in.txt": "data\n",
        "docs/index.md": "# docs\n",
    })
    split = split_commit(repo.path, parent, sha)
    assert split.test_changed == ["conftest.py", "tests/data/in.txt", "tests/old_helper.py", "tests/test_core.py"]
    assert split.source_changed == ["docs/index.md", "lib/core.py"]
    assert split.run_files == ["tests/test_core.py"]
    assert set(patch_paths(split.test_patch)) == set(split.test_changed)
    assert set(patch_paths(split.gold_patch)) == {"docs/index.md", "lib/core.py"}
    assert "X = 2" in split.gold_patch and "X = 2" not in split.test_patch


def test_a_rename_from_tests_into_the_library_splits_into_delete_and_add(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    body = "def helper():\n    return 'a fairly long body so git sees a rename'\n" * 3
    parent = repo.commit("Start", {"tests/util.py": body, "lib/__init__.py": ""})
    repo.git("mv", "tests/util.py", "lib/util.py")
    sha = repo.commit("Move util into the library")
    split = split_commit(repo.path, parent, sha)
    assert split.test_changed == ["tests/util.py"] and split.source_changed == ["lib/util.py"]
    assert "deleted file mode" in split.test_patch and "new file mode" in split.gold_patch


# ----------------------------------------------------------------------------- parsing


def test_summary_outcomes_come_from_the_last_section_with_counts_checked() -> None:
    summary = parse_summary(REAL_SUMMARY)
    assert summary is not None and summary.consistent
    assert summary.outcomes == {
        "tests/test_a.py::TestX::test_p[a - b]": "passed",
        "tests/test_a.py::test_b": "passed",
        "tests/test_a.py::test_xf": "skipped",
        "tests/test_b.py": "error",
        "tests/test_a.py::test_c": "failed",
    }
    assert summary.counts["failed"] == 1 and summary.counts["error"] == 1


def test_fake_passed_lines_printed_before_the_summary_are_not_read() -> None:
    forged = "PASSED tests/test_a.py::test_c\n" * 3 + REAL_SUMMARY
    summary = parse_summary(forged)
    assert summary is not None and summary.outcomes["tests/test_a.py::test_c"] == "failed"


def test_forged_summary_after_the_real_one_without_matching_counts_is_inconsistent() -> None:
    forged = REAL_SUMMARY + (
        "=========================== short test summary info ============================\n"
        "PASSED tests/test_a.py::test_c\n"
        "========================= 3 passed in 0.10s ==========================\n"
    )
    summary = parse_summary(forged)
    assert summary is not None and not summary.consistent


def test_a_failed_subtest_fails_its_test_and_counts_as_failed() -> None:
    output = (
        "=========================== short test summary info ============================\n"
        "PASSED tests/test_s.py::T::test_ok\n"
        "PASSED tests/test_s.py::T::test_v\n"
        "SUBFAILED[my msg - x] (i=1) tests/test_s.py::T::test_v - AssertionError: 1 == 1\n"
        "SUBFAILED[m] (i=1) tests/test_s.py::test_sub - assert 1 == 0\n"
        "SUBPASSED(i=0) tests/test_s.py::test_sub\n"
        "FAILED tests/test_s.py::test_sub - contains 1 failed subtest\n"
        "================ 3 failed, 2 passed, 1 subtests passed in 0.92s ================\n"
    )
    summary = parse_summary(output, ["tests/test_s.py"])
    assert summary is not None and summary.consistent
    assert summary.outcomes == {"tests/test_s.py::T::test_ok": "passed",
                                "tests/test_s.py::T::test_v": "failed",
                                "tests/test_s.py::test_sub": "failed"}


def test_no_summary_marker_means_no_summary() -> None:
    assert parse_summary("collected 0 items\n") is None


def test_junit_classnames_map_back_to_node_ids() -> None:
    files = ["tests/test_a.py", "tests/sub/test_b.py"]
    assert junit_node_id("tests.test_a.TestX.TestIn", "test_m[1]", None, files) == "tests/test_a.py::TestX::TestIn::test_m[1]"
    assert junit_node_id("tests.sub.test_b", "test_f", None, files) == "tests/sub/test_b.py::test_f"
    assert junit_node_id("tests.test_a", "test_f", "tests/test_a.py", files) == "tests/test_a.py::test_f"
    assert junit_node_id("", "tests.sub.test_b", None, files) == "tests/sub/test_b.py"


def test_junit_id_of_a_test_inherited_from_a_mixin_names_the_test_module() -> None:
    # xunit1's file attribute names where the method is defined (the mixin's module).
    assert junit_node_id("tests.test_mru.MRUTest", "test_pop", "tests/__init__.py",
                         ["tests/test_mru.py"]) == "tests/test_mru.py::MRUTest::test_pop"


def test_junit_keeps_the_worst_outcome_of_a_test_reported_twice(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(
        '<testsuites><testsuite>'
        '<testcase classname="tests.test_a" name="test_t" file="tests/test_a.py"/>'
        '<testcase classname="tests.test_a" name="test_t" file="tests/test_a.py"><error message="teardown"/></testcase>'
        '<testcase classname="tests.test_a" name="test_s" file="tests/test_a.py"><skipped/></testcase>'
        '<testcase classname="tests.test_a" name="test_f" file="tests/test_a.py"><failure/></testcase>'
        '</testsuite></testsuites>'
    )
    assert parse_junit(path, ["tests/test_a.py"]) == {
        "tests/test_a.py::test_t": "error", "tests/test_a.py::test_s": "skipped",
        "tests/test_a.py::test_f": "failed",
    }
    path.write_text("<not-junit/>")
    assert parse_junit(path, ["tests/test_a.py"]) is None
    path.write_text("<testsuites><testcase")
    assert parse_junit(path, ["tests/test_a.py"]) is None


def _junit_dir(tmp_path: Path, cases: str) -> Path:
    d = tmp_path / "junit"
    d.mkdir()
    (d / "junit.xml").write_text(f"<testsuites><testsuite>{cases}</testsuite></testsuites>")
    return d


PASS_C = '<testcase classname="tests.test_a" name="test_c" file="tests/test_a.py"/>'
FAIL_C = '<testcase classname="tests.test_a" name="test_c" file="tests/test_a.py"><failure/></testcase>'
SUMMARY_FAIL_C = (
    "=========================== short test summary info ============================\n"
    "FAILED tests/test_a.py::test_c - assert 0\n"
    "============================== 1 failed in 0.01s ===============================\n"
)


def test_exit_status_zero_with_a_failure_is_untrusted(tmp_path: Path) -> None:
    run = interpret(0, SUMMARY_FAIL_C, _junit_dir(tmp_path, FAIL_C), ["tests/test_a.py"])
    assert not run.trusted and run.outcomes == {"tests/test_a.py::test_c": "error"}
    assert "exit status 0" in (run.note or "")


def test_overwritten_junit_that_disagrees_with_the_summary_is_untrusted(tmp_path: Path) -> None:
    run = interpret(1, SUMMARY_FAIL_C, _junit_dir(tmp_path, PASS_C), ["tests/test_a.py"])
    assert not run.trusted and run.outcomes["tests/test_a.py::test_c"] == "error"


def test_extra_files_beside_the_junit_report_make_the_run_untrusted(tmp_path: Path) -> None:
    d = _junit_dir(tmp_path, FAIL_C)
    (d / "planted.xml").write_text("<testsuites/>")
    run = interpret(1, SUMMARY_FAIL_C, d, ["tests/test_a.py"])
    assert not run.trusted and "planted.xml" in (run.note or "")


def test_missing_junit_falls_back_to_the_summary(tmp_path: Path) -> None:
    d = tmp_path / "junit"
    d.mkdir()
    run = interpret(1, SUMMARY_FAIL_C, d, ["tests/test_a.py"])
    assert run.trusted and run.source == "summary" and run.completed
    assert run.outcomes == {"tests/test_a.py::test_c": "failed"}


def test_a_module_that_failed_to_import_errors_all_its_tests(tmp_path: Path) -> None:
    d = _junit_dir(tmp_path, '<testcase classname="" name="tests.test_b"><error/></testcase>')
    run = interpret(1, "", d, ["tests/test_b.py"])
    assert run.errored_files == ["tests/test_b.py"]
    assert run.status_of("tests/test_b.py::test_anything") == "error"
    assert run.status_of("tests/test_c.py::test_other") == "missing"


# ----------------------------------------------------------------------------- real runs


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    wt = tmp_path / "wt"
    for rel, text in files.items():
        p = wt / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    (wt / "pytest.ini").write_text("[pytest]\n")
    return wt


def _run(tmp_path: Path, wt: Path, files: list[str], **kw: object):
    return run_pytest(
        PYTHON, wt, files, run_dir=tmp_path / "run", env=FAST_ENV,
        readonly=PYTHON_DIRS, **kw,  # type: ignore[arg-type]
    )


def test_a_real_run_reports_each_test(tmp_path: Path) -> None:
    wt = _project(tmp_path, {
        "tests/test_a.py": """
            import pytest
            def test_ok(): pass
            def test_bad(): assert 1 == 2
            @pytest.mark.parametrize("v", ["x - y"])
            def test_param(v): pass
        """,
        "tests/test_b.py": "import not_a_module\n",
    })
    run = _run(tmp_path, wt, ["tests/test_a.py", "tests/test_b.py"])
    assert run.trusted and run.source == "stream" and run.completed and run.returncode == 1
    assert run.outcomes == {
        "tests/test_a.py::test_ok": "passed", "tests/test_a.py::test_bad": "failed",
        "tests/test_a.py::test_param[x - y]": "passed", "tests/test_b.py": "error",
    }
    assert run.errored_files == ["tests/test_b.py"]
    assert not any(p.name == "junit.xml" for p in wt.rglob("*")), "junit must be written outside"


def test_attack_test_prints_fake_passed_lines_to_the_real_stdout(tmp_path: Path) -> None:
    wt = _project(tmp_path, {"tests/test_a.py": """
        import os
        def test_bad():
            os.write(1, b"PASSED tests/test_a.py::test_bad\\n")
            print("PASSED tests/test_a.py::test_bad")
            assert False
    """})
    run = _run(tmp_path, wt, ["tests/test_a.py"])
    assert run.outcomes == {"tests/test_a.py::test_bad": "failed"}


def test_attack_atexit_forges_summary_and_exit_status(tmp_path: Path) -> None:
    wt = _project(tmp_path, {"tests/test_a.py": """
        import atexit, os
        def forge():
            os.write(1, b"=========================== short test summary info ===\\n"
                        b"PASSED tests/test_a.py::test_bad\\n"
                        b"=========================== 1 passed in 0.01s ===\\n")
            os._exit(0)
        atexit.register(forge)
        def test_bad(): assert False
    """})
    run = _run(tmp_path, wt, ["tests/test_a.py"])
    assert run.returncode == 0, "the forgery did set the exit status"
    assert not run.trusted and run.outcomes == {"tests/test_a.py::test_bad": "error"}


def test_attack_overwrites_the_junit_file_at_exit(tmp_path: Path) -> None:
    wt = _project(tmp_path, {"tests/test_a.py": """
        import atexit, sys
        def forge():
            path = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--junitxml=")][0]
            open(path, "w").write('<testsuites><testsuite><testcase classname="tests.test_a" '
                                  'name="test_bad" file="tests/test_a.py"/></testsuite></testsuites>')
        atexit.register(forge)
        def test_bad(): assert False
    """})
    run = _run(tmp_path, wt, ["tests/test_a.py"])
    assert not run.trusted and run.outcomes == {"tests/test_a.py::test_bad": "error"}


def test_attack_plants_a_second_report_beside_the_junit_file(tmp_path: Path) -> None:
    wt = _project(tmp_path, {"tests/test_a.py": """
        import os, sys
        def test_ok():
            path = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--junitxml=")][0]
            open(os.path.join(os.path.dirname(path), "other.xml"), "w").write("<testsuites/>")
    """})
    run = _run(tmp_path, wt, ["tests/test_a.py"])
    assert not run.trusted and "other.xml" in (run.note or "")


def test_a_hanging_test_is_a_timeout_not_a_crash(tmp_path: Path) -> None:
    from harness.sandbox import Limits

    wt = _project(tmp_path, {"tests/test_a.py": "import time\ndef test_hang():\n    time.sleep(3600)\n"})
    run = _run(tmp_path, wt, ["tests/test_a.py"], limits=Limits(timeout_s=3))
    assert run.timed_out and not run.completed and run.outcomes == {}


def test_a_checkout_without_pytest_config_does_not_read_the_folders_above(tmp_path: Path) -> None:
    # A pytest.ini above the checkout (say, in the folder holding CRA_HOME) must not apply.
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --definitely-not-an-option\n")
    wt = tmp_path / "wt"
    (wt / "tests").mkdir(parents=True)
    (wt / "tests" / "test_a.py").write_text("def test_ok(): pass\n")
    run = run_pytest(PYTHON, wt, ["tests/test_a.py"], run_dir=tmp_path / "run",
                     env=FAST_ENV, readonly=[*PYTHON_DIRS, tmp_path / "pytest.ini"])
    assert run.outcomes == {"tests/test_a.py::test_ok": "passed"}, run.output_tail


@pytest.mark.parametrize("rc,expected", [(1, False), (0, True)])
def test_exit_status_must_match_the_outcomes(tmp_path: Path, rc: int, expected: bool) -> None:
    d = _junit_dir(tmp_path, PASS_C)
    run = interpret(rc, "", d, ["tests/test_a.py"])
    assert run.trusted is expected


# ----------------------------------------------------------------------------- the oracle stream


def _events(*events: dict) -> bytes:
    import json

    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


START, FINISH1 = {"event": "start"}, {"event": "finish", "exitstatus": 1}


def _phase(node: str, when: str, raw: str, report: str, **extra: object) -> list[dict]:
    return [{"event": "raw", "node": node, "when": when, "outcome": raw, **extra},
            {"event": "report", "node": node, "when": when, "outcome": report,
             "wasxfail": bool(extra.pop("wasxfail", False))}]


def test_stream_outcomes_come_from_reports_with_setup_and_teardown_failures_as_errors() -> None:
    stream = read_stream(_events(
        START,
        *_phase("t.py::a", "setup", "passed", "passed"), *_phase("t.py::a", "call", "passed", "passed"),
        *_phase("t.py::a", "teardown", "failed", "failed"),
        *_phase("t.py::b", "setup", "skipped", "skipped"), *_phase("t.py::b", "teardown", "passed", "passed"),
        *_phase("t.py::c", "call", "failed", "skipped", wasxfail=True),
        {"event": "collect", "node": "u.py", "outcome": "failed"}, FINISH1,
    ))
    assert stream.conflicts == [] and stream.exitstatus == 1
    assert stream.outcomes == {"t.py::a": "error", "t.py::b": "skipped", "t.py::c": "skipped", "u.py": "error"}


def test_attack_report_hook_turns_a_failed_call_into_a_pass() -> None:
    stream = read_stream(_events(START, *_phase("t.py::a", "call", "failed", "passed"), FINISH1))
    assert stream.conflicts == [("the call phase of t.py::a ended failed but its report says passed: "
                                 "a hook rewrote the report")]


def test_attack_report_hook_turns_a_pass_into_a_failure_at_the_parent() -> None:
    stream = read_stream(_events(START, *_phase("t.py::a", "call", "passed", "failed"), FINISH1))
    assert "ended passed but its report says failed" in stream.conflicts[0]
    # ...which a strict xfail does legitimately
    ok = read_stream(_events(START, *_phase("t.py::a", "call", "passed", "failed", xfail_marker=True), FINISH1))
    assert ok.conflicts == []


def test_attack_forged_events_written_to_the_channel_are_conflicts() -> None:
    stream = read_stream(_events(START, *_phase("t.py::a", "call", "failed", "failed"))
                         + b"not json\n"
                         + _events({"event": "report", "node": "t.py::a", "when": "call", "outcome": "passed"},
                                   FINISH1, {"event": "finish", "exitstatus": 0}))
    assert any("not an event pytest wrote" in c for c in stream.conflicts)
    assert any("without running through pytest's phase hooks" in c for c in stream.conflicts)
    assert any("finishes twice" in c for c in stream.conflicts)


def test_legitimate_pytest_features_stream_without_conflict(tmp_path: Path) -> None:
    wt = _project(tmp_path, {
        "tests/test_a.py": """
            import unittest
            import pytest

            @pytest.fixture
            def broken():
                raise RuntimeError("setup")

            def test_ok(): pass
            def test_bad(): assert 1 == 2
            def test_setup_error(broken): pass
            @pytest.mark.skip(reason="no")
            def test_skipped(): pass
            def test_skips_itself(): pytest.skip("later")
            @pytest.mark.xfail
            def test_xfail(): assert 0
            @pytest.mark.xfail(strict=True)
            def test_xpass_strict(): pass
            @pytest.mark.xfail
            def test_xpass(): pass
            def test_imperative_xfail(): pytest.xfail("known")

            class TestCase(unittest.TestCase):
                def test_ut_ok(self): self.assertEqual(1, 1)
                def test_ut_bad(self): self.assertEqual(1, 2)
                @unittest.skip("no")
                def test_ut_skip(self): pass
                @unittest.expectedFailure
                def test_ut_xfail(self): self.assertEqual(1, 2)
        """,
    })
    run = _run(tmp_path, wt, ["tests/test_a.py"])
    assert run.conflict is None and run.trusted and run.source == "stream", run.note
    o = run.outcomes
    assert o["tests/test_a.py::test_ok"] == "passed" and o["tests/test_a.py::test_bad"] == "failed"
    assert o["tests/test_a.py::test_setup_error"] == "error"
    assert o["tests/test_a.py::test_xpass_strict"] == "failed" and o["tests/test_a.py::test_xpass"] == "passed"
    assert o["tests/test_a.py::TestCase::test_ut_bad"] == "failed"
    assert o["tests/test_a.py::TestCase::test_ut_ok"] == "passed"
    assert {o[f"tests/test_a.py::{n}"] for n in ("test_skipped", "test_skips_itself", "test_xfail",
                                                 "test_imperative_xfail", "TestCase::test_ut_skip",
                                                 "TestCase::test_ut_xfail")} == {"skipped"}


def test_attack_conftest_hook_flip_in_a_real_run_is_a_grading_conflict(tmp_path: Path) -> None:
    wt = _project(tmp_path, {
        "conftest.py": """
            import pytest
            @pytest.hookimpl(hookwrapper=True)
            def pytest_runtest_makereport(item, call):
                outcome = yield
                report = outcome.get_result()
                if report.failed:
                    report.outcome = "passed"
        """,
        "tests/test_a.py": "def test_bad():\n    assert False\n",
    })
    run = _run(tmp_path, wt, ["tests/test_a.py"])
    assert not run.trusted and run.outcomes == {"tests/test_a.py::test_bad": "error"}
    assert "tests/test_a.py::test_bad ended failed but its report says passed" in (run.conflict or "")


def test_attack_project_config_cannot_switch_the_plugin_off(tmp_path: Path) -> None:
    wt = _project(tmp_path, {"tests/test_a.py": "def test_ok(): pass\n"})
    (wt / "pytest.ini").write_text("[pytest]\naddopts = -p no:cra_oracle\n")
    run = _run(tmp_path, wt, ["tests/test_a.py"])
    assert run.trusted and run.source == "stream", run.note  # cra's -p comes after addopts


def test_a_run_the_plugin_never_saw_is_a_conflict_not_a_verdict(tmp_path: Path) -> None:
    d = _junit_dir(tmp_path, PASS_C)
    run = interpret(0, "", d, ["tests/test_a.py"], stream=read_stream(b""))
    assert not run.trusted and "oracle plugin never started but pytest exited 0" in (run.conflict or "")
    crashed = interpret(4, "", d, ["tests/test_a.py"], stream=read_stream(b""))
    assert crashed.conflict is None and crashed.source == "none"  # a usage error: no results
