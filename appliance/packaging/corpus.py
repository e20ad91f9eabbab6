"""``cra corpus add``: turn a git repository into a repo package (connected side).

The steps, each in its own module: clone (here), mine and filter commits
(``harness.mining``), group kept commits into dependency eras (``harness.deps``), lock and
download each era's wheels and prove them installable offline (``appliance.packaging.wheelhouse``),
write the manifest (``appliance.packaging.manifest``) and register it all in the DB in one
transaction. The clone is made in a staging folder and moved into place only when it is
whole, so a failed add never leaves a half-cloned ``corpus/<name>/repo``.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.config import Home, Settings
from appliance.db.core import Database
from appliance.db.corpus import register_repo
from appliance.errors import BadInput, LockError
from appliance.hashing import sha256_file
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


def clone_into(home: Home, source: str, name: str) -> Path:
    """Clone SOURCE with full history to ``corpus/<name>/repo`` (staged, then moved)."""
    dest = home.repo_dir(name)
    local = Path(source).expanduser()
    if local.exists():
        source = str(local.resolve())
    home.tmp.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"clone-{name}-", dir=home.tmp))
    try:
        git(None, "clone", "--quiet", "--no-local", source, str(staging / "repo"))
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        (staging / "repo").rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def add_repo(
    home: Home,
    db: Database,
    settings: Settings,
    source: str,
    *,
    name: str | None = None,
    test_cmd: str | None = None,
    python: str | None = None,
    progress: Progress | None = None,
) -> AddResult:
    """Package one repository: clone, mine, lock every era, fill the wheelhouse, register."""
    from appliance.packaging.manifest import build_manifest, write_manifest
    from appliance.packaging.wheelhouse import (
        fill_wheelhouse,
        lock_era,
        verify_wheelhouse,
        wheel_inventory,
    )
    from harness.deps import assign_eras
    from harness.mining import mine_repo

    name = check_name(name or repo_name_from_source(source))
    py = box_python(settings, python)
    tick = progress or (lambda step, done, total: None)
    pk = settings.packaging
    find_links = [Path(p) for p in pk.find_links]

    tick("clone", 0, 0)
    repo_dir = clone_into(home, source, name)

    commits: list[CommitRecord] = mine_repo(
        repo_dir, settings.mining, progress=lambda done, total: tick("mine", done, total)
    )
    kept = [c for c in commits if c.status == "kept"]
    eras = assign_eras(repo_dir, kept)

    wheelhouse = home.wheelhouse(name)
    locks = home.locks_dir(name)
    locks.mkdir(parents=True, exist_ok=True)
    log_dir = home.logs / "corpus" / name
    log_dir.mkdir(parents=True, exist_ok=True)
    for i, era in enumerate(eras):
        tick("lock", i, len(eras))
        lock = locks / f"{era.key[:12]}.txt"
        try:
            lock_era(era, py, lock, find_links=find_links, no_index=pk.no_index, log=log_dir / f"lock-{era.key[:12]}.log")
        except LockError as exc:
            era.status, era.error = "unresolvable", str(exc)
            continue
        fill_wheelhouse(lock, wheelhouse, py, find_links=find_links, no_index=pk.no_index)
        verify_wheelhouse(lock, wheelhouse)
        era.lock_path = str(lock.relative_to(wheelhouse))
        era.lock_sha256 = sha256_file(lock)
        era.status = "locked"
    tick("lock", len(eras), len(eras))

    repo = RepoRecord(
        name=name,
        origin_url=source,
        head_sha=head_sha(repo_dir),
        default_branch=default_branch(repo_dir),
        python_version=py,
        test_cmd=test_cmd or DEFAULT_TEST_CMD,
        source="added",
    )
    inventory = wheel_inventory(wheelhouse)
    manifest = build_manifest(repo, eras, commits, inventory)
    manifest_path = home.manifest_path(name)
    repo.manifest_sha256 = write_manifest(manifest_path, manifest)
    register_repo(db, repo, eras, commits)
    return AddResult(
        name=name, commits=len(commits), kept=len(kept), eras=eras, wheels=len(inventory),
        manifest=manifest_path,
    )

