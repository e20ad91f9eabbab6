"""Maintenance branches: ``cra corpus add --branch NAME`` packages their fixes too.

A fix that lands on ``2.x-line`` reaches the default branch only inside a merge, whose
first-parent diff is the whole branch (and whose title is no instruction). With
``--branch 2.x-line`` the fix is its own unit of work, packaged, carried over the air gap
in the bundle, and validated on the other side, offline.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from repo_builder import RepoBuilder

from appliance.cli import main
from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import get_repo

pytestmark = [pytest.mark.network, pytest.mark.slow]

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "calc"
version = "0.1.0"

[project.optional-dependencies]
test = ["pytest"]

[tool.setuptools]
packages = ["calc"]
"""


def _history(path: Path) -> tuple[RepoBuilder, str, str]:
    repo = RepoBuilder(path)
    repo.commit("Start calc", {
        "pyproject.toml": PYPROJECT,
        "calc/__init__.py": "def add(a, b):\n    return a - b\n",
        "calc/fmt.py": "def show(x):\n    return str(x)\n",
        "tests/test_add.py": "from calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n",
        "tests/test_fmt.py": "from calc.fmt import show\n\n\ndef test_show():\n    assert show(1) == '1'\n",
    })
    repo.branch("2.x-line")
    fix = repo.commit("Make add return the sum of its arguments", {
        "calc/__init__.py": "def add(a, b):\n    return a + b\n",
        "tests/test_add.py": "from calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n\n\n"
                             "def test_add():\n    assert add(2, 3) == 5\n",
    })
    repo.checkout("main")
    repo.commit("Show floats with two decimals in show()", {
        "calc/fmt.py": "def show(x):\n    return f'{x:.2f}' if isinstance(x, float) else str(x)\n",
        "tests/test_fmt.py": "from calc.fmt import show\n\n\ndef test_show():\n    assert show(1) == '1'\n\n\n"
                             "def test_float():\n    assert show(0.5) == '0.50'\n",
    })
    repo.merge("2.x-line", "Merge branch '2.x-line'")
    repo.checkout("2.x-line")  # a later fix, not merged (yet): on the branch only
    later = repo.commit("Make add accept a third, optional term", {
        "calc/__init__.py": "def add(a, b, c=0):\n    return a + b + c\n",
        "tests/test_add.py": "from calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n\n\n"
                             "def test_add():\n    assert add(2, 3) == 5\n\n\ndef test_three():\n    assert add(1, 2, 3) == 6\n",
    })
    repo.checkout("main")
    return repo, fix, later


def test_a_fix_on_a_maintenance_branch_is_packaged_carried_and_validated(
    home: Home, wheel_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, fix, later = _history(tmp_path / "calc")
    assert main(["corpus", "add", str(repo.path), "--name", "calc", "--no-index", "--find-links",
                 str(wheel_cache), "--branch", "2.x-line", "--branch", "main", "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["branches"] == ["2.x-line"]  # the default branch is walked anyway
    manifest = json.loads(home.manifest_path("calc").read_text())
    assert manifest["branches"] == ["2.x-line"]
    kept = [c["sha"] for c in manifest["commits"]]
    assert kept.count(fix) == 1 and kept.count(later) == 1
    with Database(home.db_path) as db:
        assert get_repo(db, "calc").branches == ["2.x-line"]

    usb = tmp_path / "usb"
    assert main(["corpus", "export", "calc", "--to", str(usb)]) == 0
    airgapped = Home(tmp_path / "airgapped")
    airgapped.root.mkdir()
    assert main(["--home", str(airgapped.root), "corpus", "import", str(usb)]) == 0
    capsys.readouterr()
    clone = airgapped.repo_dir("calc")
    # the unmerged fix is reachable from no default-branch commit: the bundle carries the branch
    found = subprocess.run(["git", "-C", str(clone), "cat-file", "-e", f"{later}^{{commit}}"], check=False)
    assert found.returncode == 0
    assert main(["--home", str(airgapped.root), "harness", "validate", "calc", "--commit", fix,
                 "--commit", later, "--json"]) == 0
    capsys.readouterr()
    assert main(["--home", str(airgapped.root), "harness", "tasks", "calc", "--json"]) == 0
    tasks = {t["sha"]: t for t in json.loads(capsys.readouterr().out)}
    assert tasks[fix]["status"] == "valid", tasks[fix]["reason"]
    assert tasks[fix]["fail_to_pass"] == ["tests/test_add.py::test_add"]
    assert tasks[fix]["pass_to_pass"] == ["tests/test_add.py::test_zero"]
    assert tasks[later]["status"] == "valid", tasks[later]["reason"]
    assert tasks[later]["fail_to_pass"] == ["tests/test_add.py::test_three"]


def test_a_branch_the_source_does_not_have_is_refused_cleanly(
    home: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, _, _ = _history(tmp_path / "calc")
    rc = main(["corpus", "add", str(repo.path), "--name", "calc", "--no-index", "--branch", "3.x-line"])
    err = capsys.readouterr().err
    assert rc == 2 and "has no branch '3.x-line'" in err and "Traceback" not in err
    assert not home.repo_dir("calc").exists()
