"""Judge a model's edits the way validation judged the gold patch: resolved or not, and why.

One candidate (``evaluate``) is checked exactly as SWE-bench checks a model's patch:

1. a fresh checkout of the task's parent in a worktree slot (``harness.worktrees``);
2. the task's ``test_patch``, then the model's edits (``harness.edits.apply_edits``),
   refused unwritten as ``oracle_tamper`` when they touch what grades them (the task's
   tests, a conftest, pytest's configuration, start-up files, plugin registration: see
   ``harness.oracle_guard``), and flagged ``suspicious`` when their added lines reach for
   pytest internals, ``atexit``, ``os._exit``, the JUnit report or cra's variables;
3. every test-side file restored from the task's commit, so an edit to a test,
   ``conftest.py`` or ``pytest.ini`` is undone before it can change the verdict;
4. an editable install into the slot's overlay and the task's test files run in the
   sandbox with cra's oracle plugin (``harness.testrun.run_pytest``);
5. resolved iff every FAIL_TO_PASS and every PASS_TO_PASS test passed, the oracle's
   sources agree (else ``grading_conflict``) and the patch is not suspicious.

The environment is the one validation built for the task's era (same ``EnvSpec``, so the
same ``env_key``); nothing is downloaded. Every ending is a returned ``Evaluation`` with a
``kind`` the pipeline stores as the attempt's failure kind; only a bug in cra raises.
"""

from __future__ import annotations

import sys
import sysconfig
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import get_commits, get_eras, get_repo
from appliance.db.tasks import TaskRecord
from appliance.errors import CraError
from harness.edits import Edit, apply_edits
from harness.envs import EnvError, EnvSpec, ensure_env, file_lock
from harness.oracle_guard import suspicious_reasons, tamper_reasons
from harness.pytest_config import settings_at
from harness.sandbox import Limits
from harness.testrun import is_test_file, patch_paths, run_env, run_pytest
from harness.worktrees import (
    PatchError,
    apply_patch,
    checkout,
    ensure_installed,
    ensure_worktree,
    keep_list,
    restore_test_files,
)

DEFAULT_TIMEOUT_S = 300.0
KINDS = ("resolved", "apply_error", "oracle_tamper", "install_error", "tests_failed",
         "grading_conflict", "suspicious", "timeout", "env_error")


@dataclass
class Evaluation:
    """How one candidate fared. ``kind``: ``resolved`` or the failure kind."""

    resolved: bool
    kind: str
    fail_to_pass: dict[str, str] = field(default_factory=dict)  # node -> outcome
    pass_to_pass: dict[str, str] = field(default_factory=dict)
    output: str = ""  # what the repair prompt shows: failing tests and the pytest tail
    apply_error: str | None = None
    restored: list[str] = field(default_factory=list)  # test files the edits had touched
    seconds: float = 0.0
    suspicious: list[str] = field(default_factory=list)  # why the patch looks like an attack
    conflict: str | None = None  # the oracle's sources disagreed (grading_conflict)
    isolation: str = ""  # the sandbox level the tests ran at

    def failing(self) -> list[str]:
        return [n for n, v in {**self.fail_to_pass, **self.pass_to_pass}.items() if v != "passed"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CandidateEnv:
    """What every candidate of a task shares: the base interpreter and its key."""

    base_python: Path
    env_key: str


@dataclass
class EvalOptions:
    limits: Limits = field(default_factory=lambda: Limits(timeout_s=DEFAULT_TIMEOUT_S))
    level: str | None = None  # sandbox level; None: the best available
    slot: int = 0
    allow_weak_sandbox: bool = False  # run model code below bwrap (--allow-weak-sandbox)


def task_env(home: Home, db: Database, task: TaskRecord) -> CandidateEnv:
    """The era environment validation used for ``task`` (built if it is gone). Raises EnvError."""
    commit = next((c for c in get_commits(db, task.repo) if c.sha == task.sha), None)
    if commit is None or not commit.era_key:
        raise EnvError(f"commit {task.sha[:12]} of '{task.repo}' belongs to no dependency era",
                       hint=f"re-run 'cra corpus add {task.repo}'")
    era = next((e for e in get_eras(db, task.repo) if e.key == commit.era_key), None)
    if era is None or era.status != "locked" or not era.lock_path or not era.lock_sha256:
        raise EnvError(f"the era of commit {task.sha[:12]} has no lock", hint="repackage the repo")
    repo = get_repo(db, task.repo)
    python = repo.python_version or f"{sys.version_info[0]}.{sys.version_info[1]}"
    wheelhouse = home.wheelhouse(task.repo)
    spec = EnvSpec(task.repo, era.lock_sha256, python, sysconfig.get_platform())
    base = ensure_env(home, spec, wheelhouse / era.lock_path, wheelhouse)
    return CandidateEnv(base_python=base, env_key=spec.key)


def _report(nodes: dict[str, str], tail: str, note: str | None) -> str:
    bad = [f"{v.upper():<8} {n}" for n, v in nodes.items() if v != "passed"]
    head = "Failing tests:\n" + "\n".join(bad) if bad else "Every task test passed."
    return f"{head}\n{('(' + note + ')') if note else ''}\n--- pytest output (tail) ---\n{tail}".strip()


def evaluate(
    home: Home, task: TaskRecord, edits: list[Edit], env: CandidateEnv, *,
    options: EvalOptions | None = None, log: Path | None = None,
) -> Evaluation:
    """Check one candidate of ``task`` in worktree slot ``options.slot`` (held under its lock)."""
    options = options or EvalOptions()
    started = time.monotonic()
    assert task.parent is not None, "a task always has a parent"
    log = log or home.logs / "runs" / task.repo / f"{task.sha[:12]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    ev = Evaluation(resolved=False, kind="env_error")
    with file_lock(home.worktrees / task.repo / f".slot-{options.slot}.lock"):
        try:
            wt = ensure_worktree(home, task.repo, options.slot)
            checkout(wt, task.parent, keep=keep_list(wt))
            try:
                apply_patch(wt, task.test_patch)
            except PatchError as exc:
                ev.output = f"the task's test patch does not apply: {exc.message}"
                return _done(ev, started)
            task_tests = {*patch_paths(task.test_patch), *task.test_files}
            applied = apply_edits(wt.path, edits, flag=suspicious_reasons,
                                  guard=lambda old, new: tamper_reasons(old, new, task_tests))
            ev.suspicious = applied.suspicious
            if applied.refused:
                ev.kind, ev.apply_error = "oracle_tamper", applied.apply_error
                ev.output = f"the edits were not applied: {applied.apply_error}"
                return _done(ev, started)
            if not applied.ok:
                ev.kind, ev.apply_error = "apply_error", applied.apply_error
                ev.output = f"the edits do not apply: {applied.apply_error}"
                return _done(ev, started)
            # test modules by the project's own pytest settings too (check_*.py, say)
            settings = settings_at(wt.source, task.sha)
            ev.restored = restore_test_files(
                wt, task.sha, lambda p: is_test_file(p) or settings.is_test_module(p)
            )
            if not any((wt.path / f).is_file() for f in ("pyproject.toml", "setup.py")):
                ev.kind, ev.output = "install_error", "no pyproject.toml or setup.py after the edits"
                return _done(ev, started)
            try:
                python = ensure_installed(home, wt, env.base_python, env.env_key,
                                          home.wheelhouse(task.repo), sha=task.sha, log=log,
                                          level=options.level)
            except EnvError as exc:
                ev.kind = "install_error"
                tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
                ev.output = f"the editable install fails with the edits: {exc}\n{tail}"
                return _done(ev, started)
            run = run_pytest(
                python, wt.path, task.test_files,
                run_dir=home.tmp / "runs" / f"{task.repo}-{options.slot}" / "candidate",
                env=run_env(python, [env.base_python.parent]), limits=options.limits,
                readonly=[python.parent.parent, env.base_python.parent.parent, wt.git_dir, wt.git_store],
                level=options.level,
            )
        except CraError as exc:  # git or environment trouble: the harness's, not the model's
            ev.kind, ev.output = "env_error", str(exc)
            return _done(ev, started)
    ev.fail_to_pass = {n: run.status_of(n) for n in task.fail_to_pass}
    ev.pass_to_pass = {n: run.status_of(n) for n in task.pass_to_pass}
    nodes = {**ev.fail_to_pass, **ev.pass_to_pass}
    ev.output = _report(nodes, run.output_tail, run.note)
    ev.conflict, ev.isolation = run.conflict, run.isolation
    passed = bool(nodes) and run.trusted and all(v == "passed" for v in nodes.values())
    if run.timed_out:
        ev.kind = "timeout"
    elif run.conflict:
        ev.kind = "grading_conflict"
    elif passed and ev.suspicious:
        ev.kind = "suspicious"  # the tests pass, but the patch reached for the grader
    else:
        ev.resolved = passed
        ev.kind = "resolved" if ev.resolved else "tests_failed"
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"[candidate] {ev.kind}: {sorted(nodes.items())}\n{run.output_tail[-2000:]}\n")
    return _done(ev, started)


def _done(ev: Evaluation, started: float) -> Evaluation:
    ev.seconds = round(time.monotonic() - started, 3)
    return ev
