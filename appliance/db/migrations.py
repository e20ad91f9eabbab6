"""Forward-only, named, transactional migrations of the raw DB.

Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with the row that
records it, so a crash mid-migration leaves the previous version intact. ``PRAGMA
user_version`` mirrors the latest applied version for cheap checks.

Tables planned by later issues and the migrations that will add them: tasks and
validations (harness validate), runs, llm_calls, retrievals, plans (harness run),
triples (plan-diff scoring), training_datasets, adapters (train / eval). Every one of them
hangs off ``repos.id`` / ``commits.id`` defined here.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from appliance.errors import BadInput

if TYPE_CHECKING:
    from appliance.db.core import Database


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "corpus: repos, eras, commits",
        """
        CREATE TABLE repos (
            id              INTEGER PRIMARY KEY,
            name            TEXT NOT NULL UNIQUE,
            origin_url      TEXT NOT NULL,
            head_sha        TEXT NOT NULL,
            default_branch  TEXT NOT NULL,
            python_version  TEXT NOT NULL,
            test_cmd        TEXT NOT NULL,
            source          TEXT NOT NULL CHECK (source IN ('added', 'imported')),
            manifest_sha256 TEXT,
            created_at      TEXT NOT NULL,
            updated_at      TEXT NOT NULL
        );
        CREATE TABLE eras (
            id             INTEGER PRIMARY KEY,
            repo_id        INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
            key            TEXT NOT NULL,
            requirements   TEXT NOT NULL,  -- JSON list
            build_requires TEXT NOT NULL,  -- JSON list
            first_commit   TEXT NOT NULL,
            lock_path      TEXT,
            lock_sha256    TEXT,
            status         TEXT NOT NULL CHECK (status IN ('pending', 'locked', 'unresolvable')),
            error          TEXT,
            UNIQUE (repo_id, key)
        );
        CREATE TABLE commits (
            id            INTEGER PRIMARY KEY,
            repo_id       INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
            sha           TEXT NOT NULL,
            parent_sha    TEXT,
            author_date   TEXT NOT NULL,
            author_ts     INTEGER NOT NULL,
            title         TEXT NOT NULL,
            message       TEXT NOT NULL,
            is_merge      INTEGER NOT NULL DEFAULT 0,
            status        TEXT NOT NULL CHECK (status IN ('kept', 'rejected')),
            reject_stage  TEXT,
            reject_reason TEXT,
            files_changed INTEGER NOT NULL,
            lines_added   INTEGER NOT NULL,
            lines_deleted INTEGER NOT NULL,
            files         TEXT NOT NULL,  -- JSON list of FileChange
            symbols       TEXT NOT NULL,  -- JSON {path: [symbol, ...]}
            scores        TEXT NOT NULL,  -- JSON {name: float}
            era_id        INTEGER REFERENCES eras(id) ON DELETE SET NULL,
            UNIQUE (repo_id, sha),
            CHECK ((status = 'kept') = (reject_stage IS NULL))
        );
        CREATE INDEX commits_repo_status ON commits (repo_id, status);
        CREATE INDEX commits_repo_time ON commits (repo_id, author_ts);
        """,
    ),
    Migration(
        2,
        "tasks: gold-patch validation outcomes",
        # One row per (repo, commit) that validation tried, whatever the outcome, so a rerun
        # skips it and the per-status counts are a query. Keyed by sha rather than
        # commits.id: re-importing a package replaces its commit rows, shas stay.
        # Patches are BLOBs: a diff of a latin-1 file is not valid UTF-8 text.
        """
        CREATE TABLE tasks (
            id            INTEGER PRIMARY KEY,
            repo_id       INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
            sha           TEXT NOT NULL,
            parent_sha    TEXT,
            status        TEXT NOT NULL CHECK (status IN ('valid', 'no_fail_to_pass',
                              'env_error', 'patch_error', 'timeout', 'flaky')),
            reason        TEXT,
            instruction   TEXT NOT NULL,
            test_patch    BLOB NOT NULL,
            gold_patch    BLOB NOT NULL,
            test_files    TEXT NOT NULL,  -- JSON list: the test files run
            fail_to_pass  TEXT NOT NULL,  -- JSON list of pytest node ids
            pass_to_pass  TEXT NOT NULL,  -- JSON list
            flaky         TEXT NOT NULL,  -- JSON list
            outcomes      TEXT NOT NULL,  -- JSON {run: {node id: outcome}}
            env_key       TEXT,
            isolation     TEXT,
            durations     TEXT NOT NULL,  -- JSON {step: seconds}
            log_path      TEXT,
            supplemented  INTEGER NOT NULL DEFAULT 0,
            created_at    TEXT NOT NULL,
            UNIQUE (repo_id, sha)
        );
        CREATE INDEX tasks_repo_status ON tasks (repo_id, status);
        """,
    ),
    Migration(
        3,
        "plans and triples: plan-diff alignment scores, SFT and DPO training data",
        # Plans and triples hang off (repo, commit sha) like tasks: a task-less commit can
        # have a gold plan, and re-importing a package keeps them. run_id has no foreign
        # key yet (the runs table comes with the pipeline). Score columns are NULL until a
        # plan is scored; score_detail keeps the whole AlignmentScore for `cra harness score`.
        # A triple's content_hash covers kind, stage, prompt and answers, not where it
        # came from: the same example from two commits is one row.
        """
        CREATE TABLE plans (
            id               INTEGER PRIMARY KEY,
            repo_id          INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
            sha              TEXT NOT NULL,
            run_id           INTEGER,
            attempt          INTEGER NOT NULL DEFAULT 1,
            kind             TEXT NOT NULL CHECK (kind IN ('step', 'meta', 'test')),
            source           TEXT NOT NULL CHECK (source IN ('gold', 'retrieval', 'model')),
            plan             TEXT NOT NULL,  -- JSON, harness.plans.Plan.to_dict
            plan_hash        TEXT NOT NULL,
            score            REAL,           -- combined alignment score in [0, 1]
            file_precision   REAL,
            file_recall      REAL,
            file_f1          REAL,
            symbol_precision REAL,
            symbol_recall    REAL,
            symbol_f1        REAL,
            order_score      REAL,
            score_detail     TEXT,           -- JSON, harness.alignment.AlignmentScore.to_dict
            scored_at        TEXT,
            created_at       TEXT NOT NULL
        );
        CREATE INDEX plans_repo_sha ON plans (repo_id, sha);
        CREATE INDEX plans_run ON plans (run_id);
        CREATE TABLE triples (
            id            INTEGER PRIMARY KEY,
            kind          TEXT NOT NULL CHECK (kind IN ('sft', 'dpo')),
            stage         TEXT NOT NULL CHECK (stage IN ('scope', 'precision', 'execute', 'plan')),
            origin        TEXT NOT NULL CHECK (origin IN ('gold', 'run')),
            repo_id       INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
            sha           TEXT NOT NULL,
            author_ts     INTEGER NOT NULL,  -- the commit's author date: chronological cut-offs
            prompt        TEXT NOT NULL,     -- JSON list of chat messages
            completion    TEXT,              -- JSON list of messages (sft)
            chosen        TEXT,              -- JSON list of messages (dpo)
            rejected      TEXT,              -- JSON list of messages (dpo)
            source_runs   TEXT NOT NULL,     -- JSON list of run ids ([] for gold)
            meta          TEXT NOT NULL,     -- JSON {margin, alignment, ...}
            content_hash  TEXT NOT NULL UNIQUE,
            created_at    TEXT NOT NULL,
            CHECK ((kind = 'sft') = (completion IS NOT NULL)),
            CHECK ((kind = 'dpo') = (chosen IS NOT NULL AND rejected IS NOT NULL))
        );
        CREATE INDEX triples_stage_kind ON triples (stage, kind);
        CREATE INDEX triples_repo_time ON triples (repo_id, author_ts);
        """,
    ),
    Migration(
        4,
        "runs: runs, llm_calls, retrievals",
        # One row per (task, model, adapter, temperature, sample): the UNIQUE key is what
        # makes `cra harness run` resumable. adapter is '' for the base model (NULLs are all
        # distinct in a UNIQUE index, so NULL would defeat it). llm_calls.run_id is NULL for
        # calls outside a run; one row per request *try*, so a retried timeout is two rows.
        # attempts.plan_id points into plans (migration 3); test_output is capped on write.
        """
        CREATE TABLE runs (
            id             INTEGER PRIMARY KEY,
            repo_id        INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
            sha            TEXT NOT NULL,
            provider       TEXT NOT NULL,
            model          TEXT NOT NULL,
            adapter        TEXT NOT NULL DEFAULT '',
            temperature    REAL NOT NULL,
            sample         INTEGER NOT NULL DEFAULT 0,
            status         TEXT NOT NULL CHECK (status IN ('running', 'resolved', 'failed',
                               'error', 'planned')),
            attempts       INTEGER NOT NULL DEFAULT 0,
            steps_to_green INTEGER,
            failure_kind   TEXT,
            started_at     TEXT NOT NULL,
            finished_at    TEXT,
            summary        TEXT NOT NULL DEFAULT '{}',  -- JSON
            UNIQUE (repo_id, sha, model, adapter, temperature, sample)
        );
        CREATE INDEX runs_repo_status ON runs (repo_id, status);
        CREATE TABLE llm_calls (
            id                INTEGER PRIMARY KEY,
            run_id            INTEGER REFERENCES runs(id) ON DELETE CASCADE,
            repo_id           INTEGER REFERENCES repos(id) ON DELETE CASCADE,
            sha               TEXT,
            stage             TEXT NOT NULL,
            attempt           INTEGER NOT NULL DEFAULT 1,
            try_no            INTEGER NOT NULL DEFAULT 1,  -- 2, 3 ...: retries of one request
            provider          TEXT NOT NULL,
            model             TEXT NOT NULL,
            adapter           TEXT NOT NULL DEFAULT '',
            temperature       REAL NOT NULL,
            seed              INTEGER,
            n                 INTEGER NOT NULL DEFAULT 1,
            max_tokens        INTEGER,
            messages          TEXT NOT NULL,  -- JSON list of chat messages
            responses         TEXT NOT NULL DEFAULT '[]',  -- JSON list of texts
            finish_reasons    TEXT NOT NULL DEFAULT '[]',  -- JSON list
            json_schema       TEXT,           -- JSON, NULL when output was free text
            prompt_tokens     INTEGER,
            completion_tokens INTEGER,
            latency_s         REAL NOT NULL,
            status            TEXT NOT NULL CHECK (status IN ('ok', 'timeout', 'server_error',
                                  'connection_error', 'bad_request', 'bad_output', 'error')),
            error             TEXT,
            created_at        TEXT NOT NULL
        );
        CREATE INDEX llm_calls_run ON llm_calls (run_id, attempt);
        CREATE INDEX llm_calls_task ON llm_calls (repo_id, sha);
        CREATE INDEX llm_calls_stage_status ON llm_calls (stage, status);
        CREATE TABLE retrievals (
            id          INTEGER PRIMARY KEY,
            run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            attempt     INTEGER NOT NULL DEFAULT 1,
            query       TEXT NOT NULL,
            files       TEXT NOT NULL,  -- JSON list of {path, score}
            symbols     TEXT NOT NULL,  -- JSON list of {path, name, score}
            seconds     REAL NOT NULL,
            created_at  TEXT NOT NULL
        );
        CREATE INDEX retrievals_run ON retrievals (run_id, attempt);
        CREATE TABLE attempts (
            id            INTEGER PRIMARY KEY,
            run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            attempt       INTEGER NOT NULL,
            plan_id       INTEGER REFERENCES plans(id) ON DELETE SET NULL,
            edits         TEXT NOT NULL DEFAULT '',  -- the search/replace blocks as written
            apply_status  TEXT NOT NULL CHECK (apply_status IN ('applied', 'apply_error',
                              'no_edits', 'not_run')),
            apply_error   TEXT,
            validation    TEXT NOT NULL DEFAULT '{}',  -- JSON {f2p: {...}, p2p: {...}, ...}
            test_output   TEXT NOT NULL DEFAULT '',
            resolved      INTEGER NOT NULL DEFAULT 0,
            created_at    TEXT NOT NULL,
            UNIQUE (run_id, attempt)
        );
        """,
    ),
]

LATEST = MIGRATIONS[-1].version


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def migrate(db: Database) -> list[int]:
    """Apply every migration newer than the DB; returns the versions applied."""
    conn = db.conn
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    newest = max(applied, default=0)
    if newest > LATEST:
        raise BadInput(
            f"the database is at schema version {newest}, newer than this cra knows ({LATEST})",
            path=db.path,
            hint="upgrade cra, or point CRA_HOME at another state folder",
        )
    done: list[int] = []
    for m in MIGRATIONS:
        if m.version in applied:
            continue
        with db.write() as c:
            # executescript would COMMIT our transaction; run statements one by one instead.
            for statement in _statements(m.sql):
                c.execute(statement)
            c.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (m.version, m.name, _now()),
            )
            c.execute(f"PRAGMA user_version = {m.version}")
        done.append(m.version)
    return done


def _statements(sql: str) -> list[str]:
    parts: list[str] = []
    buf = ""
    for line in sql.splitlines():
        stripped = line.split("--", 1)[0]
        buf += stripped + "\n"
        if stripped.rstrip().endswith(";") and sqlite3.complete_statement(buf):
            parts.append(buf.strip())
            buf = ""
    if buf.strip():
        parts.append(buf.strip())
    return parts
