"""The raw DB: migrations, WAL, one-writer transactions, the corpus tables."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from appliance.db import migrations
from appliance.db.core import Database
from appliance.db.corpus import funnel, get_commits, get_eras, get_repo, list_repos, register_repo
from appliance.errors import BadInput, NotFound
from appliance.records import CommitRecord, EraRecord, FileChange, RepoRecord


def _repo(name: str = "lib") -> RepoRecord:
    return RepoRecord(name=name, origin_url="/src/lib", head_sha="a" * 40, default_branch="main",
                      python_version="3.11", test_cmd="python -m pytest")


def _commit(i: int, *, kept: bool, stage: str = "message", era: str | None = None) -> CommitRecord:
    c = CommitRecord(
        sha=f"{i:040x}", parent=f"{i - 1:040x}" if i else None, author_date="2024-01-01T00:00:00+00:00",
        author_ts=1_700_000_000 + i, title=f"Add thing {i}", message=f"Add thing {i}\n",
        files=[FileChange("lib/a.py", 3, 1, "source"), FileChange("tests/test_a.py", 5, 0, "test")],
        era_key=era,
    )
    if not kept:
        c.reject(stage, "why not")
    return c


def test_fresh_db_is_migrated_to_latest_in_wal_mode(tmp_path: Path) -> None:
    db = Database(tmp_path / "var" / "cra.db")
    assert db.schema_version == migrations.LATEST
    assert db.one("PRAGMA journal_mode")[0] == "wal"
    versions = {r[0] for r in db.query("SELECT version FROM schema_migrations")}
    assert versions == {m.version for m in migrations.MIGRATIONS}  # numbers are reserved per issue
    # Reopening applies nothing twice.
    db.close()
    db = Database(tmp_path / "var" / "cra.db")
    assert migrations.migrate(db) == []


def test_db_newer_than_cra_is_refused(tmp_path: Path) -> None:
    db = Database(tmp_path / "cra.db")
    with db.write() as c:
        c.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    db.close()
    with pytest.raises(BadInput, match="newer than this cra"):
        Database(tmp_path / "cra.db")


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cra.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BadInput) as info:
        Database(path)
    assert str(path) in str(info.value)


def test_failed_write_leaves_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write():
        register_repo(db, _repo(), [], [_commit(1, kept=True)])
        raise RuntimeError("crash mid-transaction")
    assert db.query("SELECT * FROM repos") == []
    assert db.query("SELECT * FROM commits") == []


def test_register_and_read_back(db: Database) -> None:
    era = EraRecord(key="e" * 64, requirements=["pytest>=7"], build_requires=["setuptools"], first_commit="0" * 40,
                    status="locked", lock_path="locks/eeeeeeeeeeee.txt", lock_sha256="f" * 64)
    commits = [_commit(0, kept=False, stage="size"), _commit(1, kept=True, era=era.key),
               _commit(2, kept=False, stage="message"), _commit(3, kept=False, stage="message"),
               _commit(4, kept=False, stage="tests")]
    register_repo(db, _repo(), [era], commits)
    assert get_repo(db, "lib").head_sha == "a" * 40
    kept = get_commits(db, "lib", status="kept")
    assert [c.sha for c in kept] == [commits[1].sha]
    assert kept[0].era_key == era.key and kept[0].files[1].kind == "test"
    assert get_eras(db, "lib")[0].commits == [commits[1].sha]
    f = funnel(db, "lib")
    assert f["commits"] == 5 and f["kept"] == 1 and f["kept_pct"] == 20.0
    by = {s["stage"]: s for s in f["stages"]}
    assert by["message"] == {"stage": "message", "entered": 5, "rejected": 2, "left": 3}
    assert by["size"]["entered"] == 3 and by["tests"]["left"] == 1
    assert list_repos(db)[0]["kept"] == 1


def test_reregister_replaces_instead_of_duplicating(db: Database) -> None:
    register_repo(db, _repo(), [], [_commit(1, kept=True), _commit(2, kept=True)])
    register_repo(db, _repo(), [], [_commit(1, kept=True)])
    assert len(get_commits(db, "lib")) == 1
    assert len(db.query("SELECT * FROM repos")) == 1


def test_a_kept_commit_cannot_carry_a_rejection(db: Database) -> None:
    bad = _commit(1, kept=True)
    bad.reject_stage = "message"  # status still 'kept'
    with pytest.raises(sqlite3.IntegrityError):
        register_repo(db, _repo(), [], [bad])
    assert db.query("SELECT * FROM repos") == []


def test_unknown_repo_names_the_known_ones(db: Database) -> None:
    register_repo(db, _repo("alpha"), [], [])
    with pytest.raises(NotFound, match="known: alpha"):
        get_repo(db, "beta")


def test_second_writer_waits_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "cra.db"
    second = Database(path)
    errors: list[BaseException] = []
    started = threading.Event()

    def hold() -> None:
        first = Database(path)
        with first.write() as c:
            c.execute("INSERT INTO repos (name, origin_url, head_sha, default_branch, python_version, test_cmd,"
                      " source, created_at, updated_at) VALUES ('a', 'u', 'h', 'b', '3.11', 't', 'added', 'x', 'x')")
            started.set()
            threading.Event().wait(0.5)
        first.close()

    t = threading.Thread(target=hold)
    t.start()
    assert started.wait(10)
    try:
        register_repo(second, _repo("b"), [], [])
    except BaseException as exc:  # noqa: BLE001 - the failure we guard against, whatever it is
        errors.append(exc)
    t.join()
    assert not errors
    assert {r[0] for r in second.query("SELECT name FROM repos")} == {"a", "b"}


# ------------------------------------------------------------------ migration 5 and the enums


def _db_at(path: Path, version: int) -> Database:
    """A real DB migrated only up to ``version``, as an older cra left it."""
    keep = migrations.MIGRATIONS
    migrations.MIGRATIONS = [m for m in keep if m.version <= version]
    try:
        return Database(path)
    finally:
        migrations.MIGRATIONS = keep


def test_migration_5_keeps_every_row_and_makes_patches_text(tmp_path: Path) -> None:
    old = _db_at(tmp_path / "cra.db", 4)
    with old.write() as c:  # the columns of schema version 4, as an older cra wrote them
        c.execute("INSERT INTO repos (id, name, origin_url, head_sha, default_branch, python_version,"
                  " test_cmd, source, created_at, updated_at)"
                  " VALUES (1, 'lib', '/src/lib', ?, 'main', '3.11', 'python -m pytest', 'added', 'x', 'x')",
                  ("a" * 40,))
    latin1 = "-caf\xe9\n".encode("latin-1")  # a latin-1 source line: not UTF-8
    with old.write() as c:
        for i, patch in enumerate((b"+ok\n", latin1)):
            c.execute(
                "INSERT INTO tasks (repo_id, sha, status, instruction, test_patch, gold_patch,"
                " test_files, fail_to_pass, pass_to_pass, flaky, outcomes, durations, created_at)"
                " VALUES (1, ?, 'valid', 'Add thing', ?, ?, '[]', '[\"t::a\"]', '[]', '[]', '{}',"
                " '{}', 'x')", (f"{i:040x}", b"+test\n", patch))
        c.execute("INSERT INTO runs (repo_id, sha, provider, model, temperature, status, started_at)"
                  " VALUES (1, ?, 'scripted', 'm', 0.2, 'failed', 'x')", ("0" * 40,))
        c.execute("INSERT INTO attempts (run_id, attempt, apply_status, created_at)"
                  " VALUES (1, 1, 'applied', 'x')")
    old.close()

    db = Database(tmp_path / "cra.db")
    assert db.schema_version == migrations.LATEST
    rows = db.query("SELECT gold_patch, gold_patch_bytes, test_patch, typeof(test_patch) FROM tasks ORDER BY id")
    assert [tuple(r) for r in rows] == [("+ok\n", None, "+test\n", "text"),
                                        ("-caf\ufffd\n", latin1, "+test\n", "text")]
    from appliance.db.tasks import get_task

    assert get_task(db, "lib", f"{1:040x}").gold_patch.encode("utf-8", "surrogateescape") == latin1
    # The children of the rebuilt runs table survived (no cascade on DROP TABLE).
    assert db.one("SELECT COUNT(*) FROM attempts")[0] == 1
    assert db.one("PRAGMA foreign_key_check") is None
    assert db.one("PRAGMA foreign_keys")[0] == 1


@pytest.mark.parametrize(("table", "column", "enum_name"), [
    ("tasks", "status", "TaskStatus"), ("runs", "status", "RunStatus"),
    ("attempts", "apply_status", "ApplyStatus"), ("llm_calls", "status", "CallStatus"),
    ("eras", "status", "EraStatus"), ("triples", "stage", "TripleStage"),
    ("plans", "kind", "PlanKind"), ("plans", "source", "PlanSource"),
    ("training_datasets", "slot", "AdapterSlot"), ("training_dataset_rows", "source", "DataSource"),
    ("leases", "kind", "LeaseKind"),
    ("imported_datasets", "format", "ImportFormat"), ("imported_datasets", "slot", "AdapterSlot"),
    ("adapter_versions", "slot", "AdapterSlot"), ("adapter_versions", "method", "TrainingMethod"),
    ("adapter_aliases", "alias", "AdapterAlias"), ("adapter_events", "action", "AdapterAction"),
    ("evaluations", "kind", "EvalKind"), ("evaluations", "slot", "AdapterSlot"),
    ("evaluations", "status", "EvalStatus"), ("evaluation_results", "arm", "EvalArm"),
    ("evaluation_results", "metric", "EvalMetric"), ("cycles", "slot", "AdapterSlot"),
    ("cycles", "stage", "CycleStage"),
])
def test_every_status_enum_matches_its_check_clause(db: Database, table: str, column: str,
                                                    enum_name: str) -> None:
    import re

    from appliance import status

    sql = db.one("SELECT sql FROM sqlite_master WHERE name = ?", (table,))[0]
    clause = re.search(rf"\b{column}\s+TEXT NOT NULL CHECK \({column} IN \(([^)]*)\)\)", sql, re.DOTALL)
    assert clause, f"{table}.{column} has no CHECK list"
    allowed = re.findall(r"'([^']+)'", clause.group(1))
    assert allowed == status.values(getattr(status, enum_name))


def test_the_migration_runner_keeps_dashes_and_semicolons_inside_string_literals(tmp_path: Path) -> None:
    # The runner once cut every line at '--': a literal holding it would have been corrupted.
    script = """
        -- a comment line; with a semicolon
        CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);  -- trailing comment
        INSERT INTO notes (body) VALUES ('pip install --no-index -- x; y');
        /* a block comment; -- inside */
        INSERT INTO notes (body) VALUES ('it''s -- fine
        over two lines; really');
        -- only a comment at the end
    """
    statements = migrations._statements(script)
    assert len(statements) == 3 and not any(s.lstrip().startswith("--") and "\n" not in s for s in statements)
    conn = sqlite3.connect(tmp_path / "x.db")
    for statement in statements:
        conn.execute(statement)
    bodies = [r[0] for r in conn.execute("SELECT body FROM notes ORDER BY id")]
    assert bodies == ["pip install --no-index -- x; y", "it's -- fine\n        over two lines; really"]
    conn.close()


def test_sqlite_utils_inserts_join_the_write_transaction(db: Database) -> None:
    # db.table(...).insert nests as a savepoint: a failure later in write() takes it back too.
    with pytest.raises(RuntimeError), db.write():
        db.table("schema_migrations").insert({"version": 99, "name": "x", "applied_at": "now"})
        assert db.one("SELECT COUNT(*) FROM schema_migrations WHERE version = 99")[0] == 1
        raise RuntimeError("a later step of the same write fails")
    assert db.one("SELECT COUNT(*) FROM schema_migrations WHERE version = 99")[0] == 0
    with db.write():
        pk = db.table("schema_migrations").insert({"version": 98, "name": "y", "applied_at": "now"}).last_pk
    assert pk == 98 and not db.conn.in_transaction


def test_migration_7_gives_eras_their_locking_record_and_repos_their_branches(tmp_path: Path) -> None:
    old = _db_at(tmp_path / "cra.db", 5)
    with old.write() as c:
        c.execute("INSERT INTO repos (id, name, origin_url, head_sha, default_branch, python_version,"
                  " test_cmd, source, created_at, updated_at)"
                  " VALUES (1, 'lib', '/src/lib', ?, 'main', '3.11', 'python -m pytest', 'added', 'x', 'x')",
                  ("a" * 40,))
        c.execute("INSERT INTO eras (repo_id, key, requirements, build_requires, first_commit, status)"
                  " VALUES (1, ?, '[\"pytest\"]', '[]', ?, 'locked')", ("e" * 64, "a" * 40))
    old.close()
    db = Database(tmp_path / "cra.db")
    assert db.schema_version == migrations.LATEST
    (era,) = get_eras(db, "lib")
    assert (era.requirements, era.python, era.locked_as_of, era.lock_tool, era.notes) == (["pytest"], None, None, None, [])
    assert get_repo(db, "lib").branches == []


def test_a_reserved_migration_number_landing_late_keeps_the_schema_version(tmp_path: Path) -> None:
    """A DB of a cra that had migration 8 but not 7 (issues land in any order) gets 7, and
    its schema version stays the highest applied."""
    keep = migrations.MIGRATIONS
    migrations.MIGRATIONS = [m for m in keep if m.version != 7]
    try:
        Database(tmp_path / "cra.db").close()
    finally:
        migrations.MIGRATIONS = keep
    db = Database(tmp_path / "cra.db")
    assert db.schema_version == migrations.LATEST
    assert {r[0] for r in db.query("SELECT version FROM schema_migrations")} == {m.version for m in keep}
    assert "notes" in {r[1] for r in db.query("PRAGMA table_info(eras)")}
