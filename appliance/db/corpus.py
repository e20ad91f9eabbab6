"""SQL for the corpus tables: repos, eras, commits. The only module that writes them."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from appliance.db.core import Database
from appliance.errors import NotFound
from appliance.records import CommitRecord, EraRecord, FileChange, RepoRecord

# The order in which filter stages run; the funnel is printed in this order.
STAGES = ("message", "size", "tests", "parse")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def register_repo(
    db: Database, repo: RepoRecord, eras: list[EraRecord], commits: list[CommitRecord]
) -> int:
    """Insert or replace a repo package with its eras and commits, in one transaction.

    Replacing (rather than merging) keeps a re-added or re-imported package exactly what
    its manifest says; later tables (tasks, runs) hang off commit shas, which are stable.
    """
    now = _now()
    with db.write() as c:
        row = c.execute("SELECT id FROM repos WHERE name = ?", (repo.name,)).fetchone()
        values = (
            repo.origin_url, repo.head_sha, repo.default_branch, repo.python_version,
            repo.test_cmd, repo.source, repo.manifest_sha256, json.dumps(repo.branches), now,
        )
        if row is None:
            cur = c.execute(
                "INSERT INTO repos (origin_url, head_sha, default_branch, python_version, test_cmd,"
                " source, manifest_sha256, branches, updated_at, name, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, repo.name, now),
            )
            repo_id = int(cur.lastrowid or 0)
        else:
            repo_id = int(row[0])
            c.execute(
                "UPDATE repos SET origin_url=?, head_sha=?, default_branch=?, python_version=?,"
                " test_cmd=?, source=?, manifest_sha256=?, branches=?, updated_at=? WHERE id=?",
                (*values, repo_id),
            )
            c.execute("DELETE FROM commits WHERE repo_id = ?", (repo_id,))
            c.execute("DELETE FROM eras WHERE repo_id = ?", (repo_id,))
        era_ids: dict[str, int] = {}
        for era in eras:
            cur = c.execute(
                "INSERT INTO eras (repo_id, key, requirements, build_requires, first_commit,"
                " lock_path, lock_sha256, status, error, project, requires_python, python,"
                " locked_as_of, lock_tool, notes)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    repo_id, era.key, json.dumps(era.requirements), json.dumps(era.build_requires),
                    era.first_commit, era.lock_path, era.lock_sha256, era.status, era.error,
                    era.project, era.requires_python, era.python, era.locked_as_of, era.lock_tool,
                    json.dumps(era.notes),
                ),
            )
            era_ids[era.key] = int(cur.lastrowid or 0)
        c.executemany(
            "INSERT INTO commits (repo_id, sha, parent_sha, author_date, author_ts, title, message,"
            " is_merge, status, reject_stage, reject_reason, files_changed, lines_added,"
            " lines_deleted, files, symbols, scores, era_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    repo_id, cm.sha, cm.parent, cm.author_date, cm.author_ts, cm.title, cm.message,
                    int(cm.is_merge), cm.status, cm.reject_stage, cm.reject_reason, len(cm.files),
                    cm.lines_added, cm.lines_deleted, json.dumps([asdict(f) for f in cm.files]),
                    json.dumps(cm.symbols), json.dumps(cm.scores),
                    era_ids.get(cm.era_key) if cm.era_key else None,
                )
                for cm in commits
            ],
        )
    return repo_id


def get_repo(db: Database, name: str) -> RepoRecord:
    row = db.one("SELECT * FROM repos WHERE name = ?", (name,))
    if row is None:
        known = ", ".join(r["name"] for r in db.query("SELECT name FROM repos ORDER BY name")) or "none"
        raise NotFound(f"no repo package named '{name}'", hint=f"known: {known}; add one with 'cra corpus add'")
    return RepoRecord(
        id=row["id"], name=row["name"], origin_url=row["origin_url"], head_sha=row["head_sha"],
        default_branch=row["default_branch"], python_version=row["python_version"],
        test_cmd=row["test_cmd"], source=row["source"], manifest_sha256=row["manifest_sha256"],
        branches=json.loads(row["branches"]),
    )


def list_repos(db: Database) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT r.name, r.origin_url, r.head_sha, r.python_version, r.source, r.updated_at,"
        " COUNT(c.id) AS commits, SUM(c.status = 'kept') AS kept,"
        " (SELECT COUNT(*) FROM eras e WHERE e.repo_id = r.id) AS eras"
        " FROM repos r LEFT JOIN commits c ON c.repo_id = r.id GROUP BY r.id ORDER BY r.name"
    )
    return [dict(r) | {"kept": r["kept"] or 0} for r in rows]


def _row_to_commit(row: Any, era_key: str | None) -> CommitRecord:
    return CommitRecord(
        sha=row["sha"], parent=row["parent_sha"], author_date=row["author_date"],
        author_ts=row["author_ts"], title=row["title"], message=row["message"],
        is_merge=bool(row["is_merge"]), files=[FileChange(**f) for f in json.loads(row["files"])],
        status=row["status"], reject_stage=row["reject_stage"], reject_reason=row["reject_reason"],
        symbols=json.loads(row["symbols"]), scores=json.loads(row["scores"]), era_key=era_key,
    )


def get_commits(db: Database, name: str, *, status: str | None = None) -> list[CommitRecord]:
    """Commits of a repo, oldest first (the order in which they landed)."""
    repo = get_repo(db, name)
    sql = (
        "SELECT c.*, e.key AS era_key FROM commits c LEFT JOIN eras e ON e.id = c.era_id"
        " WHERE c.repo_id = ?"
    )
    params: list[Any] = [repo.id]
    if status:
        sql += " AND c.status = ?"
        params.append(status)
    sql += " ORDER BY c.author_ts, c.id"
    return [_row_to_commit(r, r["era_key"]) for r in db.query(sql, params)]


def get_eras(db: Database, name: str) -> list[EraRecord]:
    repo = get_repo(db, name)
    eras = []
    for row in db.query("SELECT * FROM eras WHERE repo_id = ? ORDER BY id", (repo.id,)):
        shas = [r[0] for r in db.query("SELECT sha FROM commits WHERE era_id = ? ORDER BY author_ts", (row["id"],))]
        eras.append(
            EraRecord(
                key=row["key"], requirements=json.loads(row["requirements"]),
                build_requires=json.loads(row["build_requires"]), first_commit=row["first_commit"],
                commits=shas, lock_path=row["lock_path"], lock_sha256=row["lock_sha256"],
                status=row["status"], error=row["error"], project=row["project"],
                requires_python=row["requires_python"], python=row["python"],
                locked_as_of=row["locked_as_of"], lock_tool=row["lock_tool"],
                notes=json.loads(row["notes"]),
            )
        )
    return eras


def funnel(db: Database, name: str) -> dict[str, Any]:
    """The attrition funnel: how many commits entered and left each filter stage."""
    repo = get_repo(db, name)
    total = db.one("SELECT COUNT(*) FROM commits WHERE repo_id = ?", (repo.id,))[0]  # type: ignore[index]
    by_stage = {
        r["reject_stage"]: r["n"]
        for r in db.query(
            "SELECT reject_stage, COUNT(*) AS n FROM commits WHERE repo_id = ? AND status = 'rejected'"
            " GROUP BY reject_stage",
            (repo.id,),
        )
    }
    reasons = [
        dict(r)
        for r in db.query(
            "SELECT reject_stage AS stage, reject_reason AS reason, COUNT(*) AS n FROM commits"
            " WHERE repo_id = ? AND status = 'rejected' GROUP BY 1, 2 ORDER BY 1, 3 DESC",
            (repo.id,),
        )
    ]
    stages = []
    remaining = total
    for stage in STAGES + tuple(s for s in by_stage if s not in STAGES):
        rejected = by_stage.get(stage, 0)
        stages.append({"stage": stage, "entered": remaining, "rejected": rejected, "left": remaining - rejected})
        remaining -= rejected
    return {
        "repo": name,
        "commits": total,
        "kept": remaining,
        "kept_pct": round(100.0 * remaining / total, 1) if total else 0.0,
        "stages": stages,
        "reasons": reasons,
    }
