"""SQL of the log analysis: what runs, LLM calls, retrievals, plans and attempts say per stage.

Every query takes the same run filter (``RunFilter``: repos, a time window on when the
run started, model, adapter) and joins by run, so a measure and its slice always mean the
same runs. Only finished runs count (``resolved``, ``failed``, and for the retrieval
planner ``planned``); ``infra_error`` and ``error`` runs are the infrastructure's and the
harness's failures, counted apart (``run_statuses``), never as the model's. Each query is
covered by an index (migrations 4, 5 and 8); ``tests/test_log_analysis.py`` checks the
query plans.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from appliance.db.core import Database

RETRIEVAL_PROVIDER = "retrieval"  # harness.pipeline's provider name for the no-model planner
MODEL_DONE = ("resolved", "failed")
TEST_TAIL_CHARS = 1500  # of a failed attempt's test output, for its error signature (pytest's
# failure lines and short summary are at the end)


@dataclass(frozen=True)
class RunFilter:
    """Which runs a query looks at. ``None`` means any; ``adapter=''`` is the base model.

    ``since``/``until``: ISO dates or times compared with ``runs.started_at`` (UTC),
    ``since`` inclusive, ``until`` exclusive.
    """

    repos: tuple[str, ...] | None = None
    since: str | None = None
    until: str | None = None
    model: str | None = None
    adapter: str | None = None

    def where(self, alias: str = "ru") -> tuple[str, list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        if self.repos is not None:
            marks = ", ".join("?" for _ in self.repos) or "NULL"
            parts.append(f"{alias}.repo_id IN (SELECT id FROM repos WHERE name IN ({marks}))")
            params += list(self.repos)
        if self.since:
            parts.append(f"{alias}.started_at >= ?")
            params.append(self.since)
        if self.until:
            parts.append(f"{alias}.started_at < ?")
            params.append(self.until)
        if self.model is not None:
            parts.append(f"{alias}.model = ?")
            params.append(self.model)
        if self.adapter is not None:
            parts.append(f"{alias}.adapter = ?")
            params.append(self.adapter)
        return (" AND " + " AND ".join(parts)) if parts else "", params


def _model_runs(f: RunFilter) -> tuple[str, list[Any]]:
    where, params = f.where()
    return f"ru.provider != '{RETRIEVAL_PROVIDER}' AND ru.status IN ('resolved', 'failed'){where}", params


def retrievals(db: Database, f: RunFilter, *, part: str = "files") -> list[sqlite3.Row]:
    """The first retrieval of each task the filtered runs worked on, with the commit's gold:
    (``got``: the retrieved ``part``, files or symbols, ``gold_files``, ``gold_symbols``) as
    JSON text. (Parsed in Python: SQLite's json_each re-parses each element for every
    json_extract, 5x slower.)"""
    if part not in ("files", "symbols"):
        raise ValueError(part)
    where, params = f.where()
    sql = f"""
        WITH firsts AS (
            SELECT MIN(ret.id) AS id FROM runs ru JOIN retrievals ret ON ret.run_id = ru.id AND ret.attempt = 1
            WHERE ru.status IN ('resolved', 'failed', 'planned'){where}
            GROUP BY ru.repo_id, ru.sha
        )
        SELECT ret.{part} AS got, c.files AS gold_files, {"c.symbols" if part == "symbols" else "NULL"} AS gold_symbols
        FROM firsts JOIN retrievals ret ON ret.id = firsts.id JOIN runs ru ON ru.id = ret.run_id
        JOIN commits c ON c.repo_id = ru.repo_id AND c.sha = ru.sha
    """
    return db.query(sql, params)


PLAN_PARTS = ("score", "file_precision", "file_recall", "file_f1", "symbol_precision", "symbol_recall",
              "symbol_f1", "order_score")


def plan_scores(db: Database, f: RunFilter, *, planner: str = "model") -> list[sqlite3.Row]:
    """Scored plans of the filtered runs: the model's (``planner='model'``) or the retrieval
    planner's (``'retrieval'``), with every part of the alignment score."""
    where, params = f.where()
    cond = "ru.provider != ?" if planner == "model" else "ru.provider = ?"
    sql = (f"SELECT {', '.join('p.' + c for c in PLAN_PARTS)} FROM runs ru JOIN plans p ON p.run_id = ru.id"
           f" WHERE {cond} AND ru.status IN ('resolved', 'failed', 'planned') AND p.score IS NOT NULL{where}")
    return db.query(sql, [RETRIEVAL_PROVIDER, *params])


def attempt_counts(db: Database, f: RunFilter) -> sqlite3.Row:
    """Counts over the attempts of finished model runs: ``attempts``; ``bad_plan`` (no usable
    plan); ``executed`` (a plan went to the execute stage, LLM errors aside); ``apply_error``;
    ``no_edits`` (the answer held no usable block)."""
    where, params = _model_runs(f)
    sql = f"""
        SELECT COUNT(*) AS attempts,
            COALESCE(SUM(a.apply_status = 'not_run' AND json_extract(a.validation, '$.kind') = 'bad_output'
                         AND json_extract(a.validation, '$.stage') = 'plan'), 0) AS bad_plan,
            COALESCE(SUM(a.plan_id IS NOT NULL
                         AND COALESCE(json_extract(a.validation, '$.kind'), '') != 'llm_error'), 0) AS executed,
            COALESCE(SUM(a.plan_id IS NOT NULL AND a.apply_status IN ('apply_error', 'oracle_tamper')), 0)
                AS apply_error,
            COALESCE(SUM(a.plan_id IS NOT NULL AND a.apply_status = 'no_edits'), 0) AS no_edits
        FROM runs ru JOIN attempts a ON a.run_id = ru.id WHERE {where}
    """
    row = db.one(sql, params)
    assert row is not None
    return row


def pollution_counts(db: Database, f: RunFilter) -> sqlite3.Row:
    """Execute answers whose blocks parsed (``answers``) and those that held more than the
    blocks (``stripped``: prose, fences or stray code the executor removed)."""
    where, params = _model_runs(f)
    sql = f"""
        SELECT COUNT(*) AS answers,
            COALESCE(SUM(trim(json_extract(c.responses, '$[0]')) != trim(a.edits)), 0) AS stripped
        FROM runs ru JOIN llm_calls c ON c.stage = 'execute' AND c.run_id = ru.id
        JOIN attempts a ON a.run_id = c.run_id AND a.attempt = c.attempt
        WHERE c.status = 'ok' AND a.edits != '' AND {where}
    """
    row = db.one(sql, params)
    assert row is not None
    return row


def call_counts(db: Database, f: RunFilter) -> list[sqlite3.Row]:
    """LLM call tries of the filtered model runs by (stage, status)."""
    where, params = f.where()
    sql = (f"SELECT c.stage, c.status, COUNT(*) AS n FROM runs ru JOIN llm_calls c ON c.run_id = ru.id"
           f" WHERE ru.provider != ?{where} GROUP BY c.stage, c.status ORDER BY c.stage, c.status")
    return db.query(sql, [RETRIEVAL_PROVIDER, *params])


def run_outcomes(db: Database, f: RunFilter) -> list[sqlite3.Row]:
    """(status, attempts, steps_to_green) of every filtered model run, whatever its status."""
    where, params = f.where()
    sql = (f"SELECT ru.status, ru.attempts, ru.steps_to_green FROM runs ru"
           f" WHERE ru.provider != ?{where}")
    return db.query(sql, [RETRIEVAL_PROVIDER, *params])


def attempts(db: Database, f: RunFilter, *, repaired_only: bool = False,
             failed_only: bool = False) -> list[sqlite3.Row]:
    """The attempts of the finished model runs (only those of runs with a repair, when
    ``repaired_only``), by run and attempt, with the tail of a failed one's test output (for
    its error signature)."""
    where, params = _model_runs(f)
    if repaired_only:
        where += " AND ru.attempts >= 2"
    if failed_only:
        where += " AND a.resolved = 0"
    sql = f"""
        SELECT a.run_id, a.attempt, a.resolved, a.apply_status, a.apply_error,
            CASE WHEN a.resolved THEN '' ELSE a.validation END AS validation,
            CASE WHEN a.resolved THEN '' ELSE substr(a.test_output, -{TEST_TAIL_CHARS}) END AS test_output
        FROM runs ru JOIN attempts a ON a.run_id = ru.id WHERE {where}
        ORDER BY a.run_id, a.attempt
    """
    return db.query(sql, params)


def distinct_values(db: Database, column: str, f: RunFilter) -> list[Any]:
    """The distinct repos (names), models or adapters of the filtered runs."""
    where, params = f.where()
    if column == "repo":
        sql = (f"SELECT DISTINCT r.name FROM runs ru JOIN repos r ON r.id = ru.repo_id WHERE 1=1{where}"
               " ORDER BY r.name")
    elif column in ("model", "adapter"):
        sql = f"SELECT DISTINCT ru.{column} FROM runs ru WHERE 1=1{where} ORDER BY ru.{column}"
    else:
        raise ValueError(column)
    return [r[0] for r in db.query(sql, params)]


def started_range(db: Database, f: RunFilter) -> tuple[str | None, str | None]:
    where, params = f.where()
    row = db.one(f"SELECT MIN(ru.started_at), MAX(ru.started_at) FROM runs ru WHERE 1=1{where}", params)
    return (row[0], row[1]) if row else (None, None)
