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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from appliance.errors import BadInput

if TYPE_CHECKING:
    from appliance.db.core import Database


@dataclass(frozen=True)
class Migration:
    """One schema step. ``sql`` is frozen history: a later change is a new migration.

    ``rebuilds`` marks a migration that recreates tables (SQLite cannot alter a CHECK
    clause): it runs with foreign keys off, as SQLite's documented 12-step procedure asks,
    so dropping the old table does not cascade into its children, and the foreign keys are
    checked before it commits. ``python`` runs after the SQL, in the same transaction, for
    row conversions SQL cannot express.
    """

    version: int
    name: str
    sql: str
    rebuilds: bool = False
    python: Callable[[sqlite3.Connection], None] | None = None


def _patches_as_text(conn: sqlite3.Connection) -> None:
    """Migration 5: the patch BLOBs copied into ``*_bytes`` become TEXT where they are UTF-8."""
    rows = conn.execute("SELECT id, test_patch_bytes, gold_patch_bytes FROM tasks").fetchall()
    for task_id, *blobs in rows:
        values: list[object] = []
        for blob in blobs:
            raw = bytes(blob) if blob is not None else b""
            try:
                values += [raw.decode("utf-8"), None]
            except UnicodeDecodeError:
                values += [raw.decode("utf-8", "replace"), raw]
        conn.execute(
            "UPDATE tasks SET test_patch = ?, test_patch_bytes = ?, gold_patch = ?,"
            " gold_patch_bytes = ? WHERE id = ?",
            (*values, task_id),
        )


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
    Migration(
        5,
        "oracle, infrastructure and training data: readable patches, grading_conflict, "
        "infra_error, oracle_tamper, suspicious patches, training plans and datasets",
        # tasks: patches become TEXT so datasette and sqlite-utils show them; a patch that is
        # not valid UTF-8 (a latin-1 source file) keeps its exact bytes in *_bytes and its
        # TEXT column holds a readable decoding (U+FFFD for the bad bytes). New statuses:
        # grading_conflict (tasks), infra_error (runs), oracle_tamper (attempts). attempts
        # gain the suspicious flag; runs and attempts record the sandbox isolation level.
        # training_plans / training_datasets / training_dataset_rows: what `cra train-plan`
        # and `cra curate-data` write; rows keep each example's task and content hash so an
        # evaluation can prove its holdout never met the training data.
        """
        CREATE TABLE tasks_v5 (
            id            INTEGER PRIMARY KEY,
            repo_id       INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
            sha           TEXT NOT NULL,
            parent_sha    TEXT,
            status        TEXT NOT NULL CHECK (status IN ('valid', 'no_fail_to_pass', 'flaky',
                              'timeout', 'patch_error', 'env_error', 'grading_conflict')),
            reason        TEXT,
            instruction   TEXT NOT NULL,
            test_patch    TEXT NOT NULL,
            gold_patch    TEXT NOT NULL,
            test_patch_bytes BLOB,  -- exact bytes, only when the patch is not valid UTF-8
            gold_patch_bytes BLOB,
            test_files    TEXT NOT NULL,
            fail_to_pass  TEXT NOT NULL,
            pass_to_pass  TEXT NOT NULL,
            flaky         TEXT NOT NULL,
            outcomes      TEXT NOT NULL,
            env_key       TEXT,
            isolation     TEXT,
            durations     TEXT NOT NULL,
            log_path      TEXT,
            supplemented  INTEGER NOT NULL DEFAULT 0,
            created_at    TEXT NOT NULL,
            UNIQUE (repo_id, sha)
        );
        INSERT INTO tasks_v5 (id, repo_id, sha, parent_sha, status, reason, instruction,
            test_patch, gold_patch, test_patch_bytes, gold_patch_bytes, test_files, fail_to_pass,
            pass_to_pass, flaky, outcomes, env_key, isolation, durations, log_path, supplemented,
            created_at)
        SELECT id, repo_id, sha, parent_sha, status, reason, instruction, '', '',
            test_patch, gold_patch, test_files, fail_to_pass, pass_to_pass, flaky, outcomes,
            env_key, isolation, durations, log_path, supplemented, created_at
        FROM tasks;
        DROP TABLE tasks;
        ALTER TABLE tasks_v5 RENAME TO tasks;
        CREATE INDEX tasks_repo_status ON tasks (repo_id, status);

        CREATE TABLE runs_v5 (
            id             INTEGER PRIMARY KEY,
            repo_id        INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
            sha            TEXT NOT NULL,
            provider       TEXT NOT NULL,
            model          TEXT NOT NULL,
            adapter        TEXT NOT NULL DEFAULT '',
            temperature    REAL NOT NULL,
            sample         INTEGER NOT NULL DEFAULT 0,
            status         TEXT NOT NULL CHECK (status IN ('running', 'resolved', 'failed',
                               'planned', 'error', 'infra_error')),
            attempts       INTEGER NOT NULL DEFAULT 0,
            steps_to_green INTEGER,
            failure_kind   TEXT,
            isolation      TEXT,
            started_at     TEXT NOT NULL,
            finished_at    TEXT,
            summary        TEXT NOT NULL DEFAULT '{}',
            UNIQUE (repo_id, sha, model, adapter, temperature, sample)
        );
        INSERT INTO runs_v5 (id, repo_id, sha, provider, model, adapter, temperature, sample,
            status, attempts, steps_to_green, failure_kind, started_at, finished_at, summary)
        SELECT id, repo_id, sha, provider, model, adapter, temperature, sample, status, attempts,
            steps_to_green, failure_kind, started_at, finished_at, summary
        FROM runs;
        DROP TABLE runs;
        ALTER TABLE runs_v5 RENAME TO runs;
        CREATE INDEX runs_repo_status ON runs (repo_id, status);

        CREATE TABLE attempts_v5 (
            id            INTEGER PRIMARY KEY,
            run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            attempt       INTEGER NOT NULL,
            plan_id       INTEGER REFERENCES plans(id) ON DELETE SET NULL,
            edits         TEXT NOT NULL DEFAULT '',
            apply_status  TEXT NOT NULL CHECK (apply_status IN ('applied', 'apply_error',
                              'no_edits', 'not_run', 'oracle_tamper')),
            apply_error   TEXT,
            validation    TEXT NOT NULL DEFAULT '{}',
            test_output   TEXT NOT NULL DEFAULT '',
            resolved      INTEGER NOT NULL DEFAULT 0,
            suspicious    INTEGER NOT NULL DEFAULT 0,
            suspicious_reason TEXT,
            created_at    TEXT NOT NULL,
            UNIQUE (run_id, attempt),
            CHECK (NOT (resolved AND suspicious))
        );
        INSERT INTO attempts_v5 (id, run_id, attempt, plan_id, edits, apply_status, apply_error,
            validation, test_output, resolved, created_at)
        SELECT id, run_id, attempt, plan_id, edits, apply_status, apply_error, validation,
            test_output, resolved, created_at
        FROM attempts;
        DROP TABLE attempts;
        ALTER TABLE attempts_v5 RENAME TO attempts;

        CREATE INDEX runs_repo_sha ON runs (repo_id, sha);
        CREATE INDEX attempts_plan ON attempts (plan_id);
        CREATE INDEX retrievals_created ON retrievals (created_at);

        CREATE TABLE training_plans (
            id            INTEGER PRIMARY KEY,
            content_hash  TEXT NOT NULL UNIQUE,  -- sha256 of the artifact without timestamps
            params        TEXT NOT NULL,         -- JSON {since, repo, ...}
            plan          TEXT NOT NULL,         -- JSON artifact, checked against its schema
            created_at    TEXT NOT NULL
        );
        CREATE TABLE training_datasets (
            id            INTEGER PRIMARY KEY,
            slot          TEXT NOT NULL CHECK (slot IN ('scope', 'precision', 'plan',
                              'execute-code', 'task-analysis')),
            kind          TEXT NOT NULL CHECK (kind IN ('sft', 'dpo')),
            plan_id       INTEGER REFERENCES training_plans(id) ON DELETE SET NULL,
            path          TEXT NOT NULL,     -- folder under CRA_HOME: train.jsonl, valid.jsonl, dataset.json
            content_hash  TEXT NOT NULL,     -- sha256 over the JSONL files
            cutoff_ts     INTEGER NOT NULL,  -- every row's commit was authored before this
            rows_train    INTEGER NOT NULL,
            rows_valid    INTEGER NOT NULL,
            counts        TEXT NOT NULL,     -- JSON funnel: rows before and after each filter
            source_mix    TEXT NOT NULL,     -- JSON {gold|teacher|self|imported: rows}
            domain_mix    TEXT NOT NULL,     -- JSON {domain: rows}
            params        TEXT NOT NULL,     -- JSON: replay share, caps, thresholds, tokenizer
            notes         TEXT NOT NULL DEFAULT '[]',  -- JSON list (e.g. one domain only)
            created_at    TEXT NOT NULL,
            UNIQUE (slot, kind, content_hash)
        );
        CREATE TABLE training_dataset_rows (
            dataset_id    INTEGER NOT NULL REFERENCES training_datasets(id) ON DELETE CASCADE,
            split         TEXT NOT NULL CHECK (split IN ('train', 'valid')),
            row_no        INTEGER NOT NULL,
            triple_id     INTEGER,           -- NULL for imported rows
            repo          TEXT,              -- repo package name (NULL for imported rows)
            sha           TEXT,
            author_ts     INTEGER,
            source        TEXT NOT NULL CHECK (source IN ('gold', 'teacher', 'self', 'imported')),
            content_hash  TEXT NOT NULL,
            replay_of     INTEGER REFERENCES training_datasets(id) ON DELETE SET NULL,
            PRIMARY KEY (dataset_id, split, row_no)
        );
        CREATE INDEX training_dataset_rows_task ON training_dataset_rows (repo, sha);
        CREATE INDEX training_dataset_rows_hash ON training_dataset_rows (content_hash);
        """,
        rebuilds=True,
        python=_patches_as_text,
    ),
    Migration(
        6,
        "leases: units of work claimed by one process at a time",
        # Two `cra harness validate` on one home share the kept commits instead of both doing
        # all of them: a process claims a commit by inserting its row here (UNIQUE), renews
        # expires_ts while it works (a heartbeat) and deletes the row with the task it stores.
        # A row whose owner is dead (same host, pid gone) or whose lease ran out is taken over.
        """
        CREATE TABLE leases (
            id          INTEGER PRIMARY KEY,
            kind        TEXT NOT NULL CHECK (kind IN ('validate')),
            repo_id     INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
            sha         TEXT NOT NULL,
            owner       TEXT NOT NULL,     -- host:pid:token of the claiming process
            host        TEXT NOT NULL,
            pid         INTEGER NOT NULL,
            claimed_at  TEXT NOT NULL,
            expires_ts  REAL NOT NULL,     -- epoch seconds; the heartbeat moves it on
            taken_over  INTEGER NOT NULL DEFAULT 0,  -- times a dead owner's claim passed on
            UNIQUE (kind, repo_id, sha)
        );
        CREATE INDEX leases_owner ON leases (owner);
        """,
    ),
    Migration(
        7,
        "real projects: how each era was locked, maintenance branches",
        # eras: the project's own distribution (left out of the lock), the declared
        # requires-python, the Python the era is locked for (NULL: the repo's), the time
        # its packages were taken as of (NULL: the newest), the lock tool and the fallbacks
        # taken (JSON list). repos: the maintenance branches walked besides the default one.
        """
        ALTER TABLE eras ADD COLUMN project TEXT;
        ALTER TABLE eras ADD COLUMN requires_python TEXT;
        ALTER TABLE eras ADD COLUMN python TEXT;
        ALTER TABLE eras ADD COLUMN locked_as_of TEXT;
        ALTER TABLE eras ADD COLUMN lock_tool TEXT;
        ALTER TABLE eras ADD COLUMN notes TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE repos ADD COLUMN branches TEXT NOT NULL DEFAULT '[]';
        """,
    ),
    Migration(
        8,
        "imported datasets, and indexes for the log analysis and curation queries",
        # imported_datasets / imported_rows: external SFT data brought by USB (CommitPackFT,
        # OpenCodeInstruct, SRI Tuning) with its licence, already in chat form; an import is
        # one transaction, so a malformed line leaves nothing. content_hash is computed as a
        # triple's (harness stage 'execute' for the execute-code slot), so an imported row equal
        # to a triple is an exact duplicate. The indexes cover LogAnalysisAPI's slices (model,
        # adapter, time window) and curate-data's stream (stage, kind, author date).
        """
        CREATE TABLE imported_datasets (
            id            INTEGER PRIMARY KEY,
            name          TEXT NOT NULL UNIQUE,
            format        TEXT NOT NULL CHECK (format IN ('commitpackft', 'messages',
                              'prompt-completion', 'sri')),
            slot          TEXT NOT NULL CHECK (slot IN ('scope', 'precision', 'plan',
                              'execute-code', 'task-analysis')),
            license       TEXT NOT NULL,
            source_file   TEXT NOT NULL,   -- the file as given (it came on a USB stick)
            sha256        TEXT NOT NULL,   -- of that file
            rows          INTEGER NOT NULL,
            skipped       TEXT NOT NULL DEFAULT '{}',  -- JSON {reason: lines} (e.g. no change)
            created_at    TEXT NOT NULL,
            UNIQUE (sha256, format, slot)
        );
        CREATE TABLE imported_rows (
            id            INTEGER PRIMARY KEY,
            dataset_id    INTEGER NOT NULL REFERENCES imported_datasets(id) ON DELETE CASCADE,
            line_no       INTEGER NOT NULL,
            prompt        TEXT NOT NULL,   -- JSON list of chat messages
            completion    TEXT NOT NULL,   -- JSON list of messages
            meta          TEXT NOT NULL,   -- JSON: what the row said of itself (commit, repos, lang)
            content_hash  TEXT NOT NULL,
            UNIQUE (dataset_id, line_no)
        );
        CREATE INDEX imported_rows_hash ON imported_rows (content_hash);
        ALTER TABLE training_dataset_rows ADD COLUMN imported_row_id INTEGER
            REFERENCES imported_rows(id) ON DELETE SET NULL;
        CREATE INDEX runs_model ON runs (model, adapter);
        CREATE INDEX runs_started ON runs (started_at);
        CREATE INDEX llm_calls_stage_run ON llm_calls (stage, run_id, attempt);
        CREATE INDEX plans_source ON plans (source, run_id);
        CREATE INDEX triples_stage_kind_time ON triples (stage, kind, author_ts);
        CREATE INDEX training_datasets_slot ON training_datasets (slot, kind);
        """,
    ),
    Migration(
        9,
        "adapter registry: immutable versions with their hashes, active/candidate aliases, "
        "an append-only audit of every register, promote and rollback",
        # Versions are never updated or deleted (triggers refuse it): rollback is moving an
        # alias back, so every version must still be there. The (slot, alias) primary key is
        # what makes two active versions of one slot impossible, whatever two processes do.
        """
        CREATE TABLE adapter_versions (
            id            INTEGER PRIMARY KEY,
            slot          TEXT NOT NULL CHECK (slot IN ('scope', 'precision', 'plan',
                              'execute-code', 'task-analysis')),
            version       INTEGER NOT NULL CHECK (version >= 1),
            path          TEXT NOT NULL UNIQUE,  -- folder under CRA_HOME: adapters/<slot>/v<N>
            method        TEXT NOT NULL CHECK (method IN ('sft', 'dpo')),
            rank          INTEGER NOT NULL,
            base_model    TEXT NOT NULL,         -- the frozen base (a HF folder) it was trained on
            base_sha256   TEXT NOT NULL,         -- over every file of that folder
            base_gguf     TEXT,                  -- the same base as GGUF, for llama.cpp serving
            dataset_id    INTEGER REFERENCES training_datasets(id),
            dataset_hash  TEXT NOT NULL,
            recipe        TEXT NOT NULL,         -- JSON: the recipe as trained
            recipe_sha256 TEXT NOT NULL,
            files         TEXT NOT NULL,         -- JSON {relative path: sha256}, every file
            metrics       TEXT NOT NULL,         -- JSON: loss curve, tokens/s, wall time, steps
            created_at    TEXT NOT NULL,
            UNIQUE (slot, version)
        );
        CREATE TABLE adapter_aliases (
            slot          TEXT NOT NULL,
            alias         TEXT NOT NULL CHECK (alias IN ('active', 'candidate')),
            version_id    INTEGER NOT NULL REFERENCES adapter_versions(id),
            updated_at    TEXT NOT NULL,
            PRIMARY KEY (slot, alias)
        );
        CREATE TABLE adapter_events (
            id            INTEGER PRIMARY KEY,
            slot          TEXT NOT NULL,
            action        TEXT NOT NULL CHECK (action IN ('register', 'promote', 'rollback')),
            alias         TEXT NOT NULL,
            from_version  INTEGER,               -- the version number the alias left (NULL: none)
            to_version    INTEGER,               -- and the one it points at now (NULL: none)
            reason        TEXT NOT NULL DEFAULT '',
            report        TEXT,                  -- the evaluation report that justified it
            created_at    TEXT NOT NULL
        );
        CREATE INDEX adapter_events_slot ON adapter_events (slot, id);
        CREATE TRIGGER adapter_versions_immutable BEFORE UPDATE ON adapter_versions
        BEGIN SELECT RAISE(ABORT, 'adapter versions are immutable: train a new version'); END;
        CREATE TRIGGER adapter_versions_kept BEFORE DELETE ON adapter_versions
        BEGIN SELECT RAISE(ABORT, 'adapter versions are kept: rollback needs them'); END;
        CREATE TRIGGER adapter_events_immutable BEFORE UPDATE ON adapter_events
        BEGIN SELECT RAISE(ABORT, 'the adapter audit is append-only'); END;
        CREATE TRIGGER adapter_events_kept BEFORE DELETE ON adapter_events
        BEGIN SELECT RAISE(ABORT, 'the adapter audit is append-only'); END;
        CREATE TRIGGER adapter_aliases_insert_slot BEFORE INSERT ON adapter_aliases
        WHEN (SELECT slot FROM adapter_versions WHERE id = NEW.version_id) IS NOT NEW.slot
        BEGIN SELECT RAISE(ABORT, 'an alias points at a version of its own slot'); END;
        CREATE TRIGGER adapter_aliases_update_slot BEFORE UPDATE ON adapter_aliases
        WHEN (SELECT slot FROM adapter_versions WHERE id = NEW.version_id) IS NOT NEW.slot
        BEGIN SELECT RAISE(ABORT, 'an alias points at a version of its own slot'); END;
        """,
    ),
    Migration(
        10,
        "evaluations: chronological holdout results per task and side, the frozen regression "
        "set, day-sleep-eval cycles",
        # An evaluation is one row whatever becomes of it; its per-task results are written as
        # they are measured, so a rerun of the same evaluation (same sides, cutoff and
        # settings: params_hash) skips what is stored. Adapter versions are named by slot and
        # number, as the registry's audit names them. Holdout and frozen task lists are JSON
        # [[repo, sha], ...], fixed when the evaluation starts. A task of the frozen set is
        # never trained on (the leakage check refuses an evaluation otherwise).
        """
        CREATE TABLE evaluations (
            id            INTEGER PRIMARY KEY,
            kind          TEXT NOT NULL CHECK (kind IN ('candidate', 'regression')),
            slot          TEXT NOT NULL CHECK (slot IN ('scope', 'precision', 'plan',
                              'execute-code', 'task-analysis')),
            candidate     TEXT NOT NULL,      -- e.g. scope@v3, or base
            baseline      TEXT NOT NULL,
            candidate_version INTEGER,        -- NULL: the base model
            baseline_version  INTEGER,
            cutoff_ts     INTEGER NOT NULL,   -- every held-out task was authored at or after it
            params        TEXT NOT NULL,      -- JSON: samples, seeds, temperature, gates, model
            params_hash   TEXT NOT NULL,      -- sha256 of the sides, cutoff and params: what resumes
            holdout       TEXT NOT NULL,      -- JSON [[repo, sha], ...]
            frozen        TEXT NOT NULL,      -- JSON [[repo, sha], ...]
            datasets      TEXT NOT NULL,      -- JSON [dataset id, ...] checked for leakage
            status        TEXT NOT NULL CHECK (status IN ('running', 'done')),
            decision      TEXT CHECK (decision IN ('promote', 'keep', 'rollback')),
            reasons       TEXT NOT NULL DEFAULT '[]',  -- JSON list: why the gates decided so
            summary       TEXT NOT NULL DEFAULT '{}',  -- JSON: per metric means, differences, intervals
            report        TEXT,               -- var/reports/<id>, relative to CRA_HOME
            applied       TEXT,               -- the registry action taken (promote, rollback), if any
            created_at    TEXT NOT NULL,
            finished_at   TEXT
        );
        CREATE INDEX evaluations_slot ON evaluations (slot, id);
        CREATE INDEX evaluations_params ON evaluations (params_hash);
        CREATE TABLE evaluation_results (
            evaluation_id INTEGER NOT NULL REFERENCES evaluations(id) ON DELETE CASCADE,
            arm           TEXT NOT NULL CHECK (arm IN ('candidate', 'baseline')),
            repo          TEXT NOT NULL,
            sha           TEXT NOT NULL,
            metric        TEXT NOT NULL CHECK (metric IN ('scope_recall', 'symbol_recall',
                              'plan_alignment', 'meta_plan_alignment', 'test_plan_alignment',
                              'apply_rate', 'resolved_rate', 'pass_at_k', 'steps_to_green',
                              'repeat_error_rate')),
            value         REAL,               -- NULL: not measurable for this task (said in detail)
            detail        TEXT NOT NULL DEFAULT '{}',  -- JSON: run ids, call ids, what was counted
            created_at    TEXT NOT NULL,
            PRIMARY KEY (evaluation_id, arm, repo, sha, metric)
        );
        CREATE TABLE frozen_tasks (
            repo          TEXT NOT NULL,
            sha           TEXT NOT NULL,
            chosen_by     INTEGER REFERENCES evaluations(id) ON DELETE SET NULL,
            created_at    TEXT NOT NULL,
            PRIMARY KEY (repo, sha)
        );
        CREATE TABLE cycles (
            id            INTEGER PRIMARY KEY,
            slot          TEXT NOT NULL CHECK (slot IN ('scope', 'precision', 'plan',
                              'execute-code', 'task-analysis')),
            number        INTEGER NOT NULL,   -- 1, 2, ... per slot
            stage         TEXT NOT NULL CHECK (stage IN ('day', 'plan', 'curate', 'train', 'eval',
                              'done')),
            cutoff_ts     INTEGER NOT NULL,
            params        TEXT NOT NULL,      -- JSON: what the cycle was asked
            day           TEXT NOT NULL DEFAULT '{}',  -- JSON: the day's run summary, run ids
            plan_id       INTEGER,            -- training_plans.id
            dataset_id    INTEGER,            -- training_datasets.id
            version       INTEGER,            -- the candidate version trained
            evaluation_id INTEGER REFERENCES evaluations(id) ON DELETE SET NULL,
            decision      TEXT CHECK (decision IN ('promote', 'keep', 'rollback')),
            note          TEXT,               -- why a stage was skipped (no data, nothing new)
            created_at    TEXT NOT NULL,
            updated_at    TEXT NOT NULL,
            UNIQUE (slot, number)
        );
        """,
    ),
    Migration(
        11,
        "leases for pipeline runs too: two `cra harness run` (or a run and a cycle) on one home "
        "share the runs instead of resetting each other's",
        # A unit of kind 'run' is one RunKey (sha, model, adapter, temperature, sample), its
        # text in the sha column. Leases are transient (a live process's claims), so the
        # rebuilt table keeps the rows as they are.
        """
        CREATE TABLE leases_new (
            id          INTEGER PRIMARY KEY,
            kind        TEXT NOT NULL CHECK (kind IN ('validate', 'run')),
            repo_id     INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
            sha         TEXT NOT NULL,     -- the commit; for 'run', the run key's text
            owner       TEXT NOT NULL,     -- host:pid:token of the claiming process
            host        TEXT NOT NULL,
            pid         INTEGER NOT NULL,
            claimed_at  TEXT NOT NULL,
            expires_ts  REAL NOT NULL,     -- epoch seconds; the heartbeat moves it on
            taken_over  INTEGER NOT NULL DEFAULT 0,  -- times a dead owner's claim passed on
            UNIQUE (kind, repo_id, sha)
        );
        INSERT INTO leases_new SELECT * FROM leases;
        DROP TABLE leases;
        ALTER TABLE leases_new RENAME TO leases;
        CREATE INDEX leases_owner ON leases (owner);
        """,
        rebuilds=True,
    ),
]

LATEST = max(m.version for m in MIGRATIONS)


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
        if m.rebuilds:  # must be set outside a transaction
            conn.execute("PRAGMA foreign_keys=OFF")
        try:
            with db.write() as c:
                # executescript would COMMIT our transaction; run statements one by one instead.
                for statement in _statements(m.sql):
                    c.execute(statement)
                if m.python is not None:
                    m.python(c)
                if m.rebuilds and c.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise BadInput(
                        f"migration {m.version} ({m.name}) would break a foreign key",
                        path=db.path, hint="report this as a cra bug; the database is unchanged",
                    )
                c.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, _now()),
                )
                # a reserved number may land after a higher one: mirror the highest applied
                c.execute(f"PRAGMA user_version = {max([m.version, *applied, *done])}")
        finally:
            if m.rebuilds:
                conn.execute("PRAGMA foreign_keys=ON")
        done.append(m.version)
    return done


def _statements(sql: str) -> list[str]:
    """Split a script into statements at the semicolons SQLite itself sees as ends.

    Lines are fed whole to ``sqlite3.complete_statement``, which knows comments and string
    literals, so a ``--`` or ``;`` inside a quoted string never cuts a statement.
    """
    parts: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            parts.append(buf.strip())
            buf = ""
    if buf.strip():
        parts.append(buf.strip())
    return [p for p in parts if not _only_comments(p)]


def _only_comments(statement: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in statement.splitlines())
