"""The adapter registry: immutable versions, aliases, promote/rollback with an audit, verify.

Versions here are folders of files (the registry never reads what is in them); the
training tests register real trained adapters through ``cra train``.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest
from curated import staged_files, version_meta

from appliance.adapters import registry
from appliance.adapters.routes import routes_for
from appliance.cli import main
from appliance.config import Home
from appliance.db.core import Database
from appliance.errors import AdapterTampered, BadInput, NotFound


def _register(db: Database, home: Home, tmp_path: Path, slot: str = "plan", n: int = 1) -> list:
    out = []
    for i in range(n):
        staging = staged_files(tmp_path / f"stage-{slot}-{i}-{len(list(tmp_path.iterdir()))}", f"{slot}{i}")
        out.append(registry.register(db, home, slot, staging, version_meta()))
    return out


def test_registering_numbers_versions_hashes_every_file_and_moves_the_candidate(
        db: Database, home: Home, tmp_path: Path) -> None:
    v1, v2 = _register(db, home, tmp_path, n=2)
    assert (v1.version, v2.version) == (1, 2) and v2.path == "adapters/plan/v2"
    folder = home.root / v2.path
    assert sorted(v2.files) == ["adapter.gguf", "adapter_config.json", "adapter_model.safetensors", "metadata.json"]
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["version"] == 2 and meta["name"] == "plan-v2" and meta["base_sha256"] == "b" * 64
    assert set(meta["files"]) == set(v2.files) - {"metadata.json"}  # every other file, with its sha256
    assert registry.current(db, "plan", "candidate").version == 2
    assert registry.current(db, "plan", "active") is None
    assert [(e.action, e.alias, e.from_version, e.to_version) for e in registry.history(db, "plan")] == [
        ("register", "candidate", None, 1), ("register", "candidate", 1, 2)]
    assert registry.verify(home, v2).ok


def test_promote_and_rollback_move_active_with_an_audit_row_and_never_delete(
        db: Database, home: Home, tmp_path: Path) -> None:
    _register(db, home, tmp_path, n=3)
    registry.promote(db, home, "plan", 1, reason="first", report="eval-1")
    registry.promote(db, home, "plan", reason="candidate wins", report="eval-2")  # the candidate: v3
    assert registry.current(db, "plan").version == 3
    with pytest.raises(BadInput, match="already the active version"):
        registry.promote(db, home, "plan", "v3")
    event = registry.rollback(db, home, "plan", reason="regressed", report="eval-3")
    assert (event.action, event.from_version, event.to_version, event.report) == ("rollback", 3, 1, "eval-3")
    registry.rollback(db, home, "plan", to="v2", reason="try v2")
    assert registry.current(db, "plan").version == 2
    registry.rollback(db, home, "plan", to="base", reason="no adapter")
    assert registry.current(db, "plan") is None  # the stage runs on the base model
    with pytest.raises(BadInput, match="already runs on the base model"):
        registry.rollback(db, home, "plan")
    moves = [(e.action, e.from_version, e.to_version, e.reason) for e in registry.history(db, "plan")
             if e.alias == "active"]
    assert moves == [("promote", None, 1, "first"), ("promote", 1, 3, "candidate wins"),
                     ("rollback", 3, 1, "regressed"), ("rollback", 1, 2, "try v2"), ("rollback", 2, None, "no adapter")]
    assert all((home.adapters / "plan" / f"v{n}" / "adapter.gguf").is_file() for n in (1, 2, 3))
    with pytest.raises(NotFound, match="no adapter version v9"):
        registry.promote(db, home, "plan", 9)


def test_rollback_goes_back_along_the_promotions_not_the_last_move(db: Database, home: Home, tmp_path: Path) -> None:
    _register(db, home, tmp_path, n=3)
    for n in (1, 2, 3):
        registry.promote(db, home, "plan", n)
    assert registry.rollback(db, home, "plan").to_version == 2
    assert registry.rollback(db, home, "plan").to_version == 1  # not back to 3
    assert registry.rollback(db, home, "plan").to_version is None  # v1 was the first: the base model


def test_versions_and_the_audit_are_immutable_in_the_database(db: Database, home: Home, tmp_path: Path) -> None:
    _register(db, home, tmp_path)
    for sql in ("UPDATE adapter_versions SET rank = 64", "DELETE FROM adapter_versions",
                "UPDATE adapter_events SET reason = 'x'", "DELETE FROM adapter_events"):
        with pytest.raises(sqlite3.IntegrityError), db.write() as c:
            c.execute(sql)
    [s1] = _register(db, home, tmp_path, slot="scope")
    with pytest.raises(sqlite3.IntegrityError, match="its own slot"), db.write() as c:
        c.execute("INSERT INTO adapter_aliases VALUES ('plan', 'active', ?, 'now')", (s1.id,))


def test_a_tampered_version_is_found_and_refused_everywhere(db: Database, home: Home, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    v1, v2 = _register(db, home, tmp_path, n=2)
    registry.promote(db, home, "plan", 1)
    weights = home.root / v2.path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    (home.root / v2.path / "extra.py").write_text("import os\n")
    report = registry.verify(home, v2)
    assert not report.ok and report.changed == ["adapter_model.safetensors"] and report.unexpected == ["extra.py"]
    with pytest.raises(AdapterTampered, match="adapter_model.safetensors"):
        registry.promote(db, home, "plan", 2)
    assert registry.current(db, "plan").version == 1  # nothing moved
    assert routes_for(db, home, "active").for_slot("plan").label == "plan@v1"
    with pytest.raises(AdapterTampered):
        routes_for(db, home, "candidate")  # the pipeline will not route to it
    assert main(["adapters", "verify", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["ok"]) for r in out] == [(1, True), (2, False)]
    (home.root / v1.path / "adapter.gguf").unlink()
    assert main(["adapters", "verify", "plan", "1"]) == 2
    assert "missing: adapter.gguf" in capsys.readouterr().out


def test_a_folder_left_by_a_crash_is_set_aside_not_reused(db: Database, home: Home, tmp_path: Path) -> None:
    orphan = home.adapters / "plan" / "v1"
    orphan.mkdir(parents=True)
    (orphan / "half.bin").write_bytes(b"x")
    [v1] = _register(db, home, tmp_path)
    assert v1.version == 1 and registry.verify(home, v1).ok
    assert [p.name.split(".")[1].split("-")[0] for p in (home.adapters / "plan").glob("v1.orphaned-*")] == ["orphaned"]


def _promote_many(db_path: str, home_root: str, versions: list[int], barrier) -> None:
    db = Database(db_path)
    barrier.wait()
    for n in versions:
        registry.promote(db, Home(Path(home_root)), "plan", n, reason=f"process {versions[0]}")
    db.close()


def test_two_processes_promoting_at_once_leave_one_active_version_and_a_consistent_audit(
        db: Database, home: Home, tmp_path: Path) -> None:
    _register(db, home, tmp_path, n=10)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_promote_many, args=(str(home.db_path), str(home.root), vs, barrier))
             for vs in ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert db.one("SELECT COUNT(*) FROM adapter_aliases WHERE slot = 'plan' AND alias = 'active'")[0] == 1
    promotes = [e for e in registry.history(db, "plan") if e.action == "promote"]
    assert len(promotes) == 10
    # Each promote read where active pointed inside its own transaction: an unbroken chain.
    assert promotes[0].from_version is None
    assert all(b.from_version == a.to_version for a, b in itertools.pairwise(promotes))
    assert registry.current(db, "plan").version == promotes[-1].to_version


def test_the_cli_lists_shows_promotes_and_rolls_back(db: Database, home: Home, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _register(db, home, tmp_path, n=2)
    assert main(["adapters", "promote", "plan", "1", "--reason", "baseline", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["to_version"] == 1
    assert main(["adapters", "promote", "plan", "--report", "eval-7"]) == 0
    assert "active v1 -> v2" in capsys.readouterr().out
    assert main(["adapters", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["aliases"]) for v in listing["versions"]] == [(1, []), (2, ["active", "candidate"])]
    assert {s["slot"]: s["active"] for s in listing["slots"]}["plan"] == 2
    assert main(["adapters", "rollback", "plan", "--reason", "worse"]) == 0
    assert "active v2 -> v1 (rollback)" in capsys.readouterr().out
    assert main(["adapters", "history", "plan", "--json"]) == 0
    history = json.loads(capsys.readouterr().out)
    assert history[-1]["action"] == "rollback" and history[-1]["reason"] == "worse"
    assert main(["adapters", "show", "plan", "active"]) == 0
    assert "plan-v1" in capsys.readouterr().out
    assert main(["adapters", "rollback", "plan"]) == 0  # v1 was the first active version
    assert "active v1 -> base (no adapter)" in capsys.readouterr().out
    assert main(["adapters", "rollback", "plan"]) == 2
    assert "already runs on the base model" in capsys.readouterr().err
