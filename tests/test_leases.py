"""Work leases: two ``cra harness validate`` on one home share the commits; a killed
one's commits are taken over.

The claims are tested on a real DB with real processes (a pid that really died); the
sharing and the take-over with real ``cra harness validate`` processes on a real repo
whose tests are slow enough for two processes to overlap.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from repo_builder import RepoBuilder
from test_validation import PYPROJECT
from wheels import locked_era

from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import register_repo
from appliance.db.leases import Claim, Heartbeat, Owner, claim, held, release, release_all
from appliance.db.tasks import TaskRecord, save_task, task_counts
from appliance.records import CommitRecord, FileChange, RepoRecord
from appliance.status import LeaseKind

V = LeaseKind.VALIDATE
SHA = "c" * 40


@pytest.fixture
def repo(db: Database) -> str:
    register_repo(db, RepoRecord("lib", "/src/lib", "a" * 40, "main", "3.11", "python -m pytest"), [], [])
    return "lib"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_unit_is_claimed_by_one_process_at_a_time(db: Database, repo: str) -> None:
    a, b = Owner.this_process(), Owner.this_process()  # two live claimants (same pid, own tokens)
    assert claim(db, V, repo, SHA, a) == Claim.CLAIMED
    assert claim(db, V, repo, SHA, b) == Claim.HELD
    assert claim(db, V, repo, SHA, a) == Claim.CLAIMED  # renewing our own
    [row] = held(db, V, repo)
    assert row["owner"] == a.id and row["taken_over"] == 0
    release(db, V, repo, SHA, b)  # not b's to release
    assert held(db, V, repo)[0]["owner"] == a.id
    release(db, V, repo, SHA, a)
    assert held(db, V, repo) == [] and claim(db, V, repo, SHA, b) == Claim.CLAIMED


def test_a_dead_owners_unit_is_taken_over_at_once(db: Database, repo: str) -> None:
    import socket

    dead = Owner(socket.gethostname(), _dead_pid(), "gone")
    assert claim(db, V, repo, SHA, dead, lease_s=3600) == Claim.CLAIMED
    me = Owner.this_process()
    assert claim(db, V, repo, SHA, me) == Claim.TAKEN_OVER  # its lease had an hour to run
    [row] = held(db, V, repo)
    assert row["owner"] == me.id and row["taken_over"] == 1


def test_another_hosts_unit_is_taken_over_when_its_lease_runs_out(db: Database, repo: str) -> None:
    far = Owner("another-host", 1, "far")  # its liveness cannot be checked from here
    now = time.time()
    assert claim(db, V, repo, SHA, far, lease_s=60, now=now) == Claim.CLAIMED
    me = Owner.this_process()
    assert claim(db, V, repo, SHA, me, now=now + 59) == Claim.HELD
    assert claim(db, V, repo, SHA, me, now=now + 61) == Claim.TAKEN_OVER


def test_a_unit_whose_task_is_stored_is_done(db: Database, repo: str) -> None:
    save_task(db, TaskRecord(repo=repo, sha=SHA, parent=None, status="timeout", instruction="x"))
    assert claim(db, V, repo, SHA, Owner.this_process()) == Claim.DONE
    assert claim(db, V, repo, SHA, Owner.this_process(), redo=True) == Claim.CLAIMED  # --force
    assert release_all(db, Owner.this_process()) == 0


def test_the_heartbeat_keeps_a_claim_alive(db: Database, repo: str) -> None:
    me = Owner.this_process()
    claim(db, V, repo, SHA, me, lease_s=1.5)
    first = held(db, V, repo)[0]["expires_ts"]
    with Heartbeat(db, me, lease_s=1.5):
        time.sleep(1.2)
    assert held(db, V, repo)[0]["expires_ts"] > first
    assert claim(db, V, repo, SHA, Owner.this_process()) == Claim.HELD


# ------------------------------------------------------------------ real validate processes

N_COMMITS = 4
SLOW = "import time\n\n\ndef test_slow():\n    time.sleep(1.5)\n"


@pytest.fixture
def slow_home(tmp_path: Path, wheel_cache: Path) -> Home:
    """A repo of N commits, each a real task whose tests take a few seconds to validate."""
    home = Home(tmp_path / "home")
    src = RepoBuilder(tmp_path / "src")
    code = "def f(x):\n    return 0\n"
    base = src.commit("Start calc", {"pyproject.toml": PYPROJECT, "calc/__init__.py": code,
                                     "tests/test_slow.py": SLOW})
    commits, parent = [], base
    for i in range(1, N_COMMITS + 1):
        code += f"\n\ndef g{i}():\n    return {i}\n"
        test = f"from calc import g{i}\n\n\ndef test_g{i}():\n    assert g{i}() == {i}\n"
        sha = src.commit(f"Add g{i} returning {i}", {"calc/__init__.py": code, f"tests/test_g{i}.py": test,
                                                    "tests/test_slow.py": SLOW + f"# {i}\n"})
        commits.append(CommitRecord(
            sha=sha, parent=parent, author_date="2020-09-13T12:00:00+00:00", author_ts=1_600_000_000 + i,
            title=f"Add g{i} returning {i}", message=f"Add g{i} returning {i}\n",
            files=[FileChange("calc/__init__.py", 3, 0, "source"), FileChange(f"tests/test_g{i}.py", 5, 0, "test"),
                   FileChange("tests/test_slow.py", 1, 0, "test")],
            era_key="a" * 64))
        parent = sha
    import shutil

    shutil.copytree(src.path, home.repo_dir("calc"))
    era = locked_era(home, "calc", wheel_cache, base)
    with Database(home.db_path) as db:
        register_repo(db, RepoRecord("calc", str(src.path), parent, "main",
                                     f"{sys.version_info[0]}.{sys.version_info[1]}", "python -m pytest"),
                      [era], commits)
    return home


def _cra(home: Home, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CRA_HOME": str(home.root)}
    return subprocess.Popen([sys.executable, "-m", "appliance.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.network
@pytest.mark.slow
def test_two_validate_processes_share_the_commits(slow_home: Home) -> None:
    # The environment is built once first, so both processes start on commits at once.
    first = _cra(slow_home, "harness", "validate", "calc", "--limit", "1", "--json")
    assert first.wait(timeout=600) == 0, first.stderr.read()
    a = _cra(slow_home, "harness", "validate", "calc", "--workers", "1", "--json", "--timeout", "60")
    b = _cra(slow_home, "harness", "validate", "calc", "--workers", "1", "--json", "--timeout", "60")
    out_a, err_a = a.communicate(timeout=600)
    out_b, err_b = b.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0, err_a + err_b
    ca, cb = json.loads(out_a), json.loads(out_b)
    mine = lambda c: sum(v for k, v in c.items() if k != "done_elsewhere")
    # Every commit validated once in all: no commit twice, none left over, both did some.
    assert mine(ca) + mine(cb) == N_COMMITS - 1, (ca, cb)
    assert mine(ca) >= 1 and mine(cb) >= 1, (ca, cb)
    with Database(slow_home.db_path) as db:
        assert task_counts(db, "calc")["valid"] == N_COMMITS
        assert db.one("SELECT COUNT(*) FROM leases")[0] == 0


@pytest.mark.network
@pytest.mark.slow
def test_a_killed_validate_leaves_its_commit_to_the_next_one(slow_home: Home) -> None:
    victim = _cra(slow_home, "harness", "validate", "calc", "--workers", "1", "--timeout", "60")
    deadline = time.monotonic() + 300
    with Database(slow_home.db_path) as db:
        while not db.query("SELECT 1 FROM leases") and time.monotonic() < deadline:
            assert victim.poll() is None, victim.stderr.read() if victim.stderr else ""
            time.sleep(0.1)
        [row] = db.query("SELECT sha, pid FROM leases")
        assert row["pid"] == victim.pid
        os.kill(victim.pid, signal.SIGKILL)  # mid-commit: no chance to release its claim
        victim.wait()
        assert db.one("SELECT COUNT(*) FROM leases")[0] == 1
        started = time.monotonic()
        heir = _cra(slow_home, "harness", "validate", "calc", "--workers", "1", "--json", "--timeout", "60")
        _, err = heir.communicate(timeout=600)
        assert heir.returncode == 0, err
        # Taken over at once (the owner's pid is gone), not after the 120 s lease.
        assert time.monotonic() - started < 120
        assert task_counts(db, "calc")["valid"] == N_COMMITS
        assert db.one("SELECT COUNT(*) FROM leases")[0] == 0
