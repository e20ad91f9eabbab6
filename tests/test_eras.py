"""How eras are locked: as of their own time, concurrently, and one bad era never sinks a repo.

The offline tests package real repos from local wheel folders (``--no-index``), among them
an sdist that resolves but cannot be built into a wheel, as typed-ast cannot on Python
3.11. The network tests resolve against PyPI as of a date in the past, where the packages
of that time are known.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
from repo_builder import BASE_TS, RepoBuilder

from appliance.cli import main
from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import get_commits, get_eras
from appliance.errors import MissingWheel, UnbuildableSdist
from appliance.hashing import sha256_file
from appliance.packaging.eras import (
    attempts_for,
    era_as_of,
    landed_at,
    prune_wheelhouse,
    pythons_for,
)
from appliance.packaging.wheelhouse import (
    BuildKey,
    LockRequest,
    drop_from_lock,
    fill_wheelhouse,
    lock_era,
    read_lock,
)
from appliance.records import EraRecord
from harness.envs import find_uv

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
network = pytest.mark.network


def era(requirements: list[str], *, requires_python: str | None = None, commits: list[str] | None = None) -> EraRecord:
    return EraRecord(key="e" * 64, requirements=requirements, build_requires=[], first_commit="0" * 40,
                     commits=commits or [], requires_python=requires_python)


# ----------------------------------------------------------------------------- pieces


PIP_COMPILE_LOCK = """\
attrs==23.1.0 \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
    # via
    #   hypothesis
    #   pytest
hypothesis==6.80.0 \\
    --hash=sha256:cccc
    # via -r requirements.in
Attrs[tests]==23.1.0 ; python_version >= "3.7" \\
    --hash=sha256:dddd
pytest==7.4.0 \\
    --hash=sha256:eeee
    # via -r requirements.in
"""


def test_the_project_is_dropped_from_a_lock_with_its_hashes_and_notes() -> None:
    text, removed = drop_from_lock(PIP_COMPILE_LOCK, ["attrs"])
    assert removed == ["attrs==23.1.0", "attrs==23.1.0"]
    assert [e.name for e in read_lock_text(text)] == ["hypothesis", "pytest"]
    assert "aaaa" not in text and "dddd" not in text and "#   hypothesis" not in text
    assert "# via -r requirements.in" in text
    assert drop_from_lock(PIP_COMPILE_LOCK, []) == (PIP_COMPILE_LOCK, [])


def read_lock_text(text: str) -> list:  # type: ignore[type-arg]
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write(text)
    return read_lock(Path(fh.name))


def test_an_era_is_locked_as_of_its_last_commit_landing(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    shas = [repo.commit(f"Change {i}", {"a.py": f"x = {i}\n"}) for i in range(3)]
    landed = landed_at(repo.path, shas)
    assert [landed[s] for s in shas] == [1_600_003_600, 1_600_007_200, 1_600_010_800]
    assert era_as_of(era([], commits=shas[:2]), landed, 1) == "2020-09-14T14:26:40Z"
    assert era_as_of(era([], commits=shas), landed, 0) == "2020-09-13T15:26:40Z"
    assert era_as_of(era([], commits=["f" * 40]), landed, 1) is None


def test_the_committer_date_decides_not_the_author_date(tmp_path: Path) -> None:
    """A pull request written in January and merged in March was tested with March's packages."""
    repo = RepoBuilder(tmp_path / "lib")
    sha = repo.commit("Change", {"a.py": "x = 1\n"}, author="Old Hand <old@example.com>")
    repo.git("commit", "--amend", "--no-edit", "--date=2019-01-01T00:00:00+00:00")
    sha = repo.head()
    assert landed_at(repo.path, [sha])[sha] == 1_600_003_600


def test_which_pythons_an_era_is_tried_on() -> None:
    assert pythons_for(era([]), "3.11", ["3.9", "3.12"]) == (["3.11", "3.12", "3.9"], [])
    assert pythons_for(era([], requires_python=">=3.8"), "3.11", ["3.9"]) == (["3.11", "3.9"], [])
    fits, notes = pythons_for(era([], requires_python="<3.11"), "3.11", ["3.9", "3.10"])
    assert fits == ["3.10", "3.9"] and notes == ["requires-python <3.11 excludes Python 3.11"]
    fits, notes = pythons_for(era([], requires_python=">=4"), "3.11", [])
    assert fits == ["3.11"] and "admits none of Python 3.11; locked for 3.11 anyway" in notes[0]
    assert pythons_for(era([], requires_python="three"), "3.11", [])[1] == [
        "requires-python 'three' is not a specifier; ignored"]


def test_the_steps_tried_for_an_era() -> None:
    built = EraRecord(key="e" * 64, requirements=["pytest"], build_requires=["setuptools>=40", "Wheel"],
                      first_commit="0" * 40)
    steps = attempts_for(built, "2021-06-02T10:00:00Z", ["3.11"], uv=True)
    # the build back-end only installs the checkout: always today's
    assert [a.newest for a in steps] == [("setuptools", "wheel"), ("setuptools", "wheel", "pytest"), (), ()]
    # last: the newest with a setuptools that still has pkg_resources (old pinned tools import it)
    assert [a.pkg_resources for a in steps] == [False, False, False, True]
    labels = [a.label for a in attempts_for(era([]), "2021-06-02T10:00:00Z", ["3.11", "3.9"], uv=True)]
    assert labels == ["as of 2021-06-02", "as of 2021-06-02 with the newest pytest", "newest",
                      "as of 2021-06-02 on Python 3.9", "as of 2021-06-02 with the newest pytest on Python 3.9",
                      "newest on Python 3.9"]
    assert [a.label for a in attempts_for(era([]), None, ["3.11"], uv=False)] == ["newest"]


def test_wheels_no_lock_pins_are_pruned(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wh"
    wheelhouse.mkdir()
    for name in ("pytest-7.4.0-py3-none-any.whl", "pytest-6.0.2-py3-none-any.whl", "oldast-1.4.3-py3-none-any.whl"):
        (wheelhouse / name).write_bytes(b"")
    lock = tmp_path / "lock.txt"
    lock.write_text("pytest==7.4.0 \\\n    --hash=sha256:00\n")
    assert prune_wheelhouse(wheelhouse, [lock]) == ["oldast-1.4.3-py3-none-any.whl", "pytest-6.0.2-py3-none-any.whl"]
    assert [p.name for p in wheelhouse.iterdir()] == ["pytest-7.4.0-py3-none-any.whl"]


# ----------------------------------------------------------------------------- one bad era

SETUP_PY = """\
from setuptools import setup
from setuptools.command.build_py import build_py


class refuse(build_py):
    def run(self):
        raise SystemExit("oldast only builds on Python < 3.8")


setup(name="oldast", version="1.4.3", py_modules=["oldast"], cmdclass={"build_py": refuse})
"""


def _sdist(dest: Path) -> Path:
    """oldast 1.4.3: an sdist whose metadata builds and whose wheel does not (typed-ast)."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "oldast-1.4.3.tar.gz"
    files = {
        "PKG-INFO": "Metadata-Version: 2.1\nName: oldast\nVersion: 1.4.3\n",
        "setup.py": SETUP_PY,
        "oldast.py": "x = 1\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"oldast-1.4.3/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "calc"
version = "0.1.0"

[project.optional-dependencies]
test = {test}

[tool.setuptools]
packages = ["calc"]
"""


@network
@pytest.mark.slow
def test_one_era_that_cannot_be_built_never_sinks_the_repo(
    home: Home, wheel_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sdist(tmp_path / "sdists")
    repo = RepoBuilder(tmp_path / "calc")
    repo.commit("Start calc", {"pyproject.toml": PYPROJECT.format(test='["pytest"]'),
                               "calc/__init__.py": "def add(a, b):\n    return a - b\n",
                               "tests/test_calc.py": "from calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n"})
    fixed = repo.commit("Make add return the sum of its arguments", {
        "calc/__init__.py": "def add(a, b):\n    return a + b\n",
        "tests/test_calc.py": "from calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n\n\n"
                              "def test_add():\n    assert add(2, 3) == 5\n"})
    repo.commit("Check types with oldast in the test extra", {
        "pyproject.toml": PYPROJECT.format(test='["pytest", "oldast"]'),
    })
    broken = repo.commit("Make add refuse strings with a clear message", {
        "calc/__init__.py": "def add(a, b):\n    if isinstance(a, str) or isinstance(b, str):\n"
                            "        raise TypeError('numbers only')\n    return a + b\n",
        "tests/test_calc.py": "import pytest\nfrom calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n\n\n"
                              "def test_strings():\n    with pytest.raises(TypeError):\n        add('a', 'b')\n"})
    home.config_path.write_text("[packaging]\nlock_workers = 2\n")
    rc = main(["corpus", "add", str(repo.path), "--name", "calc", "--no-index", "--find-links", str(wheel_cache),
               "--find-links", str(tmp_path / "sdists"), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    result = json.loads(out.out)
    by_status = {e["status"]: e for e in result["eras"]}
    assert set(by_status) == {"locked", "unresolvable"}
    bad = by_status["unresolvable"]
    # the package and the cause are named, not only the lock file
    assert "no wheel of oldast==1.4.3 for Python" in bad["error"]
    assert "oldast only builds on Python < 3.8" in bad["error"]
    # every step names oldast, but the one that needs a setuptools < 82, which the test's
    # wheel folder (today's setuptools only) cannot give: that step says so instead
    assert bad["notes"] and all("oldast" in n or "you require setuptools<82" in n for n in bad["notes"])
    assert sum("oldast" in n for n in bad["notes"]) >= 3, bad["notes"]
    assert not (home.locks_dir("calc") / f"{bad['key']}.txt").exists()
    assert not list(home.wheelhouse("calc").glob("oldast*"))
    with Database(home.db_path) as db:
        kept = {c.sha: c for c in get_commits(db, "calc", status="kept")}
        eras = {e.key: e for e in get_eras(db, "calc")}
    assert {fixed, broken} <= set(kept)  # every commit is registered, with its era
    assert eras[kept[broken].era_key or ""].status == "unresolvable"
    assert eras[kept[fixed].era_key or ""].status == "locked"

    assert main(["harness", "validate", "calc", "--json"]) == 0
    capsys.readouterr()
    assert main(["harness", "tasks", "calc", "--json"]) == 0
    tasks = {t["sha"]: t for t in json.loads(capsys.readouterr().out)}
    assert tasks[fixed]["status"] == "valid"
    assert tasks[broken]["status"] == "env_error" and "oldast==1.4.3" in tasks[broken]["reason"]


@network
def test_an_sdist_that_failed_to_build_is_not_built_again_for_another_era(
    wheel_cache: Path, tmp_path: Path
) -> None:
    sdist = _sdist(tmp_path / "sdists")
    lock = tmp_path / "lock.txt"
    lock.write_text(f"oldast==1.4.3 \\\n    --hash=sha256:{sha256_file(sdist)}\n")
    links = [wheel_cache, tmp_path / "sdists"]
    unbuildable: dict[BuildKey, UnbuildableSdist] = {}
    logs = [tmp_path / "era-1.log", tmp_path / "era-2.log"]
    with pytest.raises(MissingWheel) as first:
        fill_wheelhouse(lock, tmp_path / "wh", PY, find_links=links, no_index=True, log=logs[0],
                        unbuildable=unbuildable)
    assert "no wheel of oldast==1.4.3" in str(first.value)
    assert "oldast only builds on Python < 3.8" in str(first.value)
    assert list(unbuildable) == [("oldast", "1.4.3", PY, (f"sha256:{sha256_file(sdist)}",))]
    with pytest.raises(MissingWheel) as again:
        fill_wheelhouse(lock, tmp_path / "wh", PY, find_links=links, no_index=True, log=logs[1],
                        unbuildable=unbuildable)
    assert again.value.message.startswith(first.value.message) and "not tried again" in again.value.message
    assert again.value.hint == first.value.hint and str(logs[0]) in (again.value.hint or "")
    assert " pip wheel " in logs[0].read_text()
    assert not logs[1].exists()  # no pip run at all
    # the same version with other files allowed (a lock of a later date, which has its wheel
    # too) is tried again
    other = tmp_path / "later.txt"
    other.write_text(f"oldast==1.4.3 \\\n    --hash=sha256:{sha256_file(sdist)} \\\n    --hash=sha256:{'0' * 64}\n")
    with pytest.raises(MissingWheel) as later:
        fill_wheelhouse(other, tmp_path / "wh", PY, find_links=links, no_index=True, log=logs[1],
                        unbuildable=unbuildable)
    assert "not tried again" not in later.value.message and " pip wheel " in logs[1].read_text()
    logs[1].unlink()
    # without the memo (another run of corpus add) the build is tried again
    with pytest.raises(MissingWheel):
        fill_wheelhouse(lock, tmp_path / "wh", PY, find_links=links, no_index=True, log=logs[1])
    assert " pip wheel " in logs[1].read_text()


# ----------------------------------------------------------------------------- as of a date (PyPI)


@network
@pytest.mark.slow
@pytest.mark.skipif(find_uv() is None, reason="uv is not installed")
@pytest.mark.skipif(sys.version_info < (3, 11), reason="PyYAML 6.0 has wheels up to Python 3.10")
def test_a_period_sdist_that_does_not_build_is_taken_today_and_the_rest_stays_of_its_time(
    home: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """August 2022: PyYAML 6.0 has no wheel for this Python and its sdist no longer builds
    (Cython 3). The era is still locked as of its date, with only PyYAML (and the build
    back-end) today's: pytest stays of 2022, not the newest packages for everything."""
    repo = RepoBuilder(tmp_path / "calc")
    repo.tick = (1_660_900_000 - BASE_TS) // 3600  # 2022-08-19
    tests = "import yaml\nfrom calc import add\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n"
    repo.commit("Start calc", {"pyproject.toml": PYPROJECT.format(test='["pytest", "pyyaml"]'),
                               "calc/__init__.py": "def add(a, b):\n    return a - b\n",
                               "tests/test_calc.py": tests})
    repo.commit("Make add return the sum of its arguments", {
        "calc/__init__.py": "def add(a, b):\n    return a + b\n",
        "tests/test_calc.py": tests + "\n\ndef test_add():\n    assert add(2, 3) == 5\n"})
    rc = main(["corpus", "add", str(repo.path), "--name", "calc", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    (era_json,) = json.loads(out.out)["eras"]
    assert era_json["status"] == "locked" and era_json["locked_as_of"].startswith("2022-08-"), era_json
    notes = era_json["notes"]
    assert any("no wheel of pyyaml==6.0 for Python" in n for n in notes), notes
    assert len(notes) == 2, notes  # straight to the same date with today's PyYAML
    assert notes[-1].startswith("pyyaml, ") and notes[-1].endswith("taken as of today"), notes
    pins = {e.name: e.version for e in read_lock(next(home.locks_dir("calc").glob("*.txt")))}
    assert pins["pyyaml"] != "6.0" and pins["pytest"].startswith("7.1."), pins


@network
@pytest.mark.skipif(find_uv() is None, reason="uv is not installed")
def test_uv_locks_with_the_packages_of_the_eras_time(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    info = lock_era(era(["pytest"]), LockRequest(python=PY, as_of="2021-06-01T00:00:00Z", tool="uv"), lock,
                    cache_dir=tmp_path / "cache")
    pins = {e.name: e.version for e in read_lock(lock)}
    assert pins["pytest"] == "6.2.4" and info.tool == "uv pip compile" and info.as_of == "2021-06-01T00:00:00Z"
    assert "# packages as uploaded by 2021-06-01T00:00:00Z" in lock.read_text()
    newest = tmp_path / "newest.txt"
    lock_era(era(["pytest"]), LockRequest(python=PY, as_of="2021-06-01T00:00:00Z", newest=("pytest",), tool="uv"),
             newest, cache_dir=tmp_path / "cache")
    pins = {e.name: e.version for e in read_lock(newest)}
    # pytest as of today, but still fitting the other packages of 2021 (pluggy 0.13)
    assert pins["pluggy"] == "0.13.1" and pins["pytest"] != "6.2.4"
    assert "# except pytest: the newest" in newest.read_text()


@network
def test_pip_compile_locks_as_of_a_date_where_pip_can(tmp_path: Path) -> None:
    from appliance.packaging import wheelhouse

    lock = tmp_path / "lock.txt"
    info = lock_era(era(["pytest"]), LockRequest(python=PY, as_of="2021-06-01T00:00:00Z", tool="pip-compile"),
                    lock, cache_dir=tmp_path / "cache")
    pins = {e.name: e.version for e in read_lock(lock)}
    assert info.tool == "pip-compile"
    if wheelhouse._pip_knows_uploaded_prior_to():
        assert pins["pytest"] == "6.2.4" and info.as_of and not info.notes
    else:  # an older pip: the newest, and the era says so
        assert info.as_of is None and "cannot resolve as of" in info.notes[0]


@network
@pytest.mark.slow
@pytest.mark.skipif(find_uv() is None, reason="uv is not installed")
def test_a_2020_era_runs_with_its_own_packages_and_a_pytest_that_runs_here(
    home: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The era's last commit landed in September 2020: its pytest (6.1) does not run on this
    Python, so pytest comes from today and the rest from 2020. A test that uses
    ``pytest.warns(None)`` (refused since pytest 8) passes as it did then, so it is
    PASS_TO_PASS; with today's packages it would fail at the parent and after."""
    repo = RepoBuilder(tmp_path / "calc")
    tests = ("import warnings\n\nimport pytest\nfrom calc import add\n\n\n"
             "def test_quiet():\n    with pytest.warns(None) as record:\n        add(1, 1)\n    assert not record\n")
    repo.commit("Start calc", {"pyproject.toml": PYPROJECT.format(test='["pytest"]'),
                               "calc/__init__.py": "def add(a, b):\n    return a - b\n",
                               "tests/test_calc.py": tests})
    fixed = repo.commit("Make add return the sum of its arguments", {
        "calc/__init__.py": "def add(a, b):\n    return a + b\n",
        "tests/test_calc.py": tests + "\n\ndef test_add():\n    assert add(2, 3) == 5\n"})
    rc = main(["corpus", "add", str(repo.path), "--name", "calc", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    (era_json,) = json.loads(out.out)["eras"]
    assert era_json["status"] == "locked" and era_json["locked_as_of"] == "2020-09-14T14:26:40Z"
    assert any("does not run on Python" in n for n in era_json["notes"]), era_json["notes"]
    assert any(n.startswith("pytest, ") and n.endswith("taken as of today") for n in era_json["notes"])
    assert any("pytest 6.0.2 of this lock does not run on Python" in n and "AttributeError: __spec__" in n
               for n in era_json["notes"])
    lock = next(home.locks_dir("calc").glob("*.txt"))
    pins = {e.name: e.version for e in read_lock(lock)}
    assert pins["pluggy"].startswith("0.13") and int(pins["pytest"].split(".")[0]) < 8
    manifest = json.loads(home.manifest_path("calc").read_text())
    assert manifest["eras"][0]["locked_as_of"] == "2020-09-14T14:26:40Z"

    assert main(["harness", "validate", "calc", "--json"]) == 0
    capsys.readouterr()
    assert main(["harness", "tasks", "calc", "--commit", fixed, "--json"]) == 0
    task = json.loads(capsys.readouterr().out)
    assert task["status"] == "valid", task["reason"]
    assert task["fail_to_pass"] == ["tests/test_calc.py::test_add"]
    assert task["pass_to_pass"] == ["tests/test_calc.py::test_quiet"]
