"""SQL for the ``plans`` and ``triples`` tables. The only module that writes them.

Plans are stored as the JSON the planner produced plus their alignment score (columns for
the parts a query aggregates, the whole score as JSON), so ``cra harness score`` can
recompute them at any time. Triples are training examples in chat form, deduplicated by
a content hash that covers what a trainer sees (kind, stage, prompt and answers), and
keep where they came from (repo, commit, author date, runs) for chronological cut-offs.

This module knows nothing of the harness: plans arrive as dicts, triples as records.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance.db.core import Database
from appliance.db.corpus import get_repo
from appliance.errors import BadInput, NotFound
from appliance.status import TripleKind, TripleOrigin, TripleStage, values

TRIPLE_KINDS = tuple(values(TripleKind))
TRIPLE_STAGES = tuple(values(TripleStage))
ORIGINS = tuple(values(TripleOrigin))

Messages = list[dict[str, str]]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def content_hash(
    kind: str, stage: str, prompt: Messages, completion: Messages | None = None,
    chosen: Messages | None = None, rejected: Messages | None = None,
) -> str:
    """sha256 over what a trainer sees; provenance is left out on purpose."""
    payload = {"kind": kind, "stage": stage, "prompt": prompt, "completion": completion,
               "chosen": chosen, "rejected": rejected}
    return hashlib.sha256(_canonical(payload).encode("utf-8")).hexdigest()


@dataclass
class TripleRecord:
    """One SFT example (``completion``) or DPO pair (``chosen``/``rejected``)."""

    kind: str
    stage: str
    repo: str
    sha: str
    author_ts: int
    prompt: Messages
    completion: Messages | None = None
    chosen: Messages | None = None
    rejected: Messages | None = None
    origin: str = "gold"
    source_runs: list[Any] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    created_at: str | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in TRIPLE_KINDS:
            raise BadInput(f"unknown triple kind {self.kind!r}", hint=f"use one of {', '.join(TRIPLE_KINDS)}")
        if self.stage not in TRIPLE_STAGES:
            raise BadInput(f"unknown triple stage {self.stage!r}", hint=f"use one of {', '.join(TRIPLE_STAGES)}")
        if self.origin not in ORIGINS:
            raise BadInput(f"unknown triple origin {self.origin!r}", hint=f"use one of {', '.join(ORIGINS)}")
        if self.kind == "sft" and (self.completion is None or self.chosen is not None or self.rejected is not None):
            raise BadInput("an sft triple has a completion and no chosen/rejected")
        if self.kind == "dpo" and (self.chosen is None or self.rejected is None or self.completion is not None):
            raise BadInput("a dpo triple has chosen and rejected and no completion")
        if not self.content_hash:
            self.content_hash = content_hash(self.kind, self.stage, self.prompt, self.completion,
                                             self.chosen, self.rejected)


def save_triples(db: Database, triples: list[TripleRecord]) -> int:
    """Insert in one transaction, skipping content already stored; returns rows added."""
    now = _now()
    repo_ids: dict[str, int] = {}
    for t in triples:
        if t.repo not in repo_ids:
            rid = get_repo(db, t.repo).id
            assert rid is not None
            repo_ids[t.repo] = rid
    added = 0
    with db.write() as c:
        for t in triples:
            cur = c.execute(
                "INSERT OR IGNORE INTO triples (kind, stage, origin, repo_id, sha, author_ts, prompt,"
                " completion, chosen, rejected, source_runs, meta, content_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    t.kind, t.stage, t.origin, repo_ids[t.repo], t.sha, int(t.author_ts),
                    json.dumps(t.prompt, ensure_ascii=False),
                    None if t.completion is None else json.dumps(t.completion, ensure_ascii=False),
                    None if t.chosen is None else json.dumps(t.chosen, ensure_ascii=False),
                    None if t.rejected is None else json.dumps(t.rejected, ensure_ascii=False),
                    json.dumps(t.source_runs), json.dumps(t.meta, sort_keys=True), t.content_hash,
                    t.created_at or now,
                ),
            )
            added += cur.rowcount
    return added


def _row_to_triple(row: sqlite3.Row) -> TripleRecord:
    def load(v: str | None) -> Any:
        return None if v is None else json.loads(v)

    return TripleRecord(
        id=row["id"], kind=row["kind"], stage=row["stage"], origin=row["origin"], repo=row["repo"],
        sha=row["sha"], author_ts=row["author_ts"], prompt=json.loads(row["prompt"]),
        completion=load(row["completion"]), chosen=load(row["chosen"]), rejected=load(row["rejected"]),
        source_runs=json.loads(row["source_runs"]), meta=json.loads(row["meta"]),
        content_hash=row["content_hash"], created_at=row["created_at"],
    )


def list_triples(
    db: Database,
    *,
    stage: str | None = None,
    kind: str | None = None,
    repo: str | None = None,
    before_ts: int | None = None,
) -> list[TripleRecord]:
    """Triples in a deterministic order: stage, kind, author date, repo, commit, hash."""
    sql = "SELECT t.*, r.name AS repo FROM triples t JOIN repos r ON r.id = t.repo_id WHERE 1=1"
    params: list[Any] = []
    if stage is not None:
        if stage not in TRIPLE_STAGES:
            raise BadInput(f"unknown stage '{stage}'", hint=f"known: {', '.join(TRIPLE_STAGES)}")
        sql += " AND t.stage = ?"
        params.append(stage)
    if kind is not None:
        if kind not in TRIPLE_KINDS:
            raise BadInput(f"unknown triple kind '{kind}'", hint=f"known: {', '.join(TRIPLE_KINDS)}")
        sql += " AND t.kind = ?"
        params.append(kind)
    if repo is not None:
        sql += " AND t.repo_id = ?"
        params.append(get_repo(db, repo).id)
    if before_ts is not None:
        sql += " AND t.author_ts < ?"
        params.append(int(before_ts))
    sql += " ORDER BY t.stage, t.kind, t.author_ts, r.name, t.sha, t.content_hash"
    return [_row_to_triple(r) for r in db.query(sql, params)]


def triple_counts(db: Database, *, repo: str | None = None) -> dict[str, Any]:
    """{"total", "by_stage": {stage: {"sft", "dpo"}}, "by_origin": {"gold", "run"}},
    every stage, kind and origin present (zeros included)."""
    where, params = "", []
    if repo is not None:
        where = " WHERE repo_id = ?"
        params.append(get_repo(db, repo).id)
    by_stage = {s: {k: 0 for k in TRIPLE_KINDS} for s in TRIPLE_STAGES}
    for r in db.query(f"SELECT stage, kind, COUNT(*) AS n FROM triples{where} GROUP BY 1, 2", params):
        by_stage[r["stage"]][r["kind"]] = r["n"]
    by_origin = {o: 0 for o in ORIGINS}
    for r in db.query(f"SELECT origin, COUNT(*) AS n FROM triples{where} GROUP BY 1", params):
        by_origin[r["origin"]] = r["n"]
    return {"total": sum(sum(v.values()) for v in by_stage.values()), "by_stage": by_stage,
            "by_origin": by_origin}


# --------------------------------------------------------------------------- plans


@dataclass
class PlanRow:
    """A stored plan and, once scored, its alignment score."""

    id: int
    repo: str
    sha: str
    run_id: int | None
    attempt: int
    kind: str
    source: str
    plan: dict[str, Any]
    plan_hash: str
    score: float | None
    score_detail: dict[str, Any] | None
    created_at: str
    scored_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "repo": self.repo, "sha": self.sha, "run_id": self.run_id,
            "attempt": self.attempt, "kind": self.kind, "source": self.source, "score": self.score,
            "score_detail": self.score_detail, "plan": self.plan, "created_at": self.created_at,
            "scored_at": self.scored_at,
        }


def save_plan(
    db: Database, repo: str, sha: str, plan: dict[str, Any], *, run_id: int | None = None, attempt: int = 1,
) -> int:
    """Store a plan (``Plan.to_dict()``); the same plan for the same commit, run and
    attempt is stored once (a rerun of gold derivation adds nothing)."""
    kind, source = plan.get("kind"), plan.get("source")
    if not isinstance(plan.get("steps"), list) or kind is None or source is None:
        raise BadInput("a stored plan needs 'kind', 'source' and 'steps'")
    text = json.dumps(plan, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    rid = get_repo(db, repo).id
    with db.write() as c:
        row = c.execute(
            "SELECT id FROM plans WHERE repo_id = ? AND sha = ? AND run_id IS ? AND attempt = ? AND plan_hash = ?",
            (rid, sha, run_id, attempt, digest),
        ).fetchone()
        if row is not None:
            return int(row[0])
        cur = c.execute(
            "INSERT INTO plans (repo_id, sha, run_id, attempt, kind, source, plan, plan_hash, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, sha, run_id, attempt, kind, source, text, digest, _now()),
        )
    return int(cur.lastrowid or 0)


def set_plan_score(db: Database, plan_id: int, detail: dict[str, Any]) -> None:
    """Store an ``AlignmentScore.to_dict()`` on a plan: the parts as columns, all as JSON."""
    files, symbols = detail["files"], detail["symbols"]
    with db.write() as c:
        cur = c.execute(
            "UPDATE plans SET score = ?, file_precision = ?, file_recall = ?, file_f1 = ?,"
            " symbol_precision = ?, symbol_recall = ?, symbol_f1 = ?, order_score = ?,"
            " score_detail = ?, scored_at = ? WHERE id = ?",
            (
                detail["score"], files["precision"], files["recall"], files["f1"],
                symbols["precision"], symbols["recall"], symbols["f1"], detail["order"],
                json.dumps(detail, sort_keys=True), _now(), plan_id,
            ),
        )
        if cur.rowcount == 0:
            raise NotFound(f"no plan with id {plan_id}")


def list_plans(db: Database, *, repo: str | None = None, sha: str | None = None) -> list[PlanRow]:
    """Plans oldest first (by commit author date where the commit is known, then id)."""
    sql = (
        "SELECT p.*, r.name AS repo FROM plans p JOIN repos r ON r.id = p.repo_id"
        " LEFT JOIN commits c ON c.repo_id = p.repo_id AND c.sha = p.sha WHERE 1=1"
    )
    params: list[Any] = []
    if repo is not None:
        sql += " AND p.repo_id = ?"
        params.append(get_repo(db, repo).id)
    if sha is not None:
        sql += " AND p.sha = ?"
        params.append(sha)
    sql += " ORDER BY r.name, c.author_ts, p.id"
    return [
        PlanRow(
            id=r["id"], repo=r["repo"], sha=r["sha"], run_id=r["run_id"], attempt=r["attempt"],
            kind=r["kind"], source=r["source"], plan=json.loads(r["plan"]), plan_hash=r["plan_hash"],
            score=r["score"], score_detail=None if r["score_detail"] is None else json.loads(r["score_detail"]),
            created_at=r["created_at"], scored_at=r["scored_at"],
        )
        for r in db.query(sql, params)
    ]
