"""Offline environments and the per-slot checkouts: built once, reused, never fooled by pip
configuration, and a commit costs a checkout rather than an install.

Real virtualenvs, real uv / pip installs from a real wheelhouse (downloaded once per
session: the tests that need it are marked ``network``), real git repositories.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from repo_builder import RepoBuilder
from wheels import make_lock

from appliance.config import Home
from harness.envs import MARKER, EnvError, EnvSpec, ensure_env, env_dir, find_uv
from harness.testrun import is_test_file
from harness.worktrees import (
    InstallState,
    apply_patch,
    build_digest,
    checkout,
    ensure_installed,
    ensure_worktree,
    keep_list,
    restore_test_files,
)

network = pytest.mark.network
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture(scope="session")
def wheels(wheel_cache: Path) -> Path:
    return wheel_cache


def package(home: Home, name: str, wheel_files: list[Path], lock_name: str = "era.txt") -> tuple[Path, Path]:
    """A repo package's wheelhouse holding ``wheel_files`` and a lock of exactly them."""
    wheelhouse = home.wheelhouse(name)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    for whl in wheel_files:
        if not (wheelhouse / whl.name).exists():
            os.link(whl, wheelhouse / whl.name)
    return wheelhouse, make_lock(wheel_files, wheelhouse / "locks" / lock_name)


def one_wheel(wheels: Path, prefix: str = "iniconfig") -> list[Path]:
    return sorted(wheels.glob(f"{prefix}-*.whl"))


def spec_for(name: str, lock: Path) -> EnvSpec:
    return EnvSpec.for_lock(name, lock, PY)


# ----------------------------------------------------------------------------- keys


def test_env_key_is_a_hash_of_what_builds_the_env() -> None:
    spec = EnvSpec("attrs", "a" * 64, "3.11", "linux-x86_64")
    assert spec.key == EnvSpec("attrs", "a" * 64, "3.11", "linux-x86_64").key
    assert len(spec.key) == 20 and all(c in "0123456789abcdef" for c in spec.key)
    others = [
        EnvSpec("cattrs", "a" * 64, "3.11", "linux-x86_64"),
        EnvSpec("attrs", "b" * 64, "3.11", "linux-x86_64"),
        EnvSpec("attrs", "a" * 64, "3.12", "linux-x86_64"),
        EnvSpec("attrs", "a" * 64, "3.11", "linux-aarch64"),
    ]
    assert len({spec.key, *(o.key for o in others)}) == 5


# ----------------------------------------------------------------------------- building


@network
@pytest.mark.parametrize("installer", ["uv", pytest.param("pip", marks=pytest.mark.slow)])
def test_env_is_built_once_from_the_wheelhouse_and_reused(home: Home, wheels: Path, installer: str) -> None:
    if installer == "uv" and find_uv() is None:
        pytest.skip("uv is not installed")
    wheelhouse, lock = package(home, "lib", one_wheel(wheels))
    spec = spec_for("lib", lock)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(
        ensure_env(home, spec, lock, wheelhouse, use_uv=installer == "uv"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == results[1] == env_dir(home, spec) / "bin" / "python"
    log = (home.logs / "envs" / f"{spec.key}.log").read_text()
    assert log.count("-m virtualenv") == 1, "two workers, one build"
    assert "--require-hashes" in log
    marker = (env_dir(home, spec) / MARKER).stat().st_mtime_ns
    assert ensure_env(home, spec, lock, wheelhouse, use_uv=installer == "uv") == results[0]
    assert (env_dir(home, spec) / MARKER).stat().st_mtime_ns == marker
    out = subprocess.run([str(results[0]), "-c", "import iniconfig, sys; print(sys.prefix)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(env_dir(home, spec))
    has_pip = subprocess.run([str(results[0]), "-c", "import pip"], capture_output=True, check=False).returncode == 0
    assert has_pip is (installer == "pip"), "uv envs are made --no-seed"


@network
def test_a_missing_wheel_is_an_env_error_with_the_installer_log(home: Home, wheels: Path) -> None:
    wheelhouse, lock = package(home, "lib", one_wheel(wheels))
    lock.write_text(lock.read_text() + "nosuchpackage==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    spec = spec_for("lib", lock)
    with pytest.raises(EnvError) as info:
        ensure_env(home, spec, lock, wheelhouse)
    assert info.value.log is not None and "nosuchpackage" in info.value.log.read_text()
    assert str(info.value.log) in str(info.value)
    assert not env_dir(home, spec).exists(), "no half-built environment is left behind"


@network
@pytest.mark.parametrize("installer", ["uv", pytest.param("pip", marks=pytest.mark.slow)])
def test_pip_configuration_of_the_machine_cannot_fill_a_gap_in_the_wheelhouse(
    home: Home, wheels: Path, installer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if installer == "uv" and find_uv() is None:
        pytest.skip("uv is not installed")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for whl in one_wheel(wheels, "pluggy"):
        shutil.copy(whl, elsewhere)
    wheelhouse, lock = package(home, "lib", one_wheel(wheels))
    make_lock(one_wheel(wheels) + one_wheel(wheels, "pluggy"), lock)  # needs pluggy too
    for var in ("PIP_FIND_LINKS", "UV_FIND_LINKS", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.setenv(var, str(elsewhere))
    with pytest.raises(EnvError) as info:
        ensure_env(home, spec_for("lib", lock), lock, wheelhouse, use_uv=installer == "uv")
    assert "pluggy" in info.value.log.read_text()  # type: ignore[union-attr]


@network
def test_a_half_built_env_is_removed_and_rebuilt(home: Home, wheels: Path) -> None:
    wheelhouse, lock = package(home, "lib", one_wheel(wheels))
    spec = spec_for("lib", lock)
    half = env_dir(home, spec)
    (half / "bin").mkdir(parents=True)
    (half / "bin" / "python").write_text("not a python")
    python = ensure_env(home, spec, lock, wheelhouse)
    assert (half / MARKER).is_file()
    subprocess.run([str(python), "-c", "import iniconfig"], check=True)


def test_a_lock_that_changed_since_it_was_recorded_is_refused(home: Home, tmp_path: Path) -> None:
    lock = tmp_path / "era.txt"
    lock.write_text("iniconfig==2.0\n")
    spec = spec_for("lib", lock)
    lock.write_text("iniconfig==2.1\n")
    with pytest.raises(EnvError, match="does not match its recorded sha256"):
        ensure_env(home, spec, lock, tmp_path)


# ----------------------------------------------------------------------------- checkouts


SETUP_PY = """\
from pathlib import Path
from setuptools import setup

# Like setuptools-scm: the build writes a file the package imports.
Path("calc/_build_info.py").write_text("BUILT = True\\n")
setup()
"""
PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "calc"
version = "0.1"

[tool.setuptools]
packages = ["calc"]

[tool.ruff]
line-length = 100
"""


def _calc_repo(home: Home) -> tuple[RepoBuilder, list[str]]:
    src = RepoBuilder(home.root / "src")
    shas = [
        src.commit("Start", {
            "pyproject.toml": PYPROJECT, "setup.py": SETUP_PY, ".gitignore": "calc/_build_info.py\n",
            "calc/__init__.py": "from calc._build_info import BUILT\n", "tests/test_calc.py": "X = 1\n",
        }),
        src.commit("Tidy the linter config", {"pyproject.toml": PYPROJECT.replace("100", "88")}),
        src.commit("Release 0.2", {"pyproject.toml": PYPROJECT.replace('"0.1"', '"0.2"')}),
    ]
    shutil.copytree(src.path, home.repo_dir("calc"))
    return src, shas


def test_build_digest_ignores_linter_settings_but_not_the_build(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    first = build_digest(tmp_path)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT.replace("100", "88"))
    assert build_digest(tmp_path) == first
    (tmp_path / "pyproject.toml").write_text(PYPROJECT.replace('"0.1"', '"0.2"'))
    assert build_digest(tmp_path) != first
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "setup.cfg").write_text("[flake8]\nmax-line-length = 100\n")
    assert build_digest(tmp_path) == first
    (tmp_path / "setup.cfg").write_text("[options]\npackages = find:\n")
    assert build_digest(tmp_path) != first


def test_build_digest_sees_a_move_to_a_src_layout(tmp_path: Path) -> None:
    # flit and hatch find the package themselves: no config file changes, yet an editable
    # install made before the move points at the old folder.
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "calc").mkdir()
    (tmp_path / "calc" / "__init__.py").write_text("")
    (tmp_path / "tests").mkdir()
    flat = build_digest(tmp_path)
    (tmp_path / "tests" / "test_new.py").write_text("")
    (tmp_path / "calc" / "more.py").write_text("")
    assert build_digest(tmp_path) == flat, "new tests and submodules need no reinstall"
    (tmp_path / "src").mkdir()
    (tmp_path / "calc").rename(tmp_path / "src" / "calc")
    assert build_digest(tmp_path) != flat


def test_checkout_resets_patches_and_untracked_files_but_keeps_build_outputs(home: Home) -> None:
    _, shas = _calc_repo(home)
    wt = ensure_worktree(home, "calc", 0)
    assert (wt.path / ".git").read_text().strip() == f"gitdir: {wt.git_dir}"
    checkout(wt, shas[0])
    apply_patch(wt, "diff --git a/new.py b/new.py\nnew file mode 100644\n--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+x = 1\n")
    (wt.path / "stray.txt").write_text("left by a test")
    (wt.path / "calc" / "_build_info.py").write_text("BUILT = True\n")
    (wt.path / "calc" / "__init__.py").write_text("broken")
    (wt.path / ".git").write_text("gitdir: /somewhere/else\n")  # a test rewrote it
    checkout(wt, shas[1], keep=["calc/_build_info.py"])
    assert not (wt.path / "new.py").exists() and not (wt.path / "stray.txt").exists()
    assert (wt.path / "calc" / "_build_info.py").exists()
    assert (wt.path / "calc" / "__init__.py").read_text() == "from calc._build_info import BUILT\n"
    assert wt.git("rev-parse", "HEAD").strip() == shas[1]
    assert (wt.path / ".git").read_text().strip() == f"gitdir: {wt.git_dir}"


def test_restore_puts_every_test_file_back_to_the_commit(home: Home) -> None:
    src = RepoBuilder(home.root / "src")
    sha = src.commit("Start", {"lib.py": "X = 1\n", "tests/test_a.py": "def test_a(): pass\n",
                               "tests/conftest.py": "# theirs\n"})
    shutil.copytree(src.path, home.repo_dir("r"))
    wt = ensure_worktree(home, "r", 0)
    checkout(wt, sha)
    (wt.path / "tests" / "conftest.py").write_text("# patched to pass everything\n")
    (wt.path / "tests" / "test_a.py").unlink()
    (wt.path / "conftest.py").write_text("# a new root conftest\n")
    (wt.path / "pytest.ini").write_text("[pytest]\naddopts = -p evil\n")
    (wt.path / "lib.py").write_text("X = 2\n")  # source edits are the patch's business
    touched = restore_test_files(wt, sha, is_test_file, extra={"tests/test_gen.py": "def test_g(): pass\n"})
    assert touched == ["conftest.py", "pytest.ini", "tests/conftest.py", "tests/test_a.py"]
    assert (wt.path / "tests" / "conftest.py").read_text() == "# theirs\n"
    assert (wt.path / "tests" / "test_a.py").exists()
    assert not (wt.path / "conftest.py").exists() and not (wt.path / "pytest.ini").exists()
    assert (wt.path / "lib.py").read_text() == "X = 2\n"
    assert (wt.path / "tests" / "test_gen.py").exists()


@network
def test_editable_install_happens_once_per_build_configuration(home: Home, wheels: Path) -> None:
    _, shas = _calc_repo(home)
    all_wheels = sorted(wheels.glob("*.whl"))
    wheelhouse, lock = package(home, "calc", all_wheels)
    spec = spec_for("calc", lock)
    base = ensure_env(home, spec, lock, wheelhouse)
    wt = ensure_worktree(home, "calc", 0)
    log = home.logs / "install.log"
    installs = lambda: log.read_text().count("pip install")

    checkout(wt, shas[0])
    python = ensure_installed(home, wt, base, spec.key, wheelhouse, sha=shas[0], log=log)
    assert installs() == 1
    assert keep_list(wt) == ["calc/_build_info.py"]
    run = lambda: subprocess.run(
        [str(python), "-c", "import calc, importlib.metadata as m; print(calc.__file__, m.version('calc'))"],
        capture_output=True, text=True, check=True, cwd="/",
    ).stdout.split()
    assert run() == [str(wt.path / "calc" / "__init__.py"), "0.1"]

    checkout(wt, shas[1], keep=keep_list(wt))  # only [tool.ruff] changed
    assert ensure_installed(home, wt, base, spec.key, wheelhouse, sha=shas[1], log=log) == python
    assert installs() == 1
    assert run()[0] == str(wt.path / "calc" / "__init__.py"), "the generated module survived the clean"

    checkout(wt, shas[2], keep=keep_list(wt))  # the version changed
    python2 = ensure_installed(home, wt, base, spec.key, wheelhouse, sha=shas[2], log=log)
    assert installs() == 2 and python2 != python
    run = lambda: subprocess.run(
        [str(python2), "-c", "import calc, importlib.metadata as m; print(calc.__file__, m.version('calc'))"],
        capture_output=True, text=True, check=True, cwd="/",
    ).stdout.split()
    assert run()[1] == "0.2"
    state = InstallState.load(python2.parent.parent)
    assert state is not None and state.sha == shas[2]

    # Back to the first configuration: its overlay is still installed, nothing to redo.
    checkout(wt, shas[0], keep=keep_list(wt))
    assert ensure_installed(home, wt, base, spec.key, wheelhouse, sha=shas[0], log=log) == python
    assert installs() == 2


def test_the_projects_import_names_come_from_its_checkout(tmp_path: Path) -> None:
    from harness.envs import project_import_names

    for rel in ("src/attr/__init__.py", "src/attrs/__init__.py", "src/zope/interface/x.py", "tests/__init__.py",
                "docs/conf.py", "setup.py", "conftest.py", "six.py", "tools/__init__.py", "pkg/__init__.py",
                "notapkg/readme.txt", "src/_private/__init__.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    # src/zope: a namespace package; notapkg: no __init__.py at the root, so no package
    assert project_import_names(tmp_path) == ["attr", "attrs", "pkg", "six", "zope"]
