"""The code under test is the checkout, never a released copy of it.

The scenario of a library that test tooling depends on (attrs under pytest and
hypothesis): the project's test extra names a test kit, and the test kit depends on the
project. Resolving the era then pins a released copy of the project. The project is a
src-layout flit project, whose editable install is a ``shadowlib.pth`` file: it sorts
after the overlay's ``_cra_base_env.pth``, so a released copy in the era environment comes
first on ``sys.path`` and the tests import it. Every wheel is built here, offline, from
sources written here; only pytest, setuptools and flit_core come from PyPI (once).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from repo_builder import RepoBuilder
from wheels import make_lock

from appliance.cli import main
from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import get_commits, get_eras, register_repo
from appliance.pipenv import clean_pip_env
from appliance.records import EraRecord, RepoRecord
from harness.sandbox import Limits
from harness.validation import ValidationOptions, validate_commit

pytestmark = [pytest.mark.network, pytest.mark.slow]

PYPROJECT = """\
[build-system]
requires = ["flit_core>=3.4"]
build-backend = "flit_core.buildapi"

[project]
name = "{name}"
version = "{version}"
description = "{description}"
dependencies = {dependencies}

[project.optional-dependencies]
test = {test}
"""
BUGGY = '"""Ratios."""\n\n\ndef ratio(a, b):\n    return a // b\n'
FIXED = '"""Ratios."""\n\n\ndef ratio(a, b):\n    return a / b\n'
TESTS = "from shadowlib import ratio\n\n\ndef test_whole():\n    assert ratio(6, 3) == 2\n"
TESTS_FIXED = TESTS + "\n\ndef test_fraction():\n    assert ratio(1, 2) == 0.5\n"


def _build_wheel(src: Path, dest: Path, links: list[Path]) -> Path:
    before = set(dest.glob("*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
         *(arg for link in links for arg in ("--find-links", str(link))), "--wheel-dir", str(dest), str(src)],
        env=clean_pip_env(), check=True, capture_output=True, timeout=300,
    )
    (new,) = set(dest.glob("*.whl")) - before
    return new


def _project(path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    return path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> Path:
    """pytest & co, flit_core, a released shadowlib 1.0 and shadowlib-testkit (needs shadowlib)."""
    root = tmp_path_factory.mktemp("selfdep")
    flit = root / "flit"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:",
                    "--no-deps", "--dest", str(flit), "flit_core==3.12.0"],
                   env=clean_pip_env(), check=True, timeout=300)
    built = root / "wheels"
    built.mkdir()
    for whl in [*wheel_cache.glob("*.whl"), *flit.glob("*.whl")]:
        (built / whl.name).write_bytes(whl.read_bytes())
    released = _project(root / "released", {
        "pyproject.toml": PYPROJECT.format(name="shadowlib", version="1.0", description="Ratios",
                                           dependencies="[]", test="[]"),
        "src/shadowlib/__init__.py": BUGGY,
    })
    _build_wheel(released, built, [built])
    kit = _project(root / "kit", {
        # a pytest plugin, loaded at every pytest start, that imports the project (as
        # hypothesis's plugin does attrs, and pytest < 7 itself did)
        "pyproject.toml": PYPROJECT.format(name="shadowlib_testkit", version="1.0",
                                           description="Test helpers for shadowlib",
                                           dependencies='["shadowlib>=1.0"]', test="[]")
        + '\n[project.entry-points.pytest11]\nshadowlib_testkit = "shadowlib_testkit"\n',
        "shadowlib_testkit.py": '"""Test helpers for shadowlib."""\n\nimport shadowlib\n\n__version__ = "1.0"\n',
    })
    _build_wheel(kit, built, [built])
    return built


def _repo(path: Path) -> tuple[RepoBuilder, str]:
    repo = RepoBuilder(path)
    pyproject = PYPROJECT.format(name="shadowlib", version="2.0.dev0", description="Ratios",
                                 dependencies="[]", test='["pytest", "shadowlib-testkit"]')
    repo.commit("Add ratio()", {"pyproject.toml": pyproject, "src/shadowlib/__init__.py": BUGGY,
                                "tests/test_ratio.py": TESTS})
    fix = repo.commit("Make ratio() a true division so fractions survive",
                      {"src/shadowlib/__init__.py": FIXED, "tests/test_ratio.py": TESTS_FIXED})
    return repo, fix


def test_a_test_tool_that_depends_on_the_project_never_brings_a_released_copy(
    home: Home, wheels: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, fix = _repo(home.root / "src")
    assert main(["corpus", "add", str(repo.path), "--name", "shadowlib", "--no-index",
                 "--find-links", str(wheels), "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    (era,) = added["eras"]
    assert era["status"] == "locked"
    lock = next(home.locks_dir("shadowlib").glob("*.txt")).read_text()
    assert "shadowlib-testkit==1.0" in lock and "\nshadowlib==" not in lock
    assert "# left out: shadowlib==1.0 (the project itself" in lock
    assert not list(home.wheelhouse("shadowlib").glob("shadowlib-1.0-*.whl"))  # never in the wheelhouse
    # the smoke test ran the era's pytest, whose plugin imports the project, with the
    # released copy standing in for the checkout in its throwaway environment
    assert era["notes"] == ["flit-core taken as of today"] and era["locked_as_of"]  # the first try passed
    with Database(home.db_path) as db:
        assert get_eras(db, "shadowlib")[0].project == "shadowlib"

    assert main(["harness", "validate", "shadowlib", "--json"]) == 0
    capsys.readouterr()
    assert main(["harness", "tasks", "shadowlib", "--commit", fix, "--json"]) == 0
    task = json.loads(capsys.readouterr().out)
    assert task["status"] == "valid", task["reason"]
    assert task["fail_to_pass"] == ["tests/test_ratio.py::test_fraction"]
    assert task["pass_to_pass"] == ["tests/test_ratio.py::test_whole"]


def test_an_environment_holding_a_released_copy_is_an_env_error_naming_it(home: Home, wheels: Path) -> None:
    """A package made by an older cra pinned the project itself: validation must refuse to
    grade the released copy, and say where the import went."""
    repo, fix = _repo(home.repo_dir("shadowlib"))
    wheelhouse = home.wheelhouse("shadowlib")
    wheelhouse.mkdir(parents=True)
    for whl in wheels.glob("*.whl"):
        (wheelhouse / whl.name).write_bytes(whl.read_bytes())
    lock = make_lock([w for w in wheelhouse.glob("*.whl") if not w.name.startswith(("setuptools", "wheel"))],
                     wheelhouse / "locks" / "old.txt")
    assert "shadowlib==1.0" in lock.read_text()
    era = EraRecord(key="a" * 64, requirements=["pytest", "shadowlib-testkit"], build_requires=["flit-core>=3.4"],
                    first_commit=fix, lock_path="locks/old.txt",
                    lock_sha256=hashlib.sha256(lock.read_bytes()).hexdigest(), status="locked")
    from appliance.config import MiningConfig
    from harness.mining import mine_repo

    commits = mine_repo(repo.path, MiningConfig())
    for c in commits:
        c.era_key = era.key if c.status == "kept" else None
    with Database(home.db_path) as db:
        register_repo(db, RepoRecord("shadowlib", str(repo.path), fix, "main",
                                     f"{sys.version_info[0]}.{sys.version_info[1]}", "python -m pytest"),
                      [era], commits)
        (commit,) = get_commits(db, "shadowlib", status="kept")
    task = validate_commit(home, "shadowlib", commit, era, options=ValidationOptions(limits=Limits(timeout_s=60)))
    assert task.status == "env_error"
    assert "shadowlib resolves to" in (task.reason or "")
    assert "site-packages/shadowlib/__init__.py" in (task.reason or "")
    assert "not the checkout" in (task.reason or "")
    log = Path(task.log_path or "").read_text()
    assert "[before]" not in log  # the oracle never ran on the wrong code
    assert textwrap.dedent(task.reason or "").count("\n") == 0  # one line
