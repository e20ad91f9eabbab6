"""The sample repository that ships with cra: ``corpus/samples/inkwell.bundle``.

The bundle must be exactly what ``scripts/make_sample.py`` generates (so the two never
drift), clone like any repository, and hold a history worth mining: pull-request merges
on the first-parent line, the commits a filter must reject, two dependency eras, and
feature and fix commits that really are tasks: their tests fail at the parent with the
commit's test changes applied and pass at the commit, as ``cra harness validate`` will
check them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "corpus" / "samples" / "inkwell.bundle"
SCRIPT = ROOT / "scripts" / "make_sample.py"


def git(repo: Path | None, *args: str, input: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C")
    cmd = ["git", "-c", f"core.hooksPath={os.devnull}"]
    cmd += ["-C", str(repo)] if repo else []
    out = subprocess.run(
        [*cmd, *args], input=input, capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
    return out.stdout


def bundle_heads(bundle: Path) -> dict[str, str]:
    heads = {}
    for line in git(None, "bundle", "list-heads", str(bundle)).splitlines():
        sha, ref = line.split()
        heads[ref] = sha
    return heads


def run_pytest(work: Path, files: list[str]) -> subprocess.CompletedProcess[str]:
    """The checkout's tests, run by this interpreter against the checkout's ``src``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GIT_"))}
    env.update(
        PYTHONPATH=str(work / "src"),
        PYTHONDONTWRITEBYTECODE="1",  # same-size files in the same second: stale .pyc
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",  # cra's own plugins are not inkwell's
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def make_sample() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_sample"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def log(make_sample: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> list:
    """What the script says each commit is, from a fresh in-process build."""
    return make_sample.build(tmp_path_factory.mktemp("built") / "inkwell.git")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("clone") / "inkwell"
    git(None, "clone", "-q", str(BUNDLE), str(work))
    return work


def test_script_regenerates_the_committed_bundle(tmp_path: Path) -> None:
    out = tmp_path / "inkwell.bundle"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--bundle", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    committed = bundle_heads(BUNDLE)
    assert f"HEAD {committed['refs/heads/main']}" in proc.stdout
    assert bundle_heads(out) == committed


def test_bundle_verifies_and_clones_with_main_checked_out(clone: Path) -> None:
    git(clone, "bundle", "verify", "-q", str(BUNDLE))
    assert BUNDLE.stat().st_size < 200_000
    assert git(clone, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert git(clone, "rev-parse", "HEAD").strip() == bundle_heads(BUNDLE)["refs/heads/main"]
    assert (clone / "src" / "inkwell" / "__init__.py").is_file()
    assert git(clone, "status", "--porcelain") == ""


def test_dates_increase_from_2023_to_2025(clone: Path) -> None:
    when: dict[str, tuple[int, int]] = {}
    parents: dict[str, list[str]] = {}
    for line in git(clone, "log", "--all", "--format=%H %at %ct %P").splitlines():
        sha, author, committer, *ps = line.split()
        when[sha] = (int(author), int(committer))
        parents[sha] = ps
    for sha, ps in parents.items():
        for parent in ps:
            assert when[sha][0] > when[parent][0] and when[sha][1] > when[parent][1], sha
    years = {datetime.fromtimestamp(a, UTC).year for a, _ in when.values()}
    assert min(years) == 2023 and max(years) == 2025


def test_pull_request_merges_are_units_of_work_on_the_first_parent_line(clone: Path) -> None:
    merges = git(clone, "rev-list", "--first-parent", "--merges", "main").split()
    assert len(merges) >= 2
    inside: list[str] = []
    for merge in merges:
        subject, _, title = git(clone, "log", "-1", "--format=%B", merge).partition("\n\n")
        assert subject.startswith("Merge pull request #") and " from " in subject
        assert title.strip(), "GitHub puts the PR title after a blank line"
        assert git(clone, "log", "-1", "--format=%cn", merge).strip() == "GitHub"
        inside += git(clone, "log", "--format=%s", f"{merge}^1..{merge}^2").splitlines()
    assert {"wip", "fix tests"} <= set(inside)
    first_parent = set(git(clone, "log", "--first-parent", "--format=%s", "main").splitlines())
    assert not {"wip", "fix tests"} & first_parent


def test_history_holds_commits_a_miner_must_reject(clone: Path) -> None:
    lines = git(clone, "log", "--first-parent", "--format=%an|%s", "main").splitlines()
    subjects = [line.split("|", 1)[1] for line in lines]
    assert 40 <= len(subjects) <= 60
    for expected in ("Bump version to", "Fix typo in README", "WIP", 'Revert "'):
        assert any(s.startswith(expected) for s in subjects), expected
    assert "pre-commit-ci[bot]|[pre-commit.ci] pre-commit autoupdate" in lines
    black = git(clone, "log", "-1", "--format=%H", "--grep=^Adopt black", "main").strip()
    changed = git(clone, "show", "--format=", "--name-only", black).split()
    assert len(changed) > 12, "the reformat must be too big to be a task"


def test_kinds_the_script_claims(log: list) -> None:
    kinds = [c.kind for c in log if c.first_parent]
    assert kinds.count("task") + kinds.count("merge") >= 25
    rejected = [k for k in kinds if k not in ("task", "merge", "setup")]
    assert len(rejected) >= 15
    must_reject = {"bot", "bump", "docs", "no-tests", "reformat", "revert", "tests-only", "typo"}
    assert must_reject | {"wip", "deps"} <= set(kinds)


def _requirements(pyproject: str) -> tuple:
    data = tomllib.loads(pyproject)
    extras = data.get("project", {}).get("optional-dependencies", {})
    groups = data.get("dependency-groups", {})
    return (
        tuple(data["build-system"]["requires"]),
        tuple(data.get("project", {}).get("dependencies", [])),
        tuple(extras.get("test", [])),
        tuple(r for r in groups.get("test", []) if isinstance(r, str)),
    )


def test_two_dependency_eras(clone: Path) -> None:
    eras: list[tuple] = []
    # Like the miner: read the declarations only where the file that holds them changed.
    changed = git(clone, "log", "--reverse", "--first-parent", "--format=%H", "main", "--",
                  "pyproject.toml")
    for sha in changed.split():
        reqs = _requirements(git(clone, "show", f"{sha}:pyproject.toml"))
        if not eras or eras[-1] != reqs:
            eras.append(reqs)
    assert eras == [
        (("setuptools>=61",), (), ("pytest",), ()),
        (("setuptools>=64",), (), (), ("pytest>=7.4",)),
    ]


# One of each shape: a new argument (the old tests keep passing), a bug fix, a change
# across five modules, and a pull-request merge that adds a module (its new test file
# cannot even be imported at the parent). ``make_sample.py --verify`` checks all of them.
TASKS = [
    ("Add a separator argument to slugify()", True),
    ("Fix snake_case splitting acronyms into single letters", True),
    ("Raise TypeError for non-string input across the package", True),
    ("Merge pull request #12 from priya/template", False),
]


@pytest.mark.parametrize(("subject", "passes_before"), TASKS, ids=[s for s, _ in TASKS])
def test_task_fails_at_the_parent_and_passes_at_the_commit(
    clone: Path, log: list, subject: str, passes_before: bool
) -> None:
    info = next(c for c in log if c.subject == subject)
    assert info.kind in ("task", "merge")
    sha, parent = info.sha, info.parents[0]
    tests = git(clone, "diff", "--name-only", parent, sha, "--", "tests").split()
    assert tests
    patch = git(clone, "diff", parent, sha, "--", "tests")

    git(clone, "checkout", "-q", "-f", parent)
    git(clone, "clean", "-qffdx")
    git(clone, "apply", input=patch)
    before = run_pytest(clone, tests)
    summary = before.stdout.strip().splitlines()[-1]
    assert before.returncode in (1, 2), before.stdout  # 2: the test file fails to import
    assert "failed" in summary or "error" in summary, before.stdout
    assert ("passed" in summary) == passes_before, before.stdout

    git(clone, "checkout", "-q", "-f", sha)
    git(clone, "clean", "-qffdx")
    after = run_pytest(clone, tests)
    assert after.returncode == 0, after.stdout
    git(clone, "checkout", "-q", "-f", "main")
