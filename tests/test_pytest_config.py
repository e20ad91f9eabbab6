"""The project's own pytest settings: read as pytest reads them, at every commit, and the
options that would cut or reshape the oracle run left out of real pytest runs.

The reading tests use real files and real commits; the run tests start real pytest (cra's
own) in the real sandbox on a project whose first test fails and whose two others pass:
whatever the project's addopts say, the oracle must see exactly that.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from repo_builder import RepoBuilder

from harness.pytest_config import (
    DEFAULT,
    neutralise,
    oracle_options,
    parse_config,
    settings_at,
    settings_in,
)
from harness.testrun import pytest_argv, run_env, run_pytest

PYTHON = Path(sys.executable)
PYTHON_DIRS = sorted({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()})
FAST_ENV = run_env(PYTHON) | {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize(("name", "text", "source"), [
    ("pytest.ini", "[pytest]\naddopts = -x\n", "pytest.ini [pytest]"),
    (".pytest.ini", "[pytest]\naddopts = -x\n", ".pytest.ini [pytest]"),
    ("pyproject.toml", '[tool.pytest.ini_options]\naddopts = "-x"\n',
     "pyproject.toml [tool.pytest.ini_options]"),
    ("pyproject.toml", '[tool.pytest]\naddopts = ["-x"]\n', "pyproject.toml [tool.pytest]"),
    ("tox.ini", "[tox]\nenvlist = py311\n\n[pytest]\naddopts = -x\n", "tox.ini [pytest]"),
    ("setup.cfg", "[metadata]\nname = x\n\n[tool:pytest]\naddopts = -x\n", "setup.cfg [tool:pytest]"),
])
def test_every_file_pytest_reads_gives_its_addopts(name: str, text: str, source: str) -> None:
    settings = parse_config(name, text)
    assert settings is not None and settings.source == source and settings.addopts == ("-x",)


@pytest.mark.parametrize(("name", "text"), [
    ("tox.ini", "[tox]\nenvlist = py311\n"),  # no [pytest]: pytest looks further
    ("setup.cfg", "[metadata]\nname = x\n\n[pytest]\naddopts = -x\n"),  # [pytest] is not read there
    ("pyproject.toml", '[project]\nname = "x"\n'),
    ("pyproject.toml", '[tool.black]\nline-length = 100\n'),
])
def test_files_without_a_pytest_section_are_not_the_config(name: str, text: str) -> None:
    assert parse_config(name, text) is None


def test_an_empty_pytest_ini_is_the_config_with_defaults() -> None:
    settings = parse_config("pytest.ini", "")
    assert settings is not None and settings.source == "pytest.ini" and settings.addopts == ()


def test_a_broken_config_pytest_would_take_gives_defaults_and_says_so() -> None:
    settings = parse_config("pyproject.toml", '[tool.pytest.ini_options\naddopts = "-x"\n')
    assert settings is not None and settings.addopts == () and "not valid TOML" in settings.notes[0]


def test_the_first_file_in_pytests_order_wins(tmp_path: Path) -> None:
    (tmp_path / "setup.cfg").write_text("[tool:pytest]\naddopts = --maxfail=3\n")
    (tmp_path / "tox.ini").write_text("[pytest]\naddopts = -q\n")
    assert settings_in(tmp_path).source == "tox.ini [pytest]"
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "-v"\n')
    assert settings_in(tmp_path).source == "pyproject.toml [tool.pytest.ini_options]"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    assert settings_in(tmp_path).source == "pytest.ini [pytest]"


def test_a_config_in_the_tests_folder_wins_for_files_under_it(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "-v"\n')
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "pytest.ini").write_text("[pytest]\naddopts = -x\n")
    assert settings_in(tmp_path, ["tests/test_a.py"]).addopts == ("-x",)
    assert settings_in(tmp_path, ["other/test_b.py"]).addopts == ("-v",)
    assert settings_in(tmp_path, ["tests/test_a.py", "other/test_b.py"]).addopts == ("-v",)


def test_settings_follow_the_history_of_the_project(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    first = repo.commit("Start", {"lib.py": "", "tests/test_a.py": ""})
    second = repo.commit("Collect *_tests.py", {
        "pyproject.toml": '[tool.pytest.ini_options]\npython_files = ["*_tests.py"]\ntestpaths = ["tests"]\n',
    })
    third = repo.commit("Move the settings to setup.cfg", {
        "setup.cfg": "[tool:pytest]\npython_files = check_*.py\n",
        "pyproject.toml": '[project]\nname = "lib"\n',
    })
    assert settings_at(repo.path, first) == DEFAULT
    assert settings_at(repo.path, second).python_files == ("*_tests.py",)
    assert settings_at(repo.path, second).testpaths == ("tests",)
    assert settings_at(repo.path, third).python_files == ("check_*.py",)
    assert settings_at(repo.path, third).testpaths == ()


# ----------------------------------------------------------------------------- test modules


def test_test_modules_by_python_files_and_testpaths() -> None:
    default = DEFAULT
    assert default.is_test_module("tests/test_a.py") and default.is_test_module("pkg/a_test.py")
    assert not default.is_test_module("tests/parsing_tests.py")
    assert not default.is_test_module("tests/conftest.py") and not default.is_test_module("tests/__init__.py")
    custom = parse_config("pytest.ini", "[pytest]\npython_files = tests.py test_*.py *_tests.py\n"
                                        "testpaths = tests integration/*\n")
    assert custom is not None
    assert custom.is_test_module("tests/parsing_tests.py") and custom.is_test_module("tests/sub/tests.py")
    assert custom.is_test_module("integration/db/test_x.py")  # a glob in testpaths
    assert not custom.is_test_module("src/pkg/test_util.py")  # outside testpaths
    assert not custom.is_test_module("tests/a_test.py")  # not in this project's python_files
    with_dir = parse_config("pytest.ini", "[pytest]\npython_files = checks/check_*.py\n")
    assert with_dir is not None and with_dir.is_test_module("checks/check_db.py")
    assert not with_dir.is_test_module("other/check_db.py")  # a pattern with "/" matches the path


def test_test_classes_and_functions_by_prefix_or_glob() -> None:
    settings = parse_config("pytest.ini", "[pytest]\npython_classes = Check *Suite\npython_functions = check_\n")
    assert settings is not None
    assert settings.is_test_class("CheckParser") and settings.is_test_class("ParserSuite")
    assert not settings.is_test_class("TestParser")
    assert settings.is_test_function("check_one") and not settings.is_test_function("test_one")
    assert DEFAULT.is_test_function("test_one") and DEFAULT.is_test_class("TestX")


# ----------------------------------------------------------------------------- neutralising


@pytest.mark.parametrize(("addopts", "kept", "dropped"), [
    ("-x --strict-markers", ["--strict-markers"], ["-x"]),
    ("--exitfirst", [], ["--exitfirst"]),
    ("--maxfail=1 -p xdist", ["-p", "xdist"], ["--maxfail=1"]),
    ("--maxfail 2 --import-mode=importlib", ["--import-mode=importlib"], ["--maxfail", "2"]),
    ("--sw --stepwise-skip", [], ["--sw", "--stepwise-skip"]),
    ("-k 'not slow' -m unit", [], ["-k", "not slow", "-m", "unit"]),
    ("-knetwork", [], ["-k", "network"]),
    ("--lf --ff --nf --cache-clear", [], ["--lf", "--ff", "--nf", "--cache-clear"]),
    ("-q -qq -vv --verbosity=2", [], ["-q", "-q", "-q", "-v", "-v", "--verbosity=2"]),
    ("-ra --tb=short", ["-r", "a"], ["--tb=short"]),
    ("-n auto --dist loadscope", [], ["-n", "auto", "--dist", "loadscope"]),
    ("-nauto", [], ["-n", "auto"]),
    ("-p no:junitxml -p no:cacheprovider", ["-p", "no:cacheprovider"], ["-p", "no:junitxml"]),
    ("-pno:terminal", [], ["-p", "no:terminal"]),
    ("--junitxml=report.xml --junit-prefix x", [], ["--junitxml=report.xml", "--junit-prefix", "x"]),
    ("--cov --cov-report term", [], ["--cov", "--cov-report", "term"]),
    ("--cov src --cov-fail-under=90 -W error", ["-W", "error"], ["--cov", "src", "--cov-fail-under=90"]),
    ("-xvs", ["-s"], ["-x", "-v"]),
    ("--doctest-modules tests src/pkg", ["--doctest-modules"], ["tests", "src/pkg"]),
    ("--reruns 3 --count=2", [], ["--reruns", "3", "--count=2"]),
    ("-Z --unknown-flag", ["-Z", "--unknown-flag"], []),
    ("--collect-only --pdb", [], ["--collect-only", "--pdb"]),
])
def test_what_the_oracle_run_drops_and_keeps(addopts: str, kept: list[str], dropped: list[str]) -> None:
    import shlex

    result = neutralise(shlex.split(addopts))
    assert (result.kept, result.dropped) == (kept, dropped)


# ----------------------------------------------------------------------------- real pytest runs

TESTS = """\
def test_new_and_failing():
    assert 1 == 2


def test_old_one():
    assert True


def test_old_two():
    assert True
"""
RIGHT = {
    "tests/test_q.py::test_new_and_failing": "failed",
    "tests/test_q.py::test_old_one": "passed",
    "tests/test_q.py::test_old_two": "passed",
}


def _project(tmp_path: Path, name: str, text: str) -> Path:
    wt = tmp_path / "wt"
    (wt / "tests").mkdir(parents=True)
    (wt / "tests" / "test_q.py").write_text(TESTS)
    (wt / name).write_text(textwrap.dedent(text))
    return wt


@pytest.mark.parametrize(("name", "config"), [
    ("pyproject.toml", '[tool.pytest.ini_options]\naddopts = "-x --strict-markers"\n'),  # the handed case
    ("pytest.ini", "[pytest]\naddopts = --maxfail=1\n"),
    ("setup.cfg", "[tool:pytest]\naddopts = --sw -q\n"),  # --sw needs the cache cra switches off
    ("tox.ini", "[pytest]\naddopts = -qq --tb=no\n"),  # -q: no "=== ... ===" closing line
    ("pytest.ini", "[pytest]\naddopts = -k old\n"),
    ("pytest.ini", "[pytest]\naddopts = -m slow\nmarkers = slow\n"),
    ("pytest.ini", "[pytest]\naddopts = --lf --ff\n"),
    ("pytest.ini", "[pytest]\naddopts = -p no:junitxml\n"),  # the junit report cra reads
    ("pytest.ini", "[pytest]\naddopts = -n 2\n"),  # xdist is not even installed
    ("pytest.ini", "[pytest]\naddopts = --cov=pkg --cov-fail-under=90\n"),
    ("pytest.ini", "[pytest]\naddopts = -x tests/test_q.py::test_old_one\n"),
])
def test_the_oracle_sees_every_test_whatever_the_addopts(tmp_path: Path, name: str, config: str) -> None:
    wt = _project(tmp_path, name, config)
    run = run_pytest(PYTHON, wt, ["tests/test_q.py"], run_dir=tmp_path / "run", env=FAST_ENV,
                     readonly=PYTHON_DIRS)
    assert run.completed and run.trusted and run.conflict is None, (run.note, run.output_tail)
    assert run.outcomes == RIGHT and run.source == "stream"


def test_what_the_project_needs_to_collect_is_kept(tmp_path: Path) -> None:
    """--strict-markers and -W error stay: they are how the project's tests run."""
    wt = _project(tmp_path, "pytest.ini", "[pytest]\naddopts = -x --strict-markers -W error::UserWarning\n")
    (wt / "tests" / "test_q.py").write_text(TESTS + textwrap.dedent("""

        import pytest, warnings

        @pytest.mark.unregistered
        def test_marked():
            pass

        def test_warns():
            warnings.warn("careful", UserWarning)
    """))
    run = run_pytest(PYTHON, wt, ["tests/test_q.py"], run_dir=tmp_path / "run", env=FAST_ENV,
                     readonly=PYTHON_DIRS)
    # an unknown marker under --strict-markers fails the module's collection
    assert run.completed and run.outcomes == {"tests/test_q.py": "error"}, run.output_tail
    options = oracle_options(wt, ["tests/test_q.py"])
    assert options.dropped == ["-x"]
    assert options.args == ["-o", "addopts=--strict-markers -W error::UserWarning"]


def test_nothing_is_overridden_when_nothing_needs_it(tmp_path: Path) -> None:
    wt = _project(tmp_path, "pytest.ini", "[pytest]\naddopts = --strict-markers -ra\n")
    argv = pytest_argv(PYTHON, wt, ["tests/test_q.py"], tmp_path / "run")
    assert not any(a.startswith("addopts=") for a in argv)
    wt2 = _project(tmp_path / "b", "pytest.ini", "[pytest]\naddopts = -x\n")
    argv = pytest_argv(PYTHON, wt2, ["tests/test_q.py"], tmp_path / "run2")
    assert argv[argv.index("-o") + 1] == "addopts=" and argv[-1] == "tests/test_q.py"


def test_ini_values_over_several_lines_with_comments() -> None:
    settings = parse_config("tox.ini", "[pytest]\naddopts =\n    -x  # stop early\n    --strict-markers\n"
                                       "; a comment line\npython_files = check_*.py\n    test_*.py\n")
    assert settings is not None
    assert settings.addopts == ("-x", "--strict-markers")
    assert settings.python_files == ("check_*.py", "test_*.py")
