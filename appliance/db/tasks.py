"""SQL for the ``tasks`` table: one row per kept commit that validation has tried.

A row is written whole, in one transaction, or not at all, so ``cra harness validate`` can
be stopped at any moment and rerun: the commits without a row are exactly the work left
(``pending_commits``). Every outcome is a row, not only the valid ones, so the per-status
counts are a query and an ``env_error`` keeps the log that explains it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance.db.core import Database
from appliance.db.corpus import _row_to_commit, get_repo
from appliance.errors import BadInput, NotFound
from appliance.records import CommitRecord
from appliance.status import TaskStatus, values

# The order in which statuses are reported.
STATUSES = tuple(values(TaskStatus))
TASK_VERSION = 1  # of the JSON shape ``TaskRecord.to_dict`` prints


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def patch_columns(patch: str) -> tuple[str, bytes | None]:
    """(readable text, exact bytes or None) for a patch held with surrogateescape.

    A patch of a file that is not UTF-8 (a latin-1 source) carries its bytes as lone
    surrogates; the TEXT column gets a readable decoding and ``*_bytes`` the exact bytes.
    """
    raw = patch.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), raw


def patch_from_columns(text: str, raw: bytes | None) -> str:
    return raw.decode("utf-8", "surrogateescape") if raw is not None else text


@dataclass
class TaskRecord:
    """What validating one commit found: a SWE-bench-shaped task, or why it is not one.

    ``outcomes`` keeps every run's per-test verdict (``before``, ``after1``, ``after2``) so
    a surprising FAIL_TO_PASS list can be checked without rerunning anything.
    """

    repo: str
    sha: str
    parent: str | None
    status: str
    instruction: str
    test_patch: str = ""
    gold_patch: str = ""
    test_files: list[str] = field(default_factory=list)
    fail_to_pass: list[str] = field(default_factory=list)
    pass_to_pass: list[str] = field(default_factory=list)
    flaky: list[str] = field(default_factory=list)
    outcomes: dict[str, dict[str, str]] = field(default_factory=dict)
    reason: str | None = None
    env_key: str | None = None
    isolation: str | None = None
    durations: dict[str, float] = field(default_factory=dict)
    log_path: str | None = None
    supplemented: bool = False
    created_at: str | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown task status {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"version": TASK_VERSION, **asdict(self)}

    def summary(self) -> dict[str, Any]:
        """The short form ``cra harness tasks NAME`` lists."""
        return {
            "sha": self.sha, "status": self.status, "reason": self.reason,
            "title": self.instruction.split("\n", 1)[0][:100],
            "fail_to_pass": len(self.fail_to_pass), "pass_to_pass": len(self.pass_to_pass),
            "flaky": len(self.flaky), "supplemented": self.supplemented,
            "seconds": round(self.durations.get("total", 0.0), 2),
        }


def save_task(db: Database, task: TaskRecord, *, replace: bool = False) -> int:
    """Store one task in one transaction; returns its id.

    Without ``replace`` an existing row for the same commit wins (two runs racing on the
    same repo keep the first result, never a mix); with it the row is replaced whole.
    """
    repo = get_repo(db, task.repo)
    created = task.created_at or _now()
    values = (
        task.parent, task.status, task.reason, task.instruction, *patch_columns(task.test_patch),
        *patch_columns(task.gold_patch), json.dumps(task.test_files), json.dumps(task.fail_to_pass),
        json.dumps(task.pass_to_pass), json.dumps(task.flaky), json.dumps(task.outcomes),
        task.env_key, task.isolation, json.dumps(task.durations), task.log_path,
        int(task.supplemented), created,
    )
    columns = (
        "parent_sha, status, reason, instruction, test_patch, test_patch_bytes, gold_patch,"
        " gold_patch_bytes, test_files,"
        " fail_to_pass, pass_to_pass, flaky, outcomes, env_key, isolation, durations, log_path,"
        " supplemented, created_at"
    )
    with db.write() as c:
        row = c.execute(
            "SELECT id FROM tasks WHERE repo_id = ? AND sha = ?", (repo.id, task.sha)
        ).fetchone()
        if row is not None and not replace:
            task.id = int(row[0])
            return task.id
        if row is not None:
            c.execute("DELETE FROM tasks WHERE id = ?", (row[0],))
        cur = c.execute(
            f"INSERT INTO tasks (repo_id, sha, {columns}) VALUES ({', '.join('?' * (len(values) + 2))})",
            (repo.id, task.sha, *values),
        )
    task.id = int(cur.lastrowid or 0)
    task.created_at = created
    return task.id


def _row_to_task(name: str, row: sqlite3.Row) -> TaskRecord:
    return TaskRecord(
        id=row["id"], repo=name, sha=row["sha"], parent=row["parent_sha"], status=row["status"],
        reason=row["reason"], instruction=row["instruction"], test_patch=patch_from_columns(row["test_patch"], row["test_patch_bytes"]),
        gold_patch=patch_from_columns(row["gold_patch"], row["gold_patch_bytes"]), test_files=json.loads(row["test_files"]),
        fail_to_pass=json.loads(row["fail_to_pass"]), pass_to_pass=json.loads(row["pass_to_pass"]),
        flaky=json.loads(row["flaky"]), outcomes=json.loads(row["outcomes"]),
        env_key=row["env_key"], isolation=row["isolation"], durations=json.loads(row["durations"]),
        log_path=row["log_path"], supplemented=bool(row["supplemented"]), created_at=row["created_at"],
    )


def get_task(db: Database, name: str, sha: str) -> TaskRecord:
    """One task by full or abbreviated (at least 4 hex digits) commit sha."""
    repo = get_repo(db, name)
    full = _resolve(db, "tasks", repo.id, sha, what="task", hint="list them with 'cra harness tasks " + name + "'")
    row = db.one("SELECT * FROM tasks WHERE repo_id = ? AND sha = ?", (repo.id, full))
    assert row is not None
    return _row_to_task(name, row)


def list_tasks(db: Database, name: str, *, status: str | None = None) -> list[TaskRecord]:
    """Tasks of a repo in the order their commits landed."""
    repo = get_repo(db, name)
    sql = (
        "SELECT t.* FROM tasks t LEFT JOIN commits c ON c.repo_id = t.repo_id AND c.sha = t.sha"
        " WHERE t.repo_id = ?"
    )
    params: list[Any] = [repo.id]
    if status:
        if status not in STATUSES:
            raise BadInput(f"unknown task status '{status}'", hint=f"known: {', '.join(STATUSES)}")
        sql += " AND t.status = ?"
        params.append(status)
    sql += " ORDER BY c.author_ts, t.id"
    return [_row_to_task(name, r) for r in db.query(sql, params)]


def task_counts(db: Database, name: str) -> dict[str, int]:
    """{status: count} with every status present (zeros included), in report order."""
    repo = get_repo(db, name)
    found = {
        r["status"]: r["n"]
        for r in db.query(
            "SELECT status, COUNT(*) AS n FROM tasks WHERE repo_id = ? GROUP BY status", (repo.id,)
        )
    }
    return {s: found.get(s, 0) for s in STATUSES}


def pending_commits(
    db: Database,
    name: str,
    *,
    shas: list[str] | None = None,
    since_ts: int | None = None,
    limit: int | None = None,
    include_done: bool = False,
) -> list[CommitRecord]:
    """Kept commits that have no task yet, oldest first: the work a validate run has left.

    ``shas`` (full or abbreviated) narrows the set; naming a commit that is not kept is an
    error rather than a silent skip. ``include_done`` returns tried commits too (a rerun
    that replaces their rows).
    """
    repo = get_repo(db, name)
    sql = (
        "SELECT c.*, e.key AS era_key FROM commits c LEFT JOIN eras e ON e.id = c.era_id"
        " WHERE c.repo_id = ? AND c.status = 'kept'"
    )
    params: list[Any] = [repo.id]
    if shas:
        full = [
            _resolve(db, "commits", repo.id, s, what="kept commit",
                     hint="see 'cra corpus show " + name + "'", kept_only=True)
            for s in shas
        ]
        sql += f" AND c.sha IN ({', '.join('?' * len(full))})"
        params += full
    if since_ts is not None:
        sql += " AND c.author_ts >= ?"
        params.append(since_ts)
    if not include_done:
        sql += " AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.repo_id = c.repo_id AND t.sha = c.sha)"
    sql += " ORDER BY c.author_ts, c.id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [_row_to_commit(r, r["era_key"]) for r in db.query(sql, params)]


def _resolve(
    db: Database, table: str, repo_id: int | None, sha: str, *, what: str, hint: str,
    kept_only: bool = False,
) -> str:
    prefix = sha.strip().lower()
    if len(prefix) < 4 or any(ch not in "0123456789abcdef" for ch in prefix):
        raise BadInput(f"'{sha}' is not a commit sha", hint="give at least 4 hex digits")
    extra = " AND status = 'kept'" if kept_only else ""
    rows = db.query(
        f"SELECT sha FROM {table} WHERE repo_id = ? AND sha >= ? AND sha < ?{extra} LIMIT 2",
        (repo_id, prefix, prefix + "g"),
    )
    if not rows:
        raise NotFound(f"no {what} {sha}", hint=hint)
    if len(rows) > 1:
        raise BadInput(f"'{sha}' names more than one {what}", hint="give more hex digits")
    return str(rows[0][0])
