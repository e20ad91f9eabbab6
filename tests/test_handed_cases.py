"""The handed field cases, each with its right value, and the neighbours of their kinds.

``tests/cases/*.sh`` are the scripts as they were handed over (each rebuilds, as a real git
repository, a situation in which cra gave a wrong answer). Each test runs its script, then
cra as a user would: ``corpus add`` from local wheels, ``harness validate``, ``harness
tasks`` (and ``triples build``), all through the CLI, with real pytest in the sandbox.
The neighbour tests build the rest of each kind with ``RepoBuilder``: the same fault
through another config file, another option, a setting that changes over history.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from repo_builder import RepoBuilder

from appliance.cli import main
from appliance.config import Home

pytestmark = [pytest.mark.network, pytest.mark.slow]  # the wheels come from PyPI, once

CASES = Path(__file__).parent / "cases"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    rc = main(list(args))
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out) if "--json" in args else out.out


def package_and_validate(
    capsys: pytest.CaptureFixture[str], src: Path, name: str, wheels: Path
) -> dict[str, dict[str, object]]:
    """corpus add + validate; the tasks by their commit's title."""
    cli(capsys, "corpus", "add", str(src), "--name", name, "--no-index", "--find-links", str(wheels), "--json")
    cli(capsys, "harness", "validate", name, "--workers", "1", "--json")
    tasks = cli(capsys, "harness", "tasks", name, "--json")
    assert isinstance(tasks, list)
    titles = {
        sha: title for sha, title in (
            line.split(" ", 1) for line in subprocess.run(
                ["git", "-C", str(src), "log", "--format=%H %s"], capture_output=True, text=True,
                check=True,
            ).stdout.splitlines()
        )
    }
    return {titles[t["sha"]]: t for t in tasks}


def run_case(script: str, target: Path) -> Path:
    subprocess.run(["bash", str(CASES / script), str(target)], check=True, capture_output=True)
    return target


# ----------------------------------------------------------------------------- the handed cases


def test_case_10_addopts_exitfirst(home: Home, wheel_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``addopts = "-x"``: the tests after the new failing one are PASS_TO_PASS, not FAIL_TO_PASS."""
    src = run_case("10-addopts-exitfirst.sh", home.root / "src")
    tasks = package_and_validate(capsys, src, "quota", wheel_cache)
    task = tasks["Clamp remaining quota at zero when usage exceeds the limit"]
    assert task["status"] == "valid"
    assert task["fail_to_pass"] == ["tests/test_quota.py::test_remaining_never_negative"]
    assert task["pass_to_pass"] == ["tests/test_quota.py::test_percent_used", "tests/test_quota.py::test_remaining"]


def test_case_12_python_files(home: Home, wheel_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python_files = [... "*_tests.py"]``: the commit is kept, and its module is run."""
    src = run_case("12-python-files-config.sh", home.root / "src")
    tasks = package_and_validate(capsys, src, "money", wheel_cache)
    task = tasks["Read a single decimal digit as tens of cents"]
    assert task["status"] == "valid"
    assert task["fail_to_pass"] == ["tests/parsing_tests.py::test_single_decimal_means_tens_of_cents"]
    assert task["pass_to_pass"] == ["tests/parsing_tests.py::test_two_decimals",
                                    "tests/parsing_tests.py::test_whole_amount"]


def test_case_04_latin1_source(home: Home, wheel_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Latin-1 module with its coding line: the task validates and keeps every triple."""
    src = run_case("04-latin1-source-and-message.sh", home.root / "src")
    tasks = package_and_validate(capsys, src, "labelkit", wheel_cache)
    (task,) = tasks.values()
    assert task["instruction"].startswith("Count accented letters such as \u00e9 and \u00e8 in labels")
    assert task["status"] == "valid"
    # the new test module imports accent_count, which the parent lacks: every test errors there
    assert task["fail_to_pass"] == ["tests/test_labels.py::test_accent_count",
                                    "tests/test_labels.py::test_default_label", "tests/test_labels.py::test_shout"]
    built = cli(capsys, "triples", "build", "labelkit", "--json")
    assert isinstance(built, dict)
    assert built["skipped"] == {} and built["triples"] == 4
    out = home.root / "export"
    cli(capsys, "triples", "export", "--out", str(out))
    (row,) = [json.loads(line) for line in (out / "execute.sft.jsonl").read_text(encoding="utf-8").splitlines()]
    answer = row["messages"][-1]["content"]
    assert 'ACCENTED = set("\u00e0\u00e2\u00e7\u00e8\u00e9\u00ea\u00ee\u00ef\u00f4\u00fb\u00f9")' in answer


# ----------------------------------------------------------------------------- neighbours

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"

[tool.setuptools]
packages = ["{name}"]
"""
OLD_TESTS = "from quota import remaining\n\n\ndef test_old_one():\n    assert remaining(5, 1) == 4\n\n\n" \
            "def test_old_two():\n    assert remaining(5, 5) == 0\n"


def _fix(n: int) -> dict[str, str]:
    """The n-th fix: ``remaining`` learns a new rule, its new test comes first in the module."""
    rules = ["", "    if used < 0:\n        raise ValueError(used)\n",
             "    if limit is None:\n        return None\n", "    if used is None:\n        used = 0\n"]
    body = "".join(reversed(rules[1: n + 1]))
    new_tests = {1: "def test_negative_usage_is_refused():\n    import pytest\n    with pytest.raises(ValueError):\n"
                    "        remaining(5, -1)\n",
                 2: "def test_no_limit_means_no_limit():\n    assert remaining(None, 3) is None\n",
                 3: "def test_slow_missing_usage_counts_as_zero():\n    assert remaining(5, None) == 5\n"}
    return {
        "quota/__init__.py": f"def remaining(limit, used):\n{body}    return max(limit - used, 0)\n",
        "tests/test_quota.py": "from quota import remaining\n\n\n" + new_tests[n] + "\n\n" + OLD_TESTS.split("\n\n\n", 1)[1],
    }


def test_options_that_cut_the_run_in_every_config_file_and_over_history(
    home: Home, wheel_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The project's options move between files and change: at each commit, only the new
    test is FAIL_TO_PASS and the old ones are PASS_TO_PASS."""
    repo = RepoBuilder(home.root / "src")
    repo.commit("Add quota arithmetic helpers", {
        "pyproject.toml": PYPROJECT.format(name="quota"),
        "setup.cfg": "[tool:pytest]\naddopts = --maxfail=1 -q\n",
        "quota/__init__.py": "def remaining(limit, used):\n    return max(limit - used, 0)\n",
        "tests/test_quota.py": OLD_TESTS,
    })
    repo.commit("Refuse a negative usage when computing the remaining quota", _fix(1))
    repo.delete("setup.cfg")
    repo.commit("Treat a missing limit as no limit at all in remaining quota", {
        **_fix(2), "tox.ini": "[tox]\nenvlist = py3\n\n[pytest]\naddopts = --sw -p no:junitxml --tb=line\n",
    })
    repo.delete("tox.ini")
    repo.commit("Count a missing usage as zero when computing the remaining quota", {
        **_fix(3), "pytest.ini": '[pytest]\naddopts = -x -k "not slow" -qq\n',
    })
    tasks = package_and_validate(capsys, repo.path, "quota", wheel_cache)
    expected = {
        "Refuse a negative usage when computing the remaining quota": "test_negative_usage_is_refused",
        "Treat a missing limit as no limit at all in remaining quota": "test_no_limit_means_no_limit",
        "Count a missing usage as zero when computing the remaining quota":
            "test_slow_missing_usage_counts_as_zero",
    }
    assert set(expected) <= set(tasks), sorted(tasks)
    for title, new_test in expected.items():
        task = tasks[title]
        assert task["status"] == "valid", (title, task["reason"])
        assert task["fail_to_pass"] == [f"tests/test_quota.py::{new_test}"], title
        assert task["pass_to_pass"] == ["tests/test_quota.py::test_old_one", "tests/test_quota.py::test_old_two"]


def test_test_modules_by_the_projects_own_names_over_history(
    home: Home, wheel_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Test modules outside a tests folder, named check_*.py, with check_* functions: not
    test modules until the project says so, then kept and run by the project's names."""
    repo = RepoBuilder(home.root / "src")
    checks = "from money import to_cents\n\n\ndef check_whole():\n    assert to_cents('12') == 1200\n"
    repo.commit("Add money amount parsing", {
        "pyproject.toml": PYPROJECT.format(name="money"),
        "money/__init__.py": "def to_cents(text):\n    return int(text) * 100\n",
        "checks/check_parsing.py": checks,
    })
    repo.commit("Read amounts with two decimals as cents", {
        "money/__init__.py": "def to_cents(text):\n    whole, _, frac = text.partition('.')\n"
                             "    return int(whole) * 100 + int(frac or 0)\n",
        "checks/check_parsing.py": checks + "\n\ndef check_two_decimals():\n    assert to_cents('3.25') == 325\n",
    })
    repo.commit("Collect the checks folder with pytest", {
        "pyproject.toml": PYPROJECT.format(name="money") + '\n[tool.pytest.ini_options]\n'
        'python_files = ["check_*.py"]\npython_functions = ["check_"]\ntestpaths = ["checks"]\n',
    })
    repo.commit("Read a single decimal digit as tens of cents", {
        "money/__init__.py": "def to_cents(text):\n    whole, _, frac = text.partition('.')\n"
                             "    return int(whole) * 100 + int((frac + '00')[:2])\n",
        "checks/check_parsing.py": checks + "\n\ndef check_two_decimals():\n    assert to_cents('3.25') == 325\n"
        "\n\ndef check_single_decimal():\n    assert to_cents('3.5') == 350\n",
    })
    cli(capsys, "corpus", "add", str(repo.path), "--name", "money", "--no-index", "--find-links",
        str(wheel_cache), "--json")
    funnel = cli(capsys, "corpus", "funnel", "money", "--json")
    assert isinstance(funnel, dict)
    # before the project's settings, check_parsing.py is no test module: rightly rejected
    assert {"stage": "tests", "reason": "no test module changed", "n": 1} in funnel["reasons"]
    cli(capsys, "harness", "validate", "money", "--json")
    (task,) = cli(capsys, "harness", "tasks", "money", "--json")  # type: ignore[misc]
    assert task["status"] == "valid" and task["test_files"] == ["checks/check_parsing.py"]
    assert task["fail_to_pass"] == ["checks/check_parsing.py::check_single_decimal"]
    assert task["pass_to_pass"] == ["checks/check_parsing.py::check_two_decimals",
                                    "checks/check_parsing.py::check_whole"]
    whole = cli(capsys, "harness", "tasks", "money", "--commit", task["sha"], "--json")
    assert isinstance(whole, dict)
    assert "checks/check_parsing.py" in whole["test_patch"] and "checks/" not in whole["gold_patch"]
    # A model's edit to that module never passes for a fix, like an edit to any test's.
    from appliance.db.core import Database
    from appliance.db.tasks import get_task
    from harness.candidate import EvalOptions, evaluate, task_env
    from harness.edits import parse_edits
    from harness.sandbox import Limits

    cheat = parse_edits("checks/check_parsing.py\n<<<<<<< SEARCH\n    assert to_cents('3.5') == 350\n=======\n"
                        "    assert True\n>>>>>>> REPLACE\n")
    with Database(home.db_path) as db:
        stored = get_task(db, "money", task["sha"])
        ev = evaluate(home, stored, cheat, task_env(home, db, stored), options=EvalOptions(limits=Limits(timeout_s=60)))
    # refused as tampering with the task's test files, or undone before judging: never resolved
    assert not ev.resolved and ev.kind in ("oracle_tamper", "tests_failed"), ev
    assert ev.kind == "oracle_tamper" or ev.restored == ["checks/check_parsing.py"]
