"""``cra corpus add``: turn a git repository into a repo package (connected side).

The steps, each in its own module: clone (here), mine and filter commits
(``harness.mining``), group kept commits into dependency eras (``harness.deps``), lock and
download each era's wheels and prove them installable offline (``appliance.packaging.
wheelhouse``; how each era is locked is decided in ``appliance.packaging.eras``), write the
manifest (``appliance.packaging.manifest``) and register it all in the DB in one
transaction. The clone is made in a staging folder and moved into place only when it is
whole, so a failed add never leaves a half-cloned ``corpus/<name>/repo``.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from appliance.config import Home, Settings
from appliance.db.core import Database
from appliance.db.corpus import register_repo
from appliance.errors import BadInput
from appliance.records import CommitRecord, EraRecord, RepoRecord
from harness.git import default_branch, git, head_sha

DEFAULT_TEST_CMD = "python -m pytest"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

Progress = Callable[[str, int, int], None]
"""progress(step, done, total): ``total`` 0 means unknown."""


@dataclass
class AddResult:
    name: str
    commits: int
    kept: int
    eras: list[EraRecord] = field(default_factory=list)
    wheels: int = 0
    manifest: Path | None = None
    branches: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # step -> wall seconds

    @property
    def unresolvable(self) -> list[EraRecord]:
        return [e for e in self.eras if e.status == "unresolvable"]


def repo_name_from_source(source: str) -> str:
    """``https://github.com/python-attrs/attrs.git`` and ``/x/attrs`` both give ``attrs``."""
    tail = source.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    for suffix in (".git", ".bundle"):
        tail = tail.removesuffix(suffix)
    return tail


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise BadInput(
            f"'{name}' is not a usable repo name",
            hint="use letters, digits, '.', '_' or '-' (pass --name)",
        )
    return name


def box_python(settings: Settings, override: str | None = None) -> str:
    chosen = override or settings.packaging.python or f"{sys.version_info.major}.{sys.version_info.minor}"
    if not re.fullmatch(r"3\.\d{1,2}", chosen):
        raise BadInput(f"--python {chosen!r} is not a Python version", hint="give X.Y, e.g. 3.11")
    return chosen


def clone_into(home: Home, source: str, name: str, branches: Sequence[str] = ()) -> Path:
    """Clone SOURCE with full history to ``corpus/<name>/repo`` (staged, then moved).

    Each of ``branches`` becomes a local branch of the clone, so the USB bundle (which
    carries branches) and every later clone of it keep its commits.
    """
    dest = home.repo_dir(name)
    local = Path(source).expanduser()
    if local.exists():
        source = str(local.resolve())
    home.tmp.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"clone-{name}-", dir=home.tmp))
    try:
        repo = staging / "repo"
        git(None, "clone", "--quiet", "--no-local", source, str(repo))
        for branch in branches:
            _local_branch(repo, branch, source)
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        repo.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _local_branch(repo: Path, branch: str, source: str) -> None:
    if git(repo, "check-ref-format", "--branch", branch, check=False).strip() != branch:
        raise BadInput(f"--branch {branch!r} is not a branch name")
    remote = f"refs/remotes/origin/{branch}"
    if git(repo, "rev-parse", "--verify", "-q", remote, check=False).strip():
        if git(repo, "symbolic-ref", "-q", "HEAD", check=False).strip() != f"refs/heads/{branch}":
            git(repo, "update-ref", f"refs/heads/{branch}", remote)
        return
    if not git(repo, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False).strip():
        raise BadInput(f"{source} has no branch {branch!r}", hint=f"list them with: git ls-remote --heads {source}")


def add_repo(
    home: Home,
    db: Database,
    settings: Settings,
    source: str,
    *,
    name: str | None = None,
    test_cmd: str | None = None,
    python: str | None = None,
    branches: Sequence[str] = (),
    progress: Progress | None = None,
) -> AddResult:
    """Package one repository: clone, mine, lock every era, fill the wheelhouse, register.

    ``branches`` (maintenance branches) are walked by first parent after the default
    branch, each commit once. One era that cannot be locked, fetched or run is recorded as
    unresolvable with its reason; every other era and commit is still packaged.
    """
    from appliance.packaging.eras import package_eras
    from appliance.packaging.manifest import build_manifest, write_manifest
    from appliance.packaging.wheelhouse import wheel_inventory
    from harness.deps import assign_eras
    from harness.mining import mine_repo

    name = check_name(name or repo_name_from_source(source))
    py = box_python(settings, python)
    tick = progress or (lambda step, done, total: None)
    timings: dict[str, float] = {}
    started = time.monotonic()

    tick("clone", 0, 0)
    repo_dir = clone_into(home, source, name, branches)
    main_branch = default_branch(repo_dir)
    extra = [b for b in dict.fromkeys(branches) if b != main_branch]
    timings["clone"] = time.monotonic() - started

    mark = time.monotonic()
    commits: list[CommitRecord] = mine_repo(
        repo_dir, settings.mining, branches=[f"refs/heads/{b}" for b in extra],
        progress=lambda done, total: tick("mine", done, total),
    )
    kept = [c for c in commits if c.status == "kept"]
    eras = assign_eras(repo_dir, kept, tips=["HEAD", *(f"refs/heads/{b}" for b in extra)])
    timings["mine"] = time.monotonic() - mark

    mark = time.monotonic()
    report = package_eras(home, name, repo_dir, eras, settings.packaging, py, progress=tick)
    timings["eras"] = time.monotonic() - mark
    timings |= report.timings

    mark = time.monotonic()
    repo = RepoRecord(
        name=name,
        origin_url=source,
        head_sha=head_sha(repo_dir),
        default_branch=main_branch,
        python_version=py,
        test_cmd=test_cmd or DEFAULT_TEST_CMD,
        source="added",
        branches=extra,
    )
    wheelhouse = home.wheelhouse(name)
    inventory = wheel_inventory(wheelhouse)
    manifest = build_manifest(repo, eras, commits, inventory)
    manifest_path = home.manifest_path(name)
    repo.manifest_sha256 = write_manifest(manifest_path, manifest)
    register_repo(db, repo, eras, commits)
    timings["register"] = time.monotonic() - mark
    timings["total"] = time.monotonic() - started
    return AddResult(
        name=name, commits=len(commits), kept=len(kept), eras=eras, wheels=len(inventory),
        manifest=manifest_path, branches=extra, timings={k: round(v, 3) for k, v in timings.items()},
    )
