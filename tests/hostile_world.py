"""A CRA_HOME outside /tmp holding a real repo whose commits (or a model's patches) attack
the oracle and the host; shared by the ``test_hostile_*`` files.

pytest's ``tmp_path`` lives under /tmp, which the sandbox replaces with an empty tmpfs
anyway, so a CRA_HOME there would be hidden for the wrong reason. This one lives under
``/var/tmp`` (or the worktree's ignored ``.cra-test/``), as a real install's would, and is
removed afterwards. Secrets are planted where sandboxed code must never reach: a file in
the invoking user's home and one in another worktree slot, each holding ``token``;
``leaks`` finds the token in anything cra wrote (logs, database, triples, worktrees).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from repo_builder import RepoBuilder
from test_validation import BUGGY, PYPROJECT, TESTS, make_package
from wheels import make_lock

from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import register_repo
from appliance.records import CommitRecord, EraRecord, FileChange, RepoRecord

REPO = "calc"

# Source code that rewrites every pytest report into a pass as soon as it is imported.
MONKEYPATCH_REPORTS = """\
import sys

_reports = sys.modules.get("_pytest.reports")
if _reports is not None:
    _real = _reports.TestReport.from_item_and_call

    def _always_passed(cls, item, call):
        report = _real(item, call)
        report.outcome = "passed"
        report.longrepr = None
        return report

    _reports.TestReport.from_item_and_call = classmethod(_always_passed)
"""


@dataclass
class World:
    home: Home
    db: Database
    base: str
    shas: dict[str, str]
    token: str
    home_secret: Path  # in the invoking user's home
    slot_secret: Path  # in worktree slot 7's checkout, which no run here uses
    planted: list[Path] = field(default_factory=list)

    def leaks(self) -> list[str]:
        """Every file under CRA_HOME (the database and its WAL included) holding the token,
        the planted secret itself excepted."""
        found = []
        needle = self.token.encode()
        for path in self.home.root.rglob("*"):
            if path == self.slot_secret or path.is_symlink() or not path.is_file():
                continue
            try:
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
        return found


def outside_tmp() -> Path:
    for base in (Path("/var/tmp"), Path(__file__).resolve().parents[1] / ".cra-test"):
        try:
            base.mkdir(parents=True, exist_ok=True)
            root = base / f"cra-hostile-{uuid.uuid4().hex[:12]}"
            root.mkdir()
            return root
        except OSError:
            continue
    raise RuntimeError("no writable folder outside /tmp for the hostile CRA_HOME")


def snoop_test(world: World) -> str:
    """A test module that reads what it must not and fails with whatever it could read."""
    home = world.home
    targets = {  # printed in this order: the secrets last, so they end the output
        "the harness's environment": f"/proc/{os.getpid()}/environ",
        "/etc/shadow": "/etc/shadow",
        "the database": str(home.db_path),
        "the logs": str(home.logs),
        "the corpus repo's work tree": str(home.repo_dir(REPO) / "calc" / "__init__.py"),
        "another worktree slot": str(world.slot_secret),
        "the user's home secret": str(world.home_secret),
    }
    return f'''\
import os

TARGETS = {targets!r}
HOST_HOME = {str(Path.home())!r}


def test_nothing_of_the_host_is_readable():
    seen = []
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            with open("/proc/" + pid + "/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if ("HOME=" + HOST_HOME).encode() in env.split(b"\\0"):
            seen.append("the environment of pid " + pid)
    for name, path in TARGETS.items():
        try:
            if os.path.isdir(path):
                seen.append(name + ": " + repr(sorted(os.listdir(path))[:20]))
            else:
                with open(path, "rb") as fh:
                    seen.append(name + ": " + repr(fh.read(300)))
        except OSError:
            pass
    print("\\n".join(seen))
    assert not seen, seen
'''


def build_world(wheel_cache: Path, scenarios: dict[str, tuple[str, dict[str, str]]],
                snoop: bool = False) -> Iterator[World]:
    """Yield a registered repo: a base commit (buggy ``add``, a project conftest) and one
    commit per scenario branching off it; tear it all down afterwards."""
    root = outside_tmp()
    token = f"cra-secret-{uuid.uuid4().hex}"
    home = Home(root / "home")
    home_secret = Path.home() / f".cra-hostile-{uuid.uuid4().hex[:8]}"
    home_secret.write_text(token)
    slot_secret = home.worktrees / REPO / "7" / "secret.txt"
    slot_secret.parent.mkdir(parents=True)
    slot_secret.write_text(token)
    db: Database | None = None
    try:
        src = RepoBuilder(root / "src")
        base = src.commit("Start calc", {
            "pyproject.toml": PYPROJECT, "calc/__init__.py": BUGGY, "tests/test_calc.py": TESTS,
            "conftest.py": "# the project's own conftest\n",
        })
        world = World(home, None, base, {}, token, home_secret, slot_secret)  # type: ignore[arg-type]
        for key, (message, files) in scenarios.items():
            src.git("checkout", "-q", "-B", key, base)
            if snoop and "tests/test_probe.py" in files:
                files = {**files, "tests/test_probe.py": snoop_test(world)}
            world.shas[key] = src.commit(message, files)
        src.git("checkout", "-q", "main")
        shutil.copytree(src.path, home.repo_dir(REPO))
        wheelhouse = make_package(home, REPO, wheel_cache)
        lock = make_lock(wheel_cache, wheelhouse / "locks" / "good.txt")
        era = EraRecord(key="a" * 64, requirements=["pytest"], build_requires=["setuptools>=64"],
                        first_commit=base, lock_path="locks/good.txt",
                        lock_sha256=hashlib.sha256(lock.read_bytes()).hexdigest(), status="locked")
        commits = [
            CommitRecord(sha=world.shas[key], parent=base, author_date="2020-09-13T12:00:00+00:00",
                         author_ts=1_600_000_000 + i, title=message, message=message + "\n",
                         files=[FileChange("calc/__init__.py", 1, 1, "source")], era_key=era.key)
            for i, (key, (message, _)) in enumerate(scenarios.items())
        ]
        db = Database(home.db_path)
        world.db = db
        python = f"{sys.version_info[0]}.{sys.version_info[1]}"
        register_repo(db, RepoRecord(REPO, str(src.path), base, "main", python, "python -m pytest"),
                      [era], commits)
        yield world
    finally:
        if db is not None:
            db.close()
        home_secret.unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)
