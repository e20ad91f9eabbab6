"""Dependency declarations and eras, read from real git repositories built per scenario."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from repo_builder import RepoBuilder

from appliance.records import CommitRecord
from harness import deps
from harness.deps import declared_requirements


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()


def record(sha: str) -> CommitRecord:
    return CommitRecord(sha=sha, parent=None, author_date="", author_ts=0, title="t", message="t")


HATCH_PYPROJECT = dedent(
    """
    [build-system]
    requires = ["hatchling", "hatch-fancy-pypi-readme>=23"]
    build-backend = "hatchling.build"

    [project]
    name = "Tiny_Lib"
    dynamic = ["version"]
    requires-python = ">=3.9"
    dependencies = ["Click >= 8.0", "attrs>=22; python_version < '3.12'"]

    [project.optional-dependencies]
    tests-core = ["hypothesis", "pytest>=7"]
    tests = ["tiny-lib[tests-core]", "pympler"]
    docs = ["sphinx"]
    dev = ["tiny_lib[tests,docs]", "pre-commit"]

    [dependency-groups]
    lint = ["ruff"]
    test = [{include-group = "lint"}, "coverage[toml]>=7"]
    Dev = [{include-group = "test"}, "tox"]

    [tool.hatch.version]
    source = "vcs"

    [tool.hatch.build.hooks.custom]
    dependencies = ["hatch-build-helper==1.0"]
    """
)


def test_pyproject_extras_groups_self_references_and_hatch_build_needs(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    sha = repo.commit(
        "Add project", {"pyproject.toml": HATCH_PYPROJECT, "src/tiny_lib/__init__.py": ""}
    )

    decl = declared_requirements(repo.path, sha)

    assert decl.requirements == [
        'attrs>=22; python_version < "3.12"',
        "click>=8.0",
        "coverage[toml]>=7",
        "hypothesis",
        "pre-commit",
        "pympler",
        "pytest>=7",
        "ruff",
        "sphinx",  # dev pulls docs in through tiny_lib[tests,docs]
        "tox",
    ]
    # the project itself is expanded, never locked
    assert not any(r.startswith("tiny-lib") for r in decl.requirements)
    assert decl.build_requires == [
        "editables~=0.3",  # hatchling's editable hook, fails offline without it
        "hatch-build-helper==1.0",
        "hatch-fancy-pypi-readme>=23",
        "hatch-vcs",  # [tool.hatch.version] source = "vcs"
        "hatchling",
    ]
    assert decl.sources == ["pyproject.toml"]
    assert decl.project_name == "Tiny_Lib"
    assert decl.build_backend == "hatchling.build"
    assert decl.requires_python == ">=3.9"
    assert len(decl.key) == 64


def test_requirements_files_follow_r_and_skip_options_paths_and_docs(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    sha = repo.commit(
        "Add requirements",
        {
            "setup.py": "from setuptools import setup\nsetup(name='lib')\n",
            "requirements.txt": dedent(
                """
                # runtime
                -r requirements/base.txt
                -e .
                --index-url https://example.invalid/simple
                requests>=2  # inline comment
                git+https://example.invalid/x.git#egg=x
                ./vendored/thing
                """
            ),
            "requirements/base.txt": "six==1.16.0 \\\n  --hash=sha256:abc \\\n  --hash=sha256:d\n",
            "requirements/tests.txt": "-r ../requirements/base.txt\npytest==8.0.0\n-c c.txt\n",
            "test-requirements.txt": "mock\n",
            "requirements-docs.txt": "sphinx==1.0\n",
            "docs/requirements.txt": "furo\n",
        },
    )

    decl = declared_requirements(repo.path, sha)

    assert decl.requirements == ["mock", "pytest==8.0.0", "requests>=2", "six==1.16.0"]
    assert decl.build_requires == ["setuptools>=40.8.0", "wheel"]  # legacy setup.py default
    assert decl.build_backend == "setuptools.build_meta:__legacy__"
    assert "requirements-docs.txt" not in decl.sources
    assert {"requirements.txt", "requirements/base.txt", "requirements/tests.txt"} <= set(
        decl.sources
    )
    assert any("git+https" in n for n in decl.notes)


SETUP_PY = dedent(
    """
    import os
    from setuptools import setup, find_packages

    NAME = "legacy-lib"
    INSTALL_REQUIRES = ["six>=1.10", "funcsigs; python_version<'3'"]
    EXTRAS_REQUIRE = {
        "docs": ["sphinx"],
        "tests_no_zope": ["hypothesis", "pytest>=4.3.0"],
    }
    EXTRAS_REQUIRE["tests"] = EXTRAS_REQUIRE["tests_no_zope"] + ["zope.interface"]
    EXTRAS_REQUIRE["dev"] = EXTRAS_REQUIRE["tests"] + ["pre-commit", "legacy-lib[docs]"]
    LONG = open(os.path.join(os.path.dirname(__file__), "README.rst")).read()

    setup(
        name=NAME,
        long_description=LONG,
        packages=find_packages(),
        install_requires=INSTALL_REQUIRES,
        extras_require=EXTRAS_REQUIRE,
        tests_require=["nose"],
        setup_requires=["cython>=0.29"],
        use_scm_version=True,
    )
    """
)


def test_setup_py_literals_names_and_subscript_assignments(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    sha = repo.commit("Add setup.py", {"setup.py": SETUP_PY, "README.rst": "x\n"})

    decl = declared_requirements(repo.path, sha)

    assert decl.requirements == [
        'funcsigs; python_version < "3"',
        "hypothesis",
        "nose",
        "pre-commit",
        "pytest>=4.3.0",
        "six>=1.10",
        "sphinx",
        "zope-interface",
    ]
    assert decl.build_requires == ["cython>=0.29", "setuptools-scm", "setuptools>=40.8.0", "wheel"]
    assert decl.project_name == "legacy-lib"


def test_setup_py_that_computes_everything_gives_up_gracefully(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    sha = repo.commit(
        "Add odd setup.py",
        {
            "setup.py": "import setuptools\nreqs = open('reqs').read().split()\n"
            "setuptools.setup(install_requires=reqs, **{'name': 'x'})\n",
            "broken/setup.py": "def (:\n",
        },
    )
    decl = declared_requirements(repo.path, sha)
    assert decl.requirements == ["pytest"]  # pytest is always there to run the tests
    assert any("install_requires is computed" in n for n in decl.notes)

    sha2 = repo.commit("Break setup.py", {"setup.py": "def (:\n"})
    decl2 = declared_requirements(repo.path, sha2)
    assert decl2.requirements == ["pytest"]
    assert any("does not parse" in n for n in decl2.notes)


def test_setup_cfg_and_unparsable_pyproject(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    sha = repo.commit(
        "Add setup.cfg",
        {
            "setup.cfg": dedent(
                """
                [metadata]
                name = cfglib

                [options]
                install_requires =
                    attrs>=19.2
                    # a comment
                    typing-extensions; python_version < "3.8"
                setup_requires = setuptools_scm

                [options.extras_require]
                testing =
                    pytest-cov
                    cfglib[speed]
                speed = ujson
                """
            ),
            "pyproject.toml": "this is [not toml\n",
        },
    )
    decl = declared_requirements(repo.path, sha)
    assert decl.requirements == [
        "attrs>=19.2",
        "pytest",
        "pytest-cov",
        'typing-extensions; python_version < "3.8"',
        "ujson",
    ]
    assert decl.build_requires == ["setuptools-scm", "setuptools>=40.8.0", "wheel"]
    assert any("not valid TOML" in n for n in decl.notes)


TOX_INI = dedent(
    """
    [tox]
    envlist = py26, py27, py33, pep8

    [base]
    deps =
        pretend  # the 2013 structlog way: test tools declared only here
        -r{toxinidir}/ci/test.txt

    [testenv]
    extras = speed
    deps=
        {[base]deps}
        pytest-cov
        py27: mock
        -e .
        .[docs]
        {env:EXTRA_DEP:}
    commands=py.test tests

    [testenv:pep8]
    deps = flake8
    """
)


def test_tox_ini_testenv_deps_substitutions_and_extras(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    c1 = repo.commit(
        "Add lib",
        {
            "setup.py": "from setuptools import setup\nsetup(name='lib', extras_require={'speed': ['ujson']})\n",
            "tox.ini": TOX_INI,
            "ci/test.txt": "hypothesis\n",
        },
    )
    decl = declared_requirements(repo.path, c1)
    # flake8 is the lint env's, mock only py27's; the project itself is never locked.
    assert decl.requirements == ["hypothesis", "pretend", "pytest", "pytest-cov", "ujson"]
    assert {"tox.ini", "ci/test.txt"} <= set(decl.sources)
    assert any("py27: mock" in n for n in decl.notes) and any("{env:" in n for n in decl.notes)

    # A change to tox.ini alone starts a new era.
    c2 = repo.commit("Test with freezegun too", {"tox.ini": TOX_INI.replace("pytest-cov", "pytest-cov\n    freezegun")})
    c3 = repo.commit("Code", {"lib.py": "x = 1\n"})
    eras = deps.assign_eras(repo.path, [record(s) for s in (c1, c2, c3)])
    assert [e.commits for e in eras] == [[c1], [c2, c3]]
    assert "freezegun" in eras[1].requirements and "freezegun" not in eras[0].requirements


def test_an_unreadable_tox_ini_is_a_note(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    sha = repo.commit("Add lib", {"tox.ini": "deps = no section header\n", "lib.py": "x = 1\n"})
    decl = declared_requirements(repo.path, sha)
    assert decl.requirements == ["pytest"] and any("tox.ini: unreadable" in n for n in decl.notes)


def test_poetry_constraints_become_pep440(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    sha = repo.commit(
        "Add poetry project",
        {
            "pyproject.toml": dedent(
                """
                [tool.poetry]
                name = "richish"

                [tool.poetry.dependencies]
                python = "^3.8"
                pygments = "^2.13.0"
                markdown-it-py = ">=2.2.0"
                ipywidgets = { version = ">=7.5.1,<9", optional = true }
                typing-extensions = { version = "^4.0.0", python = "<3.9" }
                zero = "^0.2.3"

                [tool.poetry.dev-dependencies]
                pytest = "~7.0"
                attrs = "21.4.0"
                localthing = { path = "../x" }

                [build-system]
                requires = ["poetry-core>=1.0.0"]
                build-backend = "poetry.core.masonry.api"
                """
            )
        },
    )
    decl = declared_requirements(repo.path, sha)
    assert decl.requirements == [
        "attrs==21.4.0",
        "markdown-it-py>=2.2.0",
        "pygments<3,>=2.13.0",
        "pytest<7.1,>=7.0",
        "typing-extensions<5,>=4.0.0",
        "zero<0.3,>=0.2.3",
    ]
    assert decl.build_requires == ["poetry-core>=1.0.0"]


def test_key_ignores_file_layout_but_not_content(tmp_path: Path) -> None:
    a = RepoBuilder(tmp_path / "a")
    sha_a = a.commit(
        "a", {"setup.py": "from setuptools import setup\nsetup(install_requires=['Six>=1'])\n"}
    )
    b = RepoBuilder(tmp_path / "b")
    sha_b = b.commit(
        "b",
        {"setup.cfg": "[options]\ninstall_requires = six >= 1\n", "requirements.txt": "six>=1\n"},
    )
    assert declared_requirements(a.path, sha_a).key == declared_requirements(b.path, sha_b).key
    sha_c = b.commit("c", {"requirements.txt": "six>=2\n"})
    assert declared_requirements(b.path, sha_c).key != declared_requirements(b.path, sha_b).key


def test_reads_the_commit_not_the_work_tree(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    sha = repo.commit("one", {"requirements.txt": "six\n"})
    repo.write({"requirements.txt": "numpy\n", "requirements-dev.txt": "pytest\n"})
    assert declared_requirements(repo.path, sha).requirements == ["pytest", "six"]


def test_project_without_any_packaging_has_no_build_requires(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    sha = repo.commit("scripts only", {"tool.py": "print(1)\n", "pyproject.toml": "[tool.black]\n"})
    decl = declared_requirements(repo.path, sha)
    assert decl.build_requires == []
    assert decl.requirements == ["pytest"]


# ---------------------------------------------------------------------------------------
# Eras


def test_eras_follow_declaration_changes_including_rejected_commits_and_merges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real = deps.declared_requirements

    def counting(repo_dir: Path, sha: str) -> deps.Declaration:
        reads.append(sha)
        return real(repo_dir, sha)

    monkeypatch.setattr(deps, "declared_requirements", counting)

    repo = RepoBuilder(tmp_path / "lib")
    setup_py = "from setuptools import setup\nsetup(name='lib', install_requires=['six'])\n"
    c1 = repo.commit("Add lib", {"setup.py": setup_py, "lib.py": "x = 1\n"})
    c2 = repo.commit("Change code", {"lib.py": "x = 2\n"})
    # a commit the filter rejects (not passed to assign_eras) changes the test requirements
    repo.commit("Bump test deps", {"requirements-dev.txt": "pytest>=7\nhypothesis\n"})
    c4 = repo.commit("Change code again", {"lib.py": "x = 3\n"})
    c5 = repo.commit("Touch setup.py without changing deps", {"setup.py": setup_py + "# comment\n"})
    # a pull request that moves to hatchling lands as a merge commit
    repo.branch("feature")
    repo.commit(
        "Move to hatchling",
        {
            "pyproject.toml": '[build-system]\nrequires=["hatchling"]\n'
            'build-backend="hatchling.build"\n'
            '[project]\nname="lib"\nversion="1"\ndependencies=["six"]\n'
        },
    )
    repo.delete("setup.py")
    repo.commit("Drop setup.py")
    repo.checkout("main")
    c6 = repo.commit("Unrelated work on main", {"other.py": "y = 1\n"})
    c7 = repo.merge("feature", "Merge pull request #7 from ada/feature\n\nMove to hatchling")
    # later on, requirements move back to exactly the first era's set
    c8 = repo.commit(
        "Return to setuptools",
        {"setup.py": setup_py, "pyproject.toml": "[tool.black]\n", "requirements-dev.txt": ""},
    )

    commits = [record(s) for s in (c1, c2, c4, c5, c6, c7, c8)]
    eras = deps.assign_eras(repo.path, commits)

    by_sha = {c.sha: c.era_key for c in commits}
    era_a, era_b, era_c = eras
    assert era_a.commits == [c1, c2, c8]
    assert era_b.commits == [c4, c5, c6]
    assert era_c.commits == [c7]
    assert era_a.first_commit == c1 and era_b.first_commit == c4
    assert by_sha[c4] == era_b.key and by_sha[c8] == era_a.key
    assert "hypothesis" in era_b.requirements and "hypothesis" not in era_a.requirements
    assert "editables~=0.3" in era_c.build_requires and "hatchling" in era_c.build_requires
    assert era_a.build_requires == ["setuptools>=40.8.0", "wheel"]
    # declarations were read only where a declaring file changed: c1, c4, c5, c7, c8
    assert sorted(reads) == sorted([c1, c4, c5, c7, c8])


def test_eras_watch_files_reached_through_r_outside_the_usual_paths(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    c1 = repo.commit(
        "Add lib",
        {"requirements.txt": "-r ci/test-deps.txt\nsix\n", "ci/test-deps.txt": "pytest\n"},
    )
    c2 = repo.commit("Add hypothesis to CI deps", {"ci/test-deps.txt": "pytest\nhypothesis\n"})
    c3 = repo.commit("Code", {"lib.py": "x = 1\n"})
    commits = [record(s) for s in (c1, c2, c3)]
    eras = deps.assign_eras(repo.path, commits)
    assert [e.commits for e in eras] == [[c1], [c2, c3]]
    assert "hypothesis" in eras[1].requirements


def test_eras_for_commits_off_the_first_parent_chain(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    c1 = repo.commit("one", {"requirements.txt": "six\n"})
    repo.branch("side")
    side = repo.commit("side deps", {"requirements.txt": "numpy\n"})
    repo.checkout("main")
    c2 = repo.commit("two", {"lib.py": "x = 1\n"})
    commits = [record(c1), record(side), record(c2)]
    eras = deps.assign_eras(repo.path, commits)
    assert {tuple(e.commits) for e in eras} == {(c1, c2), (side,)}
    assert deps.assign_eras(repo.path, []) == []


# ----------------------------------------------------------------------------- collectors


def test_requires_python_comes_from_whichever_file_declares_it(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    cfg = repo.commit("Add setup.cfg", {"setup.cfg": "[metadata]\nname = cfg-lib\n\n[options]\n"
                                                      "python_requires = >=3.6\ninstall_requires =\n    six\n"})
    assert declared_requirements(repo.path, cfg).requires_python == ">=3.6"
    py = repo.commit("Move to setup.py", {"setup.cfg": "[flake8]\n", "setup.py": dedent("""
        from setuptools import setup
        setup(name="py-lib", python_requires=">=3.7, <4", install_requires=["six"])
        """)})
    decl = declared_requirements(repo.path, py)
    assert (decl.requires_python, decl.project_name) == (">=3.7, <4", "py-lib")
    toml = repo.commit("Move to pyproject", {"pyproject.toml": dedent("""
        [project]
        name = "toml-lib"
        requires-python = ">=3.9"
        """)})
    decl = declared_requirements(repo.path, toml)
    assert (decl.requires_python, decl.project_name) == (">=3.9", "toml-lib")  # [project] first


def test_every_declaration_file_has_its_collector() -> None:
    names = [c.__name__ for c in deps.COLLECTORS]
    assert names == ["_from_pyproject", "_from_dependency_groups", "_from_poetry", "_from_setup_cfg",
                     "_from_setup_py", "_from_tox_ini", "_from_requirements_files"]


def test_eras_know_the_project_and_its_python(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    sha = repo.commit("Add project", {"pyproject.toml": HATCH_PYPROJECT, "src/tiny_lib/__init__.py": ""})
    (era,) = deps.assign_eras(repo.path, [record(sha)])
    assert (era.project, era.requires_python) == ("tiny-lib", ">=3.9")


def test_eras_of_maintenance_branch_commits_follow_their_own_chain(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "lib")
    base = repo.commit("Start", {"requirements.txt": "six\n", "a.py": "x = 1\n"})
    repo.branch("2.x-line")
    on_branch = repo.commit("Pin six on the branch", {"requirements.txt": "six<2\n"})
    later_on_branch = repo.commit("Fix a", {"a.py": "x = 2\n"})
    repo.checkout("main")
    on_main = repo.commit("Need attrs", {"requirements.txt": "six\nattrs\n"})
    commits = [record(s) for s in (base, on_main, on_branch, later_on_branch)]
    eras = deps.assign_eras(repo.path, commits, tips=["main", "2.x-line"])
    era_of = {c.sha: c.era_key for c in commits}
    assert era_of[on_branch] == era_of[later_on_branch] != era_of[base]
    by_key = {e.key: e for e in eras}
    assert "six<2" in by_key[era_of[later_on_branch]].requirements
    assert "attrs" in by_key[era_of[on_main]].requirements
