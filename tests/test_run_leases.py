"""Two ``cra harness run`` on one home share the runs instead of resetting each other's.

Before run keys were leased, the second process took the first one's ``running`` row for
an interrupted run, reset it (its attempts and LLM calls deleted under it) and ran the
same key again: the model was asked twice and one run's record mixed two processes' work.
Here two real CLI processes run the same grid against a slow loopback model server, with
a real validated task, real sandboxed pytest and a real SQLite file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chat_server import ChatServer
from test_pipeline import PLAN, RIGHT_EDIT_POLLUTED, TIMEOUT_S, _build_repo, _commit, _python
from wheels import locked_era

from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import register_repo
from appliance.db.leases import Owner, claim
from appliance.db.runs import RunKey, list_calls, list_runs, start_run
from appliance.db.tasks import get_task
from appliance.records import RepoRecord
from appliance.status import LeaseKind
from harness.pipeline import unit_id
from harness.sandbox import Limits
from harness.validation import ValidationOptions, validate_repo

SAMPLES = 4
MODEL = "shared"


@pytest.fixture
def home(tmp_path: Path, wheel_cache: Path) -> Home:
    home = Home(tmp_path / "home")
    src, base, sha = _build_repo(tmp_path)
    shutil.copytree(src.path, home.repo_dir("calc"))
    era = locked_era(home, "calc", wheel_cache, base)
    with Database(home.db_path) as db:
        register_repo(db, RepoRecord("calc", str(src.path), sha, "main", _python(), "python -m pytest"),
                      [era], [_commit(base, sha, era.key)])
        counts = validate_repo(home, db, "calc", workers=1,
                               options=ValidationOptions(limits=Limits(timeout_s=TIMEOUT_S)))
        assert counts["valid"] == 1, get_task(db, "calc", sha).reason
    return home


def _cra(home: Home, url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CRA_HOME": str(home.root)}
    return subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "harness", "run", "calc", "--endpoint", url, "--model", MODEL,
         "--temperatures", "0.2", "--samples", str(SAMPLES), "--max-attempts", "1", "--json"],
        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.network
@pytest.mark.slow
def test_two_run_processes_share_the_runs_and_ask_the_model_once_per_run(home: Home) -> None:
    # A plan for schema requests, the right edit for the others, slowly: the processes overlap.
    server = ChatServer(lambda body, n: PLAN if "response_format" in body else RIGHT_EDIT_POLLUTED,
                        model=MODEL, delay=1.0)
    try:
        a = _cra(home, server.url)
        time.sleep(0.3)  # b starts while a is inside its first run
        b = _cra(home, server.url)
        out_a, err_a = a.communicate(timeout=600)
        out_b, err_b = b.communicate(timeout=600)
    finally:
        server.stop()
    assert a.returncode == 0 and b.returncode == 0, err_a + err_b
    sa, sb = json.loads(out_a), json.loads(out_b)
    # Every run ran once in all, by one process or the other; each process saw all of them.
    assert sa["ran"] + sb["ran"] == SAMPLES, (sa, sb)
    assert sa["ran"] >= 1 and sb["ran"] >= 1, (sa, sb)
    assert sa["ran"] + sa["skipped"] == SAMPLES and sb["ran"] + sb["skipped"] == SAMPLES
    assert server.posts == 2 * SAMPLES  # one plan and one edit per run, none asked twice
    with Database(home.db_path) as db:
        runs = list_runs(db, "calc")
        assert sorted(r.sample for r in runs) == list(range(SAMPLES))
        assert {(r.status, r.attempts) for r in runs} == {("resolved", 1)}
        for run in runs:  # each run's record is one process's whole work, nothing mixed in
            assert [c.stage for c in list_calls(db, run_id=run.id)] == ["plan", "execute"]
        assert db.one("SELECT COUNT(*) FROM leases")[0] == 0


def test_a_running_row_is_reset_only_by_the_holder_of_its_key(db: Database) -> None:
    register_repo(db, RepoRecord("lib", "/src/lib", "a" * 40, "main", "3.11", "python -m pytest"), [], [])
    key = RunKey(repo="lib", sha="c" * 40, provider="p", model="m", adapter="", temperature=0.2, sample=0)
    first = start_run(db, key)
    a, b = Owner.this_process(), Owner.this_process()
    assert claim(db, LeaseKind.RUN, "lib", unit_id(key), a).value == "claimed"
    assert claim(db, LeaseKind.RUN, "lib", unit_id(key), b).value == "held"  # b must not start_run
    other = RunKey(repo="lib", sha="c" * 40, provider="p", model="m", adapter="", temperature=0.8, sample=0)
    assert unit_id(other) != unit_id(key)  # a temperature is its own unit
    assert claim(db, LeaseKind.RUN, "lib", unit_id(other), b).value == "claimed"
    assert start_run(db, key).id == first.id


def test_force_keeps_what_a_forced_command_of_the_same_wave_already_ran(db: Database) -> None:
    from appliance.db.runs import finish_run

    register_repo(db, RepoRecord("lib", "/src/lib", "a" * 40, "main", "3.11", "python -m pytest"), [], [])
    key = RunKey(repo="lib", sha="d" * 40, provider="p", model="m", adapter="", temperature=0.2, sample=0)
    old = start_run(db, key)
    finish_run(db, old.id, status="failed", attempts=1, failure_kind="tests_failed")
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 1)) + ".000000+00:00"
    assert not start_run(db, key, force=True, since=since).finished  # older than the command: redone
    run = start_run(db, key, force=True, since="2000-01-01T00:00:00+00:00")
    assert run.status == "running"
    finish_run(db, run.id, status="resolved", attempts=1)
    # A run started after the forcing command began is that wave's own: kept.
    assert start_run(db, key, force=True, since="2000-01-01T00:00:00+00:00").status == "resolved"
