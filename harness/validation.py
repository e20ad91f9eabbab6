"""Gold-patch validation: turn a kept commit into a SWE-bench-shaped task, or say why not.

For one commit (``validate_commit``):

1. at the parent, apply the commit's ``test_patch`` and run the test files it touched;
2. at the parent, apply the ``gold_patch`` (then the test files of the commit) and run
   them again, twice: a test whose outcome differs between those two runs is flaky and
   left out;
3. FAIL_TO_PASS = failed, errored or was not collected before, passed after (both runs);
   PASS_TO_PASS = passed every time. Before every run the checkout is rebuilt from scratch
   and every test-side file restored from the commit, so nothing a patch does to tests,
   ``conftest.py`` or ``pytest.ini`` can change the verdict;
4. status: ``valid`` (at least one FAIL_TO_PASS), ``no_fail_to_pass``, ``flaky`` (the only
   candidates were flaky), ``timeout``, ``env_error`` (no environment, or pytest cannot run
   at the parent), ``patch_error`` (a patch does not apply, or breaks the install or pytest),
   ``grading_conflict`` (in any run, the outcomes cra's pytest plugin streamed, the JUnit
   file, the exit status and the closing counts disagree: see ``harness.testrun``).

For a repo (``validate_repo``): K workers, one checkout each (threads driving sandboxed
subprocesses; the GIL is idle while they wait), results written by the calling thread
only, one transaction per task. The commits without a task row are the work left, so a
run stopped by a crash or Ctrl-C continues where it stopped and never writes half a row.
Each commit is claimed in the DB (a lease, renewed by a heartbeat) before a worker gets
it, so two processes on one home share the commits, and a killed process's commits are
taken over.

Test supplementation (``supplement``): for a commit that ends ``no_fail_to_pass``, a
``TestGenerator`` writes tests from the diff; only those failing at the parent and passing
(twice) at the commit are kept, added to ``test_patch`` and the task marked supplemented.
"""

from __future__ import annotations

import ast
import fcntl
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Protocol

from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import get_eras, get_repo
from appliance.db.leases import (
    DEFAULT_LEASE_S,
    Claim,
    Heartbeat,
    Owner,
    claim,
    release,
    release_all,
)
from appliance.db.tasks import STATUSES, TaskRecord, pending_commits, save_task
from appliance.errors import BadInput, CraError
from appliance.records import CommitRecord, EraRecord
from appliance.status import LeaseKind
from harness.envs import EnvError, EnvSpec, ensure_env, foreign_imports
from harness.filters import classify_path
from harness.git import git
from harness.pytest_config import PytestSettings, oracle_options, settings_at
from harness.sandbox import Limits, require_full_isolation
from harness.testrun import (
    FAILING,
    CommitSplit,
    TestRun,
    is_test_file,
    run_env,
    run_pytest,
    split_commit,
)
from harness.worktrees import (
    PatchError,
    Worktree,
    apply_patch,
    checkout,
    ensure_installed,
    ensure_worktree,
    keep_list,
    restore_test_files,
)

ValidationResult = TaskRecord  # what validate_commit returns is exactly the row it stores

Progress = Callable[[int, int, "TaskRecord | None"], None]
"""progress(done, total, task): called once with (0, total, None), then after every task."""

DEFAULT_TIMEOUT_S = 300.0


@dataclass
class ValidationOptions:
    """How hard validation tries; the defaults suit a real repo on a small box."""

    limits: Limits = field(default_factory=lambda: Limits(timeout_s=DEFAULT_TIMEOUT_S))
    level: str | None = None  # sandbox level; None: the best available
    use_uv: bool | None = None  # None: uv when installed
    python: str | None = None  # X.Y; None: the repo package's
    allow_weak_sandbox: bool = False  # run a generator's tests below bwrap (supplement)


class _Failure(Exception):
    """Ends one commit's validation early with a recorded status (never leaves this module)."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


# ----------------------------------------------------------------------------- one commit


class _Session:
    """Everything one commit's runs share: the checkout, the environments, the log."""

    def __init__(
        self, home: Home, repo: str, commit: CommitRecord, split: CommitSplit, *, slot: int,
        options: ValidationOptions, log: Path, settings: PytestSettings,
    ):
        self.home, self.repo, self.commit, self.split = home, repo, commit, split
        self.slot, self.options, self.log = slot, options, log
        self.settings = settings
        self.imports_checked = False
        self.durations: dict[str, float] = {}
        self.wt: Worktree | None = None
        self.base_python: Path | None = None
        self.python: Path | None = None
        self.env_key: str | None = None
        self.isolation: str | None = None

    def is_test_side(self, path: str) -> bool:
        """Test-side files, by cra's rule and by the project's own pytest settings."""
        return is_test_file(path) or self.settings.is_test_module(path)

    def note(self, text: str) -> None:
        with self.log.open("a", encoding="utf-8") as fh:
            fh.write(text.rstrip("\n") + "\n")

    def timed(self, name: str, started: float) -> None:
        self.durations[name] = round(self.durations.get(name, 0.0) + time.monotonic() - started, 4)

    def setup_env(self, era: EraRecord | None, python: str) -> None:
        if era is None:
            raise _Failure("env_error", "the commit belongs to no dependency era")
        if era.status != "locked" or not era.lock_path or not era.lock_sha256:
            raise _Failure("env_error", f"era {era.key[:12]} has no lock ({era.status}: {era.error or 'not locked'})")
        wheelhouse = self.home.wheelhouse(self.repo)
        lock = wheelhouse / era.lock_path
        spec = EnvSpec(self.repo, era.lock_sha256, era.python or python, _platform())
        self.env_key = spec.key
        started = time.monotonic()
        try:
            self.base_python = ensure_env(
                self.home, spec, lock, wheelhouse, use_uv=self.options.use_uv,
            )
        except EnvError as exc:
            self.note(f"[env] {exc}")
            if exc.log is not None and exc.log.is_file():  # the installer's words, kept with the task
                self.note("  --- environment log tail ---\n" + exc.log.read_text(errors="replace")[-6000:])
            raise _Failure("env_error", str(exc)) from exc
        finally:
            self.timed("env", started)
        started = time.monotonic()
        self.wt = ensure_worktree(self.home, self.repo, self.slot)
        self.timed("worktree", started)

    def snapshot(self) -> str:
        """Every path that differs from the index or is untracked (ignored ones too)."""
        assert self.wt is not None
        return self.wt.git("status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching")

    def prepare_again(self, patches: list[tuple[str, str]], snapshot: str,
                      extra: dict[str, str] | None = None) -> str:
        """Prepare the same state once more, unless the last run left the checkout exactly
        as it found it (the usual case): then one ``git status`` replaces a rebuild."""
        started = time.monotonic()
        same = self.snapshot() == snapshot
        self.timed("prepare", started)
        if same:
            return snapshot
        self.note("[prepare] the last run changed the checkout: rebuilding it")
        self.prepare(patches, extra)
        return self.snapshot()

    def prepare(self, patches: list[tuple[str, str]], extra: dict[str, str] | None = None) -> None:
        """parent + patches, test files restored from the commit, installed editable.

        The gold patch is applied to the bare parent, as SWE-bench applies a model's patch,
        and the test files then come from the commit (which *is* parent + test_patch for
        them): a patch made against the parent applies, and its edits to tests vanish.
        """
        assert self.wt is not None and self.env_key is not None and self.base_python is not None
        parent = self.commit.parent
        assert parent is not None
        started = time.monotonic()
        checkout(self.wt, parent, keep=keep_list(self.wt))
        for name, patch in patches:
            try:
                apply_patch(self.wt, patch)
            except PatchError as exc:
                self.timed("prepare", started)
                raise _Failure("patch_error", f"the {name} does not apply at the parent: {exc.message}") from exc
        restored = restore_test_files(self.wt, self.commit.sha, self.is_test_side, extra=extra)
        if restored:
            self.note(f"[prepare] restored from the commit: {', '.join(restored[:20])}")
        self.timed("prepare", started)
        gold = any(name != "test_patch" for name, _ in patches)
        if not any((self.wt.path / f).is_file() for f in ("pyproject.toml", "setup.py")):
            where = "with the gold patch" if gold else "at the parent"
            raise _Failure(
                "patch_error" if gold else "env_error",
                f"no pyproject.toml or setup.py {where}: nothing to install the project from",
            )
        started = time.monotonic()
        try:
            self.python = ensure_installed(
                self.home, self.wt, self.base_python, self.env_key,
                self.home.wheelhouse(self.repo), sha=self.commit.sha, log=self.log,
                level=self.options.level,
            )
        except EnvError as exc:
            status = "patch_error" if gold else "env_error"
            where = "with the gold patch" if gold else "at the parent"
            raise _Failure(status, f"the editable install fails {where} (see the log)") from exc
        finally:
            self.timed("install", started)
        if not self.imports_checked:
            self.check_imports()

    def check_imports(self) -> None:
        """Before the oracle runs: the project's packages must come from the checkout.

        An environment holding a released copy of the project ahead of the editable
        install would test that copy, and every gold patch would change nothing the tests
        see (a package made by an older cra, whose locks pinned the project itself).
        """
        assert self.wt is not None and self.python is not None and self.base_python is not None
        started = time.monotonic()
        try:
            foreign = foreign_imports(
                self.python, self.wt.path, env=run_env(self.python, [self.base_python.parent]),
                readonly=self._readonly(), level=self.options.level,
                scratch=self.home.tmp / "sandbox",
            )
        except EnvError as exc:
            raise _Failure("env_error", str(exc)) from exc
        finally:
            self.timed("imports", started)
        self.imports_checked = True
        if foreign:
            raise _Failure(
                "env_error",
                f"the tests would import another copy of the project, not the checkout "
                f"{self.wt.path}: {'; '.join(str(f) for f in foreign)} (a released copy in the "
                "environment; repackage the repo with this cra, whose locks leave the project out)",
            )

    def _readonly(self) -> list[Path]:
        assert self.wt is not None and self.python is not None and self.base_python is not None
        return [self.python.parent.parent, self.base_python.parent.parent, self.wt.git_dir, self.wt.git_store]

    def run(self, label: str, files: list[str]) -> TestRun:
        assert self.wt is not None and self.python is not None and self.base_python is not None
        run_dir = self.home.tmp / "runs" / f"{self.repo}-{self.slot}" / label
        started = time.monotonic()
        result = run_pytest(
            self.python, self.wt.path, files, run_dir=run_dir,
            env=run_env(self.python, [self.base_python.parent]), limits=self.options.limits,
            readonly=self._readonly(), level=self.options.level,
        )
        self.timed(label, started)
        self.durations["pytest"] = round(self.durations.get("pytest", 0.0) + result.duration_s, 4)
        self.isolation = result.isolation
        neutral = oracle_options(self.wt.path, files)
        if neutral.dropped:
            self.note(f"[{label}] left out of {neutral.source}'s addopts: {' '.join(neutral.dropped)}")
        self.note(
            f"[{label}] exit {result.returncode} in {result.duration_s:.2f}s from {result.source}"
            f"{' UNTRUSTED' if not result.trusted else ''}"
            f"{' (' + result.note + ')' if result.note else ''}\n"
            + "".join(f"    {v:<8} {k}\n" for k, v in sorted(result.outcomes.items()))
            + "  --- output tail ---\n" + result.output_tail[-2500:] + "\n"
        )
        return result


def commit_split(repo_dir: Path, commit: CommitRecord) -> tuple[CommitSplit, PytestSettings]:
    """The commit as a task sees it, by the project's own pytest settings at the commit.

    A file the project collects as a test module (``python_files`` within ``testpaths``)
    is test-side even where cra's naming rule would not say so, and the files run are the
    test modules the commit touches that pytest, with those settings, collects.
    """
    assert commit.parent is not None
    settings = settings_at(repo_dir, commit.sha)
    files = [replace(f, kind=classify_path(f.path, settings)) for f in commit.files]
    split = split_commit(repo_dir, commit.parent, commit.sha, files)
    wanted = [p for p in split.test_changed if settings.is_test_module(p)]
    present: set[str] = set()
    if wanted:
        listed = git(repo_dir, "ls-tree", "-r", "-z", "--name-only", commit.sha, "--",
                     *(f":(literal){p}" for p in wanted))
        present = {p for p in listed.split("\0") if p}
    split.run_files = sorted(p for p in wanted if p in present)
    return split, settings


def _platform() -> str:
    import sysconfig

    return sysconfig.get_platform()


def _check_run(run: TestRun, label: str, *, at_parent: bool) -> None:
    if run.timed_out:
        raise _Failure("timeout", f"the {label} run timed out")
    if run.conflict:
        # The oracle's sources disagree: a hook or the code under test rewrote a verdict,
        # or a legitimate plugin did. Neither side is trusted; the task is never trained on.
        raise _Failure("grading_conflict", f"the {label} run's results disagree: {run.conflict}")
    if not run.completed:
        why = run.note or f"exit {run.returncode}"
        if "No module named pytest" in run.output_tail:
            raise _Failure("env_error", "pytest is not in the environment: the era's lock lacks it")
        if at_parent:
            raise _Failure("env_error", f"pytest produced no results at the parent ({why})")
        raise _Failure("patch_error", f"pytest produced no results with the gold patch ({why})")
    if at_parent and not run.trusted:
        # The parent's own code and tests disagree with themselves: nothing can be concluded.
        raise _Failure("env_error", f"results at the parent cannot be trusted ({run.note})")


@dataclass
class Verdict:
    status: str
    reason: str | None
    fail_to_pass: list[str]
    pass_to_pass: list[str]
    flaky: list[str]


def classify(before: TestRun, after1: TestRun, after2: TestRun) -> Verdict:
    """FAIL_TO_PASS / PASS_TO_PASS / flaky from the three runs (see the module docstring)."""
    nodes = sorted(
        n for n in set(before.outcomes) | set(after1.outcomes) | set(after2.outcomes) if "::" in n
    )
    f2p: list[str] = []
    p2p: list[str] = []
    flaky: list[str] = []
    flaky_candidates = 0
    for node in nodes:
        b, a1, a2 = before.status_of(node), after1.status_of(node), after2.status_of(node)
        failing_before = b in FAILING or b == "missing"
        if a1 != a2:
            flaky.append(node)
            if failing_before and "passed" in (a1, a2):
                flaky_candidates += 1
            continue
        if a1 != "passed":
            continue
        if failing_before:
            f2p.append(node)
        elif b == "passed":
            p2p.append(node)
    if f2p:
        return Verdict("valid", None, f2p, p2p, flaky)
    if flaky_candidates:
        return Verdict("flaky", f"{flaky_candidates} test(s) would fail→pass but are flaky", f2p, p2p, flaky)
    still = sum(1 for n in nodes if after1.status_of(n) in FAILING | {"missing"})
    if not nodes and after1.errored_files:
        reason = f"the test modules do not import, with or without the gold patch: {', '.join(after1.errored_files[:3])}"
    elif not nodes:
        reason = "the commit's test files hold no tests"
    elif not after1.trusted or not after2.trusted:
        reason = "results with the gold patch cannot be trusted: " + (after1.note or after2.note or "")
    elif still:
        reason = f"{still} test(s) still fail with the gold patch; none fails before and passes after"
    else:
        reason = "every test already passes at the parent"
    return Verdict("no_fail_to_pass", reason, f2p, p2p, flaky)


def validate_commit(
    home: Home,
    repo: str,
    commit: CommitRecord,
    era: EraRecord | None,
    *,
    slot: int = 0,
    options: ValidationOptions | None = None,
    python: str | None = None,
    gold_patch: str | None = None,
) -> ValidationResult:
    """Validate one commit; every ending (timeouts, broken builds) is a returned result.

    ``gold_patch`` replaces the commit's own source changes (the same checks then judge a
    patch from elsewhere, e.g. a model's). Only a bug in cra raises.
    """
    options = options or ValidationOptions()
    started = time.monotonic()
    log_dir = home.logs / "validate" / repo
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{commit.sha[:12]}.log"
    log.write_text(
        f"[cra] validating {repo} {commit.sha} (slot {slot})\n[cra] {commit.title}\n", encoding="utf-8"
    )
    task = TaskRecord(
        repo=repo, sha=commit.sha, parent=commit.parent, status="env_error",
        instruction=commit.message or commit.title, log_path=str(log),
    )
    session: _Session | None = None
    try:
        if commit.parent is None:
            raise _Failure("patch_error", "a root commit has no parent to test against")
        try:
            split, settings = commit_split(home.repo_dir(repo), commit)
        except CraError as exc:
            raise _Failure("env_error", f"cannot read the commit from the repo: {exc}") from exc
        task.test_patch = split.test_patch
        task.gold_patch = split.gold_patch if gold_patch is None else gold_patch
        task.test_files = split.run_files
        if not split.run_files:
            raise _Failure("no_fail_to_pass", "the commit changes no runnable test file")
        session = _Session(home, repo, commit, split, slot=slot, options=options, log=log,
                           settings=settings)
        session.setup_env(era, python or options.python or _current_python())
        task.env_key = session.env_key

        session.prepare([("test_patch", task.test_patch)])
        before = session.run("before", split.run_files)
        task.outcomes["before"] = before.outcomes
        _check_run(before, "parent", at_parent=True)
        runs: list[TestRun] = []
        gold = [("gold patch", task.gold_patch)]
        session.prepare(gold)
        snapshot = session.snapshot()
        for label in ("after1", "after2"):
            if label == "after2":
                snapshot = session.prepare_again(gold, snapshot)
            run = session.run(label, split.run_files)
            task.outcomes[label] = run.outcomes
            _check_run(run, label, at_parent=False)
            runs.append(run)
        verdict = classify(before, runs[0], runs[1])
        task.status, task.reason = verdict.status, verdict.reason
        task.fail_to_pass, task.pass_to_pass, task.flaky = (
            verdict.fail_to_pass, verdict.pass_to_pass, verdict.flaky,
        )
    except _Failure as failure:
        task.status, task.reason = failure.status, failure.reason
    except CraError as exc:  # git or environment trouble outside the expected places
        task.status, task.reason = "env_error", str(exc)
    finally:
        if session is not None:
            task.durations = dict(session.durations)
            task.isolation = session.isolation
        task.durations["total"] = round(time.monotonic() - started, 4)
    with log.open("a", encoding="utf-8") as fh:
        fh.write(
            f"[cra] status {task.status}{': ' + task.reason if task.reason else ''}\n"
            f"[cra] FAIL_TO_PASS {task.fail_to_pass}\n[cra] PASS_TO_PASS {len(task.pass_to_pass)}"
            f" flaky {task.flaky}\n[cra] durations {task.durations}\n"
        )
    return task


def _current_python() -> str:
    import sys

    return f"{sys.version_info.major}.{sys.version_info.minor}"


# ----------------------------------------------------------------------------- supplementation


@dataclass
class GeneratedTest:
    """One test module a generator wrote: a repo-relative path and its source."""

    path: str
    source: str


@dataclass
class TaskContext:
    """What a test generator may look at: the task, its diff and the checkout at the commit."""

    repo: str
    sha: str
    parent: str
    instruction: str
    gold_patch: str
    test_patch: str
    source_files: list[str]
    test_files: list[str]
    worktree: Path  # checked out at the commit; read it, do not write it


class TestGenerator(Protocol):
    """Writes tests for a commit from its diff. The model-backed one comes with the LLM
    providers; anything with this method fits."""

    __test__ = False

    def generate(self, context: TaskContext) -> list[GeneratedTest]: ...


def _usable(test: GeneratedTest, wt: Worktree, sha: str, settings: PytestSettings) -> str | None:
    """Why a generated test cannot be used, or None."""
    p = PurePosixPath(test.path)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        return "path must be relative, inside the repo"
    if not settings.is_test_module(test.path):
        return f"not a test module path here (python_files: {' '.join(settings.python_files)})"
    if wt.git("ls-tree", "--name-only", sha, "--", f":(literal){test.path}").strip():
        return "would overwrite an existing file"
    if not _collects_a_test(test.source, settings):
        return (f"holds no test this project's pytest collects (python_functions: "
                f"{' '.join(settings.python_functions)})")
    return None


def _collects_a_test(source: str, settings: PytestSettings) -> bool:
    """A module-level test function, or a test class holding one, by the project's names."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    funcs = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, funcs) and settings.is_test_function(node.name):
            return True
        if (
            isinstance(node, ast.ClassDef)
            and settings.is_test_class(node.name)
            and any(isinstance(m, funcs) and settings.is_test_function(m.name) for m in node.body)
        ):
            return True
    return False


def supplement(
    home: Home,
    task: TaskRecord,
    commit: CommitRecord,
    era: EraRecord | None,
    generator: TestGenerator,
    *,
    slot: int = 0,
    options: ValidationOptions | None = None,
    python: str | None = None,
) -> TaskRecord:
    """Try to turn a ``no_fail_to_pass`` task valid with generated tests.

    Keeps the generated modules that hold at least one test failing at the parent and
    passing twice with the gold patch; returns the task updated (``supplemented``) or
    unchanged with the reason noted in its log.
    """
    if task.status != "no_fail_to_pass" or commit.parent is None:
        return task
    options = options or ValidationOptions()
    log = Path(task.log_path) if task.log_path else home.logs / "validate" / task.repo / f"{task.sha[:12]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    split, settings = commit_split(home.repo_dir(task.repo), commit)
    session = _Session(home, task.repo, commit, split, slot=slot, options=options, log=log,
                       settings=settings)
    started = time.monotonic()
    try:
        session.setup_env(era, python or options.python or _current_python())
        assert session.wt is not None
        checkout(session.wt, commit.sha, keep=keep_list(session.wt))
        context = TaskContext(
            repo=task.repo, sha=task.sha, parent=commit.parent, instruction=task.instruction,
            gold_patch=task.gold_patch, test_patch=task.test_patch,
            source_files=split.source_changed, test_files=split.test_changed,
            worktree=session.wt.path,
        )
        generated = generator.generate(context)
        extra: dict[str, str] = {}
        for test in generated:
            why = _usable(test, session.wt, commit.sha, settings)
            if why:
                session.note(f"[supplement] dropped {test.path}: {why}")
            else:
                extra[test.path] = test.source
        if not extra:
            session.note("[supplement] no usable generated test")
            return task
        files = sorted(extra)
        session.prepare([("test_patch", task.test_patch)], extra)
        before = session.run("supplement-before", files)
        _check_run(before, "parent", at_parent=True)
        runs = []
        gold = [("gold patch", task.gold_patch)]
        session.prepare(gold, extra)
        snapshot = session.snapshot()
        for label in ("supplement-after1", "supplement-after2"):
            if label == "supplement-after2":
                snapshot = session.prepare_again(gold, snapshot, extra)
            run = session.run(label, files)
            _check_run(run, label, at_parent=False)
            runs.append(run)
        verdict = classify(before, runs[0], runs[1])
        kept = sorted({n.split("::", 1)[0] for n in verdict.fail_to_pass})
        if not kept:
            session.note("[supplement] no generated test fails at the parent and passes after")
            return task
        wt = session.wt
        wt.git("add", "--", *(f":(literal){p}" for p in kept))
        addition = wt.git("diff", "--cached", "--binary", "--full-index", "HEAD", "--",
                          *(f":(literal){p}" for p in kept))
        task.test_patch = task.test_patch + addition
        task.test_files = sorted(set(task.test_files) | set(kept))
        in_kept = lambda n: n.split("::", 1)[0] in kept
        task.fail_to_pass = sorted(set(task.fail_to_pass) | {n for n in verdict.fail_to_pass if in_kept(n)})
        task.pass_to_pass = sorted(set(task.pass_to_pass) | {n for n in verdict.pass_to_pass if in_kept(n)})
        task.flaky = sorted(set(task.flaky) | {n for n in verdict.flaky if in_kept(n)})
        task.outcomes["supplement_before"] = before.outcomes
        task.outcomes["supplement_after1"] = runs[0].outcomes
        task.outcomes["supplement_after2"] = runs[1].outcomes
        task.status, task.supplemented = "valid", True
        task.reason = f"supplemented: {len(kept)} generated test module(s) fail→pass"
        session.note(f"[supplement] kept {', '.join(kept)}")
    except _Failure as failure:
        session.note(f"[supplement] gave up: {failure.status}: {failure.reason}")
    except CraError as exc:
        session.note(f"[supplement] gave up: {exc}")
    finally:
        task.durations["supplement"] = round(time.monotonic() - started, 4)
    return task


# ----------------------------------------------------------------------------- a whole repo


def parse_since(since: str | datetime | int | None, *, option: str = "--since") -> int | None:
    """A date option (``--since``, ``--before``) as epoch seconds: an ISO date/time (UTC when
    naive), a datetime or seconds; ``BadInput`` naming ``option`` otherwise."""
    if since is None or isinstance(since, int):
        return since
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since)
        except ValueError as exc:
            raise BadInput(f"{option} {since!r} is not a date", hint="use YYYY-MM-DD") from exc
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return int(since.timestamp())


def validate_repo(
    home: Home,
    db: Database,
    name: str,
    *,
    shas: list[str] | None = None,
    limit: int | None = None,
    since: str | datetime | int | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    options: ValidationOptions | None = None,
    generator: TestGenerator | None = None,
    force: bool = False,
    lease_s: float = DEFAULT_LEASE_S,
) -> dict[str, int]:
    """Validate the kept commits of ``name`` that have no task yet; {status: count} of this run.

    ``force`` re-validates commits that already have a task (their rows are replaced).
    Ctrl-C stops the run between tasks: finished tasks are stored, running ones discarded.

    Several processes may validate one repo at once and share the work: each commit is
    claimed in the DB before it is validated (``appliance.db.leases``), a commit another
    live process holds is left to it (and waited for), and one whose owner died is taken
    over. ``done_elsewhere`` counts the commits another process finished meanwhile.
    """
    repo = get_repo(db, name)
    eras = {e.key: e for e in get_eras(db, name)}
    commits = pending_commits(
        db, name, shas=shas, since_ts=parse_since(since), limit=limit, include_done=force,
    )
    counts = {s: 0 for s in STATUSES}
    counts[DONE_ELSEWHERE] = 0
    tick = progress or (lambda done, total, task: None)
    tick(0, len(commits), None)
    if not commits:
        return counts
    if workers is not None and workers < 1:
        raise BadInput(f"--workers {workers} must be at least 1")
    k = max(1, min(workers or os.cpu_count() or 1, len(commits)))
    options = options or ValidationOptions()
    if generator is not None:  # a model writes tests: they run only where the host is hidden
        require_full_isolation(options.level, allow_weak=options.allow_weak_sandbox,
                               what="model-written tests (--supplement)")
    python = options.python or repo.python_version

    pool = _Pool(home, name, eras, options=options, python=python, generator=generator, workers=k)
    owner = Owner.this_process()
    units = _Units(db, name, commits, owner, lease_s=lease_s, redo=force)
    try:
        with Heartbeat(db, owner, lease_s):
            while units.done < len(commits):
                for commit, state in units.feed(room=k - units.in_flight):
                    if state == Claim.DONE:
                        counts[DONE_ELSEWHERE] += 1
                        tick(units.done, len(commits), None)
                    else:
                        pool.todo.put(commit)
                task = pool.next_result()
                if task is None:
                    continue
                with db.write():  # the task and the end of its claim land together
                    save_task(db, task, replace=force)
                    release(db, LeaseKind.VALIDATE, name, task.sha, owner)
                counts[task.status] += 1
                units.finished()
                tick(units.done, len(commits), task)
    finally:
        pool.stop.set()
        release_all(db, owner)  # what we did not finish, others may take at once
    return counts


class _Pool:
    """K worker threads validating the commits put on ``todo``; results come back to the
    calling thread (``next_result``), the only one that writes the DB."""

    def __init__(self, home: Home, name: str, eras: dict[str, EraRecord], *, options: ValidationOptions,
                 python: str, generator: TestGenerator | None, workers: int):
        self.home, self.name, self.eras = home, name, eras
        self.options, self.python, self.generator = options, python, generator
        self.todo: queue.Queue[CommitRecord] = queue.Queue()
        self.done: queue.Queue[tuple[TaskRecord | None, BaseException | None]] = queue.Queue()
        self.stop = threading.Event()
        # Daemon threads: on Ctrl-C the process may exit without waiting for running commits;
        # their sandboxes die with us (bwrap --die-with-parent, PDEATHSIG), their rows never land.
        self.threads = [threading.Thread(target=self._work, daemon=True, name=f"validate-{i}")
                        for i in range(workers)]
        for t in self.threads:
            t.start()

    def _work(self) -> None:
        # A slot no other thread or process is using: two processes on one home each get
        # checkouts of their own instead of queueing for the same ones.
        with free_slot(self.home.worktrees / self.name) as slot:
            while not self.stop.is_set():
                try:
                    commit = self.todo.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    self.done.put((self._one(commit, slot), None))
                except BaseException as exc:  # noqa: BLE001 - a bug: re-raised by the main thread
                    self.done.put((None, exc))
                    return

    def _one(self, commit: CommitRecord, slot: int) -> TaskRecord:
        era = self.eras.get(commit.era_key) if commit.era_key else None
        task = validate_commit(self.home, self.name, commit, era, slot=slot, options=self.options,
                               python=self.python)
        if self.generator is not None and task.status == "no_fail_to_pass":
            task = supplement(self.home, task, commit, era, self.generator, slot=slot, options=self.options,
                              python=self.python)
        return task

    def next_result(self, timeout: float = 0.5) -> TaskRecord | None:
        """A finished task, or None after ``timeout``; a worker's exception is raised here."""
        try:
            task, error = self.done.get(timeout=timeout)
        except queue.Empty:
            if not any(t.is_alive() for t in self.threads) and self.done.empty():
                raise RuntimeError("every validation worker stopped with work left") from None
            return None
        if error is not None:
            raise error
        return task


DONE_ELSEWHERE = "done_elsewhere"


class _Units:
    """Which commits this process validates: claimed in the DB before they are handed out,
    those another live process holds checked again every ``poll`` seconds."""

    def __init__(self, db: Database, name: str, commits: list[CommitRecord], owner: Owner, *,
                 lease_s: float, redo: bool):
        self.db, self.name, self.owner, self.lease_s, self.redo = db, name, owner, lease_s, redo
        self.waiting: list[tuple[float, CommitRecord]] = [(0.0, c) for c in commits]
        self.poll = max(0.5, min(5.0, lease_s / 4))
        self.in_flight = 0
        self.done = 0

    def feed(self, room: int) -> list[tuple[CommitRecord, Claim]]:
        """Up to ``room`` commits claimed for our workers, plus those found done elsewhere."""
        out: list[tuple[CommitRecord, Claim]] = []
        now = time.monotonic()
        later: list[tuple[float, CommitRecord]] = []
        for due, commit in self.waiting:
            if room <= 0 or due > now:
                later.append((due, commit))
                continue
            state = claim(self.db, LeaseKind.VALIDATE, self.name, commit.sha, self.owner,
                          lease_s=self.lease_s, redo=self.redo)
            if state == Claim.HELD:
                later.append((now + self.poll, commit))
                continue
            if state == Claim.DONE:
                self.done += 1
            else:
                self.in_flight += 1
                room -= 1
            out.append((commit, state))
        self.waiting = later
        return out

    def finished(self) -> None:
        self.in_flight -= 1
        self.done += 1


@contextmanager
def free_slot(folder: Path) -> Iterator[int]:
    """The lowest worktree slot whose ``.slot-N.lock`` no thread or process holds, held
    until the block ends (``flock`` is per open file: threads exclude each other too)."""
    folder.mkdir(parents=True, exist_ok=True)
    slot = 0
    while True:
        fh = (folder / f".slot-{slot}.lock").open("a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            slot += 1
            continue
        try:
            yield slot
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
        return
