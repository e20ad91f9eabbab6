"""SQL for evaluations: ``evaluations``, ``evaluation_results``, ``frozen_tasks``, ``cycles``,
and the reads an evaluation makes of the tasks and training tables.

The only module that writes those tables (migration 10). An evaluation's row is written
when it starts; its per-task results as they are measured, each batch in one transaction,
so a killed evaluation keeps what it measured and a rerun with the same ``params_hash``
skips it. Decisions and reports are set once, when the evaluation finishes.

``leaks`` is the query behind the leakage check: which training rows of the given
datasets touch the given tasks, by task (repo, commit) or by content (a row whose content
hash is the hash of a triple derived from one of those tasks).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance.db.core import Database
from appliance.errors import NotFound
from appliance.status import CycleStage, EvalDecision, EvalStatus

EVALUATION_VERSION = 1  # of the JSON shapes ``to_dict`` prints


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True, order=True)
class TaskRef:
    """One task by repo package and commit; ``author_ts`` orders a holdout in time."""

    author_ts: int
    repo: str
    sha: str
    parent: str | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return self.repo, self.sha

    def to_list(self) -> list[str]:
        return [self.repo, self.sha]


# ------------------------------------------------------------------------------ tasks


def valid_tasks(db: Database, *, since_ts: int | None = None, repos: Sequence[str] | None = None) -> list[TaskRef]:
    """Validated tasks (with a parent) oldest first, authored at or after ``since_ts``."""
    sql = ("SELECT r.name AS repo, t.sha, t.parent_sha, c.author_ts FROM tasks t"
           " JOIN repos r ON r.id = t.repo_id"
           " JOIN commits c ON c.repo_id = t.repo_id AND c.sha = t.sha"
           " WHERE t.status = 'valid' AND t.parent_sha IS NOT NULL")
    params: list[Any] = []
    if since_ts is not None:
        sql += " AND c.author_ts >= ?"
        params.append(int(since_ts))
    if repos:
        sql += f" AND r.name IN ({', '.join('?' * len(repos))})"
        params += list(repos)
    rows = db.query(sql + " ORDER BY c.author_ts, r.name, t.sha", params)
    return [TaskRef(int(r["author_ts"]), r["repo"], r["sha"], r["parent_sha"]) for r in rows]


def tasks_by_key(db: Database, keys: Iterable[tuple[str, str]]) -> list[TaskRef]:
    """The valid tasks among ``keys`` ((repo, sha) pairs), oldest first."""
    wanted = set(keys)
    if not wanted:
        return []
    return [t for t in valid_tasks(db) if t.key in wanted]


def dataset_cutoffs(db: Database, dataset_ids: Sequence[int]) -> dict[int, int]:
    """{dataset id: cutoff_ts}; ``NotFound`` naming a missing dataset."""
    out: dict[int, int] = {}
    for ds in dataset_ids:
        row = db.one("SELECT cutoff_ts FROM training_datasets WHERE id = ?", (int(ds),))
        if row is None:
            raise NotFound(f"no training dataset {ds}", hint="list them with 'cra curate-data --help'")
        out[int(ds)] = int(row[0])
    return out


@dataclass(frozen=True)
class Leak:
    """One training row that touches a held-out (or frozen) task."""

    dataset_id: int
    split: str
    row_no: int
    repo: str | None
    sha: str | None
    content_hash: str
    why: str  # "task": same repo and commit; "content": same example as one of the task's triples
    task_repo: str = ""  # the held-out task it touches
    task_sha: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def leaks(db: Database, dataset_ids: Sequence[int], tasks: Sequence[TaskRef], *, limit: int = 20) -> tuple[int, list[Leak]]:
    """(rows checked, up to ``limit`` leaking rows) of ``dataset_ids`` against ``tasks``.

    A row leaks when it comes from one of the tasks' commits, or when its content hash is
    the hash of a triple built from one of them (the same example reached training by
    another way: an imported set, a duplicate commit).
    """
    if not dataset_ids:
        return 0, []
    marks = ", ".join("?" * len(dataset_ids))
    checked = int(db.one(f"SELECT COUNT(*) FROM training_dataset_rows WHERE dataset_id IN ({marks})",
                         list(dataset_ids))[0])
    if not tasks:
        return checked, []
    conn = db.conn
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS eval_keys (repo TEXT NOT NULL, sha TEXT NOT NULL)")
    try:
        conn.execute("DELETE FROM eval_keys")
        conn.executemany("INSERT INTO eval_keys (repo, sha) VALUES (?, ?)", [t.key for t in tasks])
        rows = db.query(
            f"""
            SELECT r.dataset_id, r.split, r.row_no, r.repo, r.sha, r.content_hash, 'task' AS why,
                   k.repo AS task_repo, k.sha AS task_sha
            FROM training_dataset_rows r JOIN eval_keys k ON k.repo = r.repo AND k.sha = r.sha
            WHERE r.dataset_id IN ({marks})
            UNION
            SELECT r.dataset_id, r.split, r.row_no, r.repo, r.sha, r.content_hash, 'content' AS why,
                   k.repo AS task_repo, k.sha AS task_sha
            FROM training_dataset_rows r
            JOIN triples t ON t.content_hash = r.content_hash
            JOIN repos p ON p.id = t.repo_id
            JOIN eval_keys k ON k.repo = p.name AND k.sha = t.sha
            WHERE r.dataset_id IN ({marks})
              AND NOT (r.repo IS k.repo AND r.sha IS k.sha)
            ORDER BY 1, 2, 3 LIMIT ?
            """,
            [*dataset_ids, *dataset_ids, limit],
        )
    finally:
        conn.execute("DELETE FROM eval_keys")
    return checked, [Leak(r["dataset_id"], r["split"], r["row_no"], r["repo"], r["sha"], r["content_hash"], r["why"],
                          r["task_repo"], r["task_sha"]) for r in rows]


# ------------------------------------------------------------------------------ frozen set


def frozen_tasks(db: Database) -> list[tuple[str, str]]:
    return [(r["repo"], r["sha"]) for r in db.query("SELECT repo, sha FROM frozen_tasks ORDER BY created_at, repo, sha")]


def set_frozen(db: Database, tasks: Sequence[TaskRef], *, chosen_by: int | None) -> None:
    """Make ``tasks`` the frozen regression set, once: an existing set is kept as it is."""
    with db.write() as c:
        if c.execute("SELECT 1 FROM frozen_tasks LIMIT 1").fetchone() is not None:
            return
        now = _now()
        c.executemany("INSERT INTO frozen_tasks (repo, sha, chosen_by, created_at) VALUES (?, ?, ?, ?)",
                      [(t.repo, t.sha, chosen_by, now) for t in tasks])


# ------------------------------------------------------------------------------ evaluations


@dataclass
class EvaluationRow:
    """One evaluation: which sides, on which tasks, how, and what the gates decided."""

    id: int
    kind: str
    slot: str
    candidate: str
    baseline: str
    candidate_version: int | None
    baseline_version: int | None
    cutoff_ts: int
    params: dict[str, Any]
    params_hash: str
    holdout: list[tuple[str, str]]
    frozen: list[tuple[str, str]]
    datasets: list[int]
    status: str
    decision: str | None = None
    reasons: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    report: str | None = None
    applied: str | None = None
    created_at: str = ""
    finished_at: str | None = None

    @property
    def done(self) -> bool:
        return self.status == EvalStatus.DONE

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["holdout"] = [list(k) for k in self.holdout]
        out["frozen"] = [list(k) for k in self.frozen]
        return {"version": EVALUATION_VERSION, **out}


def _row_to_evaluation(row: sqlite3.Row) -> EvaluationRow:
    return EvaluationRow(
        id=row["id"], kind=row["kind"], slot=row["slot"], candidate=row["candidate"], baseline=row["baseline"],
        candidate_version=row["candidate_version"], baseline_version=row["baseline_version"],
        cutoff_ts=row["cutoff_ts"], params=json.loads(row["params"]), params_hash=row["params_hash"],
        holdout=[tuple(k) for k in json.loads(row["holdout"])], frozen=[tuple(k) for k in json.loads(row["frozen"])],
        datasets=json.loads(row["datasets"]), status=row["status"], decision=row["decision"],
        reasons=json.loads(row["reasons"]), summary=json.loads(row["summary"]), report=row["report"],
        applied=row["applied"], created_at=row["created_at"], finished_at=row["finished_at"],
    )


def start_evaluation(db: Database, *, kind: str, slot: str, candidate: str, baseline: str,
                     candidate_version: int | None, baseline_version: int | None, cutoff_ts: int,
                     params: dict[str, Any], params_hash: str, holdout: Sequence[TaskRef],
                     frozen: Sequence[TaskRef], datasets: Sequence[int]) -> tuple[EvaluationRow, bool]:
    """The running evaluation with this ``params_hash`` (resumed), or a new one: (row, resumed)."""
    with db.write() as c:
        row = c.execute("SELECT id FROM evaluations WHERE params_hash = ? AND status = 'running'"
                        " ORDER BY id DESC LIMIT 1", (params_hash,)).fetchone()
        if row is not None:
            return get_evaluation(db, int(row[0])), True
        cur = c.execute(
            "INSERT INTO evaluations (kind, slot, candidate, baseline, candidate_version, baseline_version,"
            " cutoff_ts, params, params_hash, holdout, frozen, datasets, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)",
            (kind, slot, candidate, baseline, candidate_version, baseline_version, int(cutoff_ts), _json(params),
             params_hash, _json([t.to_list() for t in holdout]), _json([t.to_list() for t in frozen]),
             _json(list(datasets)), _now()),
        )
        new_id = int(cur.lastrowid or 0)
    return get_evaluation(db, new_id), False


def get_evaluation(db: Database, evaluation_id: int) -> EvaluationRow:
    row = db.one("SELECT * FROM evaluations WHERE id = ?", (int(evaluation_id),))
    if row is None:
        raise NotFound(f"no evaluation {evaluation_id}", hint="list them with 'cra report list'")
    return _row_to_evaluation(row)


def list_evaluations(db: Database, *, slot: str | None = None, done_only: bool = False) -> list[EvaluationRow]:
    """Evaluations oldest first."""
    sql, params = "SELECT * FROM evaluations", []
    where = []
    if slot:
        where.append("slot = ?")
        params.append(slot)
    if done_only:
        where.append("status = 'done'")
    if where:
        sql += " WHERE " + " AND ".join(where)
    return [_row_to_evaluation(r) for r in db.query(sql + " ORDER BY id", params)]


def finish_evaluation(db: Database, evaluation_id: int, *, decision: str, reasons: Sequence[str],
                      summary: dict[str, Any], report: str) -> EvaluationRow:
    if decision not in tuple(EvalDecision):
        raise ValueError(f"unknown decision {decision!r}")
    with db.write() as c:
        c.execute("UPDATE evaluations SET status = 'done', decision = ?, reasons = ?, summary = ?, report = ?,"
                  " finished_at = ? WHERE id = ?",
                  (decision, _json(list(reasons)), _json(summary), report, _now(), int(evaluation_id)))
    return get_evaluation(db, evaluation_id)


def set_applied(conn: sqlite3.Connection, evaluation_id: int, action: str) -> None:
    """Record the registry action an evaluation's decision caused; in the caller's transaction,
    the one that moves the alias, so the two never disagree."""
    conn.execute("UPDATE evaluations SET applied = ? WHERE id = ?", (action, int(evaluation_id)))


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Result:
    """One metric of one task on one side; ``value`` None: not measurable there (``detail`` says why)."""

    arm: str
    repo: str
    sha: str
    metric: str
    value: float | None
    detail: dict[str, Any] = field(default_factory=dict)


def save_results(db: Database, evaluation_id: int, results: Iterable[Result]) -> int:
    """Store (or replace) results in one transaction; returns how many."""
    rows = [(int(evaluation_id), r.arm, r.repo, r.sha, r.metric, r.value, _json(r.detail), _now()) for r in results]
    with db.write() as c:
        c.executemany(
            "INSERT OR REPLACE INTO evaluation_results (evaluation_id, arm, repo, sha, metric, value, detail,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def list_results(db: Database, evaluation_id: int) -> list[Result]:
    return [Result(r["arm"], r["repo"], r["sha"], r["metric"], r["value"], json.loads(r["detail"]))
            for r in db.query("SELECT * FROM evaluation_results WHERE evaluation_id = ?"
                              " ORDER BY metric, arm, repo, sha", (int(evaluation_id),))]


def measured(db: Database, evaluation_id: int) -> set[tuple[str, str, str, str]]:
    """{(arm, repo, sha, metric)} already stored: what a resumed evaluation skips."""
    return {(r[0], r[1], r[2], r[3]) for r in db.query(
        "SELECT arm, repo, sha, metric FROM evaluation_results WHERE evaluation_id = ?", (int(evaluation_id),))}


# ------------------------------------------------------------------------------ cycles


@dataclass
class CycleRow:
    """One day -> sleep -> eval cycle of a slot; ``stage`` is where a rerun resumes."""

    id: int
    slot: str
    number: int
    stage: str
    cutoff_ts: int
    params: dict[str, Any]
    day: dict[str, Any]
    plan_id: int | None
    dataset_id: int | None
    version: int | None
    evaluation_id: int | None
    decision: str | None
    note: str | None
    created_at: str
    updated_at: str

    @property
    def done(self) -> bool:
        return self.stage == CycleStage.DONE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row_to_cycle(row: sqlite3.Row) -> CycleRow:
    return CycleRow(
        id=row["id"], slot=row["slot"], number=row["number"], stage=row["stage"], cutoff_ts=row["cutoff_ts"],
        params=json.loads(row["params"]), day=json.loads(row["day"]), plan_id=row["plan_id"],
        dataset_id=row["dataset_id"], version=row["version"], evaluation_id=row["evaluation_id"],
        decision=row["decision"], note=row["note"], created_at=row["created_at"], updated_at=row["updated_at"],
    )


def open_cycle(db: Database, slot: str) -> CycleRow | None:
    """The slot's unfinished cycle, if a run was stopped in the middle of one."""
    row = db.one("SELECT * FROM cycles WHERE slot = ? AND stage != 'done' ORDER BY number DESC LIMIT 1", (slot,))
    return _row_to_cycle(row) if row is not None else None


def new_cycle(db: Database, slot: str, *, cutoff_ts: int, params: dict[str, Any]) -> CycleRow:
    with db.write() as c:
        number = int(c.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM cycles WHERE slot = ?",
                               (slot,)).fetchone()[0])
        now = _now()
        cur = c.execute("INSERT INTO cycles (slot, number, stage, cutoff_ts, params, created_at, updated_at)"
                        " VALUES (?, ?, 'day', ?, ?, ?, ?)", (slot, number, int(cutoff_ts), _json(params), now, now))
        new_id = int(cur.lastrowid or 0)
    return get_cycle(db, new_id)


_CYCLE_FIELDS = ("stage", "day", "plan_id", "dataset_id", "version", "evaluation_id", "decision", "note")


def update_cycle(db: Database, cycle_id: int, **values: Any) -> CycleRow:
    """Set some of a cycle's fields (``stage`` moves it on) in one transaction."""
    unknown = set(values) - set(_CYCLE_FIELDS)
    if unknown:
        raise ValueError(f"not a cycle field: {sorted(unknown)}")
    if "stage" in values and values["stage"] not in tuple(CycleStage):
        raise ValueError(f"unknown cycle stage {values['stage']!r}")
    sets = ", ".join(f"{k} = ?" for k in values)
    params = [_json(v) if k == "day" else v for k, v in values.items()]
    with db.write() as c:
        c.execute(f"UPDATE cycles SET {sets}, updated_at = ? WHERE id = ?", (*params, _now(), int(cycle_id)))
    return get_cycle(db, cycle_id)


def get_cycle(db: Database, cycle_id: int) -> CycleRow:
    row = db.one("SELECT * FROM cycles WHERE id = ?", (int(cycle_id),))
    if row is None:
        raise NotFound(f"no cycle {cycle_id}")
    return _row_to_cycle(row)


def list_cycles(db: Database, slot: str | None = None) -> list[CycleRow]:
    sql, params = "SELECT * FROM cycles", []
    if slot:
        sql += " WHERE slot = ?"
        params.append(slot)
    return [_row_to_cycle(r) for r in db.query(sql + " ORDER BY slot, number", params)]
