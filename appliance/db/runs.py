"""SQL for runs of the agent pipeline: ``runs``, ``llm_calls``, ``retrievals``, ``attempts``.

The only module that writes those tables. A run is one (task, model, adapter,
temperature, sample) and its row is the resumption point of ``cra harness run``: a
finished run (``resolved``, ``failed``, ``planned``) is skipped by a rerun unless forced,
an interrupted (``running``), crashed (``error``) or infrastructure-failed
(``infra_error``) one starts over, its partial children removed in the same transaction
so a trace never mixes two tries. ``infra_error`` runs never count in a resolved rate.

Everything one run did is kept: each LLM request try (``log_call``), each retrieval
(``log_retrieval``) and each attempt's edits and test outcome (``save_attempt``);
``get_run_trace`` returns it all in order for ``cra harness show RUN``. Calls made
outside a run (an ad-hoc ``complete()``) are kept too, with ``run_id`` NULL.

This module knows nothing of the LLM client or the harness: values arrive as records.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance.db.core import Database
from appliance.db.corpus import get_repo
from appliance.errors import BadInput, NotFound
from appliance.status import FINISHED_RUN_STATUSES, ApplyStatus, CallStatus, RunStatus, values

RUN_STATUSES = tuple(values(RunStatus))
FINISHED = tuple(s.value for s in RunStatus if s in FINISHED_RUN_STATUSES)
CALL_STATUSES = tuple(values(CallStatus))
APPLY_STATUSES = tuple(values(ApplyStatus))
TEST_OUTPUT_CAP = 64_000  # characters of test output kept per attempt (head and tail)
RUN_VERSION = 1  # of the JSON shapes ``RunRecord.to_dict`` / ``RunTrace.to_dict`` print


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def cap_output(text: str, limit: int = TEST_OUTPUT_CAP) -> str:
    """Keep the head and the tail of a long test log: the failure summary is at the end."""
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut} characters cut ...]\n{text[-half:]}"


# ------------------------------------------------------------------------------ records


@dataclass
class RunKey:
    """What identifies a run: the UNIQUE key of the ``runs`` table plus the provider."""

    repo: str
    sha: str
    provider: str
    model: str
    adapter: str = ""
    temperature: float = 0.2
    sample: int = 0


@dataclass
class RunRecord:
    id: int
    repo: str
    repo_id: int
    sha: str
    provider: str
    model: str
    adapter: str
    temperature: float
    sample: int
    status: str
    attempts: int
    steps_to_green: int | None
    failure_kind: str | None
    started_at: str
    finished_at: str | None
    summary: dict[str, Any] = field(default_factory=dict)
    isolation: str | None = None  # the sandbox level its candidates were tested at

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_dict(self) -> dict[str, Any]:
        return {"version": RUN_VERSION, **asdict(self)}


@dataclass
class CallRecord:
    """One LLM request try, whatever its outcome."""

    stage: str
    provider: str
    model: str
    messages: list[dict[str, Any]]
    temperature: float
    status: str
    latency_s: float
    adapter: str = ""
    seed: int | None = None
    n: int = 1
    max_tokens: int | None = None
    responses: list[str] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=list)
    json_schema: dict[str, Any] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    run_id: int | None = None
    repo_id: int | None = None
    sha: str | None = None
    attempt: int = 1
    try_no: int = 1
    created_at: str | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        if self.status not in CALL_STATUSES:
            raise ValueError(f"unknown LLM call status {self.status!r}")


@dataclass
class RetrievalRecord:
    run_id: int
    attempt: int
    query: str
    files: list[dict[str, Any]]
    symbols: list[dict[str, Any]]
    seconds: float
    created_at: str | None = None
    id: int | None = None


@dataclass
class AttemptRecord:
    """One pass of plan -> execute -> validate; ``validation`` holds the test outcomes."""

    run_id: int
    attempt: int
    apply_status: str
    edits: str = ""
    plan_id: int | None = None
    apply_error: str | None = None
    validation: dict[str, Any] = field(default_factory=dict)
    test_output: str = ""
    resolved: bool = False
    created_at: str | None = None
    id: int | None = None
    # The patch reached for the grader (pytest internals, atexit, ...): never resolved.
    suspicious: bool = False
    suspicious_reason: str | None = None

    def __post_init__(self) -> None:
        if self.apply_status not in APPLY_STATUSES:
            raise ValueError(f"unknown apply status {self.apply_status!r}")
        if self.resolved and self.suspicious:
            raise ValueError("a suspicious attempt never counts as resolved")


# ---------------------------------------------------------------------------------- runs


def _row_to_run(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=row["id"], repo=row["repo"], repo_id=row["repo_id"], sha=row["sha"],
        provider=row["provider"], model=row["model"], adapter=row["adapter"],
        temperature=row["temperature"], sample=row["sample"], status=row["status"],
        attempts=row["attempts"], steps_to_green=row["steps_to_green"],
        failure_kind=row["failure_kind"], started_at=row["started_at"],
        finished_at=row["finished_at"], summary=json.loads(row["summary"]),
        isolation=row["isolation"],
    )


_RUN_SELECT = "SELECT runs.*, repos.name AS repo FROM runs JOIN repos ON repos.id = runs.repo_id"


def get_run(db: Database, run_id: int) -> RunRecord:
    row = db.one(f"{_RUN_SELECT} WHERE runs.id = ?", (run_id,))
    if row is None:
        raise NotFound(f"no run {run_id}", hint="list runs with 'cra harness runs NAME'")
    return _row_to_run(row)


def find_run(db: Database, key: RunKey) -> RunRecord | None:
    repo = get_repo(db, key.repo)
    row = db.one(
        f"{_RUN_SELECT} WHERE runs.repo_id = ? AND runs.sha = ? AND runs.model = ?"
        " AND runs.adapter = ? AND runs.temperature = ? AND runs.sample = ?",
        (repo.id, key.sha, key.model, key.adapter or "", float(key.temperature), key.sample),
    )
    return _row_to_run(row) if row is not None else None


def start_run(db: Database, key: RunKey, *, force: bool = False, since: str | None = None) -> RunRecord:
    """The run for ``key``: a finished one as it is (the caller skips it), else a fresh start.

    An existing ``running`` (interrupted), ``error`` or ``infra_error`` run, or with
    ``force`` any run, is reset to ``running`` with its attempts, plans, retrievals and LLM
    calls removed, in one transaction. ``since`` (an ISO time, when the forcing command
    began): a run started at or after it is this command's own work, or a concurrent
    forced command's, and is kept even under ``force``.

    The caller holds the key's lease (``appliance.db.leases``, kind ``run``): a
    ``running`` row is only reset when no live process is running it.
    """
    repo = get_repo(db, key.repo)
    if key.sample < 0:
        raise BadInput(f"a sample index cannot be negative ({key.sample})")
    now = _now()
    params = (repo.id, key.sha, key.model, key.adapter or "", float(key.temperature), key.sample)
    with db.write() as c:
        row = c.execute(
            "SELECT id, status, started_at FROM runs WHERE repo_id = ? AND sha = ? AND model = ?"
            " AND adapter = ? AND temperature = ? AND sample = ?", params,
        ).fetchone()
        redo = force and not (since is not None and row is not None and row["started_at"] >= since)
        if row is not None and row["status"] in FINISHED and not redo:
            run_id = int(row["id"])
        elif row is not None:
            run_id = int(row["id"])
            for table in ("attempts", "retrievals", "llm_calls"):
                c.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM plans WHERE run_id = ?", (run_id,))
            c.execute(
                "UPDATE runs SET status = 'running', provider = ?, attempts = 0,"
                " steps_to_green = NULL, failure_kind = NULL, started_at = ?, finished_at = NULL,"
                " summary = '{}' WHERE id = ?",
                (key.provider, now, run_id),
            )
        else:
            cur = c.execute(
                "INSERT INTO runs (repo_id, sha, model, adapter, temperature, sample, provider,"
                " status, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?)",
                (*params, key.provider, now),
            )
            run_id = int(cur.lastrowid or 0)
    return get_run(db, run_id)


def finish_run(
    db: Database, run_id: int, *, status: str, attempts: int,
    steps_to_green: int | None = None, failure_kind: str | None = None,
    summary: dict[str, Any] | None = None, isolation: str | None = None,
) -> RunRecord:
    """Close a run with its outcome; ``steps_to_green`` is the attempt that resolved it;
    ``isolation`` the sandbox level its candidates ran at (None keeps what is stored)."""
    if status not in RUN_STATUSES or status == RunStatus.RUNNING:
        raise ValueError(f"a run cannot finish as {status!r}")
    if status == RunStatus.RESOLVED and steps_to_green is None:
        steps_to_green = attempts
    with db.write() as c:
        cur = c.execute(
            "UPDATE runs SET status = ?, attempts = ?, steps_to_green = ?, failure_kind = ?,"
            " finished_at = ?, summary = ?, isolation = COALESCE(?, isolation) WHERE id = ?",
            (status, attempts, steps_to_green, failure_kind, _now(), _json(summary or {}),
             isolation, run_id),
        )
        if cur.rowcount == 0:
            raise NotFound(f"no run {run_id}")
    return get_run(db, run_id)


def list_runs(db: Database, repo: str, *, status: str | None = None) -> list[RunRecord]:
    """A repo's runs, oldest first."""
    r = get_repo(db, repo)
    sql = f"{_RUN_SELECT} WHERE runs.repo_id = ?"
    params: list[Any] = [r.id]
    if status is not None:
        sql += " AND runs.status = ?"
        params.append(status)
    return [_row_to_run(row) for row in db.query(sql + " ORDER BY runs.id", params)]


def summarize_runs(runs: list[RunRecord]) -> dict[str, Any]:
    """The end-of-run table: counts per status, resolved rate, mean attempts, failure kinds.

    The resolved rate is over the runs the model finished (resolved or failed): an
    ``infra_error`` (or ``error``) run says nothing about the model, so it is counted
    apart (``infra_errors``), never as a 0.
    """
    finished = [r for r in runs if r.status in (RunStatus.RESOLVED, RunStatus.FAILED)]
    resolved = [r for r in finished if r.status == RunStatus.RESOLVED]
    kinds: dict[str, int] = {}
    for r in finished:
        if r.status == RunStatus.FAILED:
            kinds[r.failure_kind or "unknown"] = kinds.get(r.failure_kind or "unknown", 0) + 1
    by_status = {s: sum(1 for r in runs if r.status == s) for s in RUN_STATUSES}
    return {
        "runs": len(runs),
        "by_status": {s: n for s, n in by_status.items() if n},
        "resolved_rate": round(len(resolved) / len(finished), 4) if finished else None,
        "mean_attempts": round(sum(r.attempts for r in finished) / len(finished), 3) if finished else None,
        "mean_steps_to_green": (round(sum(r.steps_to_green or 0 for r in resolved) / len(resolved), 3)
                                if resolved else None),
        "failure_kinds": dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
        "infra_errors": sum(1 for r in runs if r.status == RunStatus.INFRA_ERROR),
    }


# ------------------------------------------------------------------------- children


def log_call(db: Database, rec: CallRecord) -> int:
    row = {
        "run_id": rec.run_id, "repo_id": rec.repo_id, "sha": rec.sha, "stage": rec.stage,
        "attempt": rec.attempt, "try_no": rec.try_no, "provider": rec.provider, "model": rec.model,
        "adapter": rec.adapter or "", "temperature": rec.temperature, "seed": rec.seed, "n": rec.n,
        "max_tokens": rec.max_tokens, "messages": _json(rec.messages), "responses": _json(rec.responses),
        "finish_reasons": _json(rec.finish_reasons),
        "json_schema": _json(rec.json_schema) if rec.json_schema is not None else None,
        "prompt_tokens": rec.prompt_tokens, "completion_tokens": rec.completion_tokens,
        "latency_s": round(rec.latency_s, 4), "status": str(rec.status), "error": rec.error,
        "created_at": rec.created_at or _now(),
    }
    with db.write():
        return int(db.table("llm_calls").insert(row).last_pk)


def _row_to_call(row: sqlite3.Row) -> CallRecord:
    return CallRecord(
        id=row["id"], run_id=row["run_id"], repo_id=row["repo_id"], sha=row["sha"],
        stage=row["stage"], attempt=row["attempt"], try_no=row["try_no"],
        provider=row["provider"], model=row["model"], adapter=row["adapter"],
        temperature=row["temperature"], seed=row["seed"], n=row["n"], max_tokens=row["max_tokens"],
        messages=json.loads(row["messages"]), responses=json.loads(row["responses"]),
        finish_reasons=json.loads(row["finish_reasons"]),
        json_schema=json.loads(row["json_schema"]) if row["json_schema"] is not None else None,
        prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
        latency_s=row["latency_s"], status=row["status"], error=row["error"],
        created_at=row["created_at"],
    )


def list_calls(
    db: Database, *, run_id: int | None = None, stage: str | None = None,
    status: str | None = None, sha: str | None = None,
) -> list[CallRecord]:
    """LLM calls in the order they were made, filtered by whatever is given."""
    where, params = [], []
    for col, value in (("run_id", run_id), ("stage", stage), ("status", status), ("sha", sha)):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(value)
    sql = "SELECT * FROM llm_calls" + (f" WHERE {' AND '.join(where)}" if where else "")
    return [_row_to_call(r) for r in db.query(sql + " ORDER BY id", params)]


def log_retrieval(
    db: Database, run_id: int, *, attempt: int, query: str,
    files: list[dict[str, Any]], symbols: list[dict[str, Any]], seconds: float,
) -> int:
    row = {"run_id": run_id, "attempt": attempt, "query": query, "files": _json(files),
           "symbols": _json(symbols), "seconds": round(seconds, 4), "created_at": _now()}
    with db.write():
        return int(db.table("retrievals").insert(row).last_pk)


def save_attempt(db: Database, rec: AttemptRecord) -> int:
    """Write (or, on a re-save of the same attempt, replace) one attempt and count it on the run."""
    with db.write() as c:
        cur = c.execute(
            "INSERT INTO attempts (run_id, attempt, plan_id, edits, apply_status, apply_error,"
            " validation, test_output, resolved, suspicious, suspicious_reason, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, attempt) DO UPDATE SET plan_id = excluded.plan_id,"
            " edits = excluded.edits, apply_status = excluded.apply_status,"
            " apply_error = excluded.apply_error, validation = excluded.validation,"
            " test_output = excluded.test_output, resolved = excluded.resolved,"
            " suspicious = excluded.suspicious, suspicious_reason = excluded.suspicious_reason",
            (rec.run_id, rec.attempt, rec.plan_id, rec.edits, rec.apply_status, rec.apply_error,
             _json(rec.validation), cap_output(rec.test_output), int(rec.resolved),
             int(rec.suspicious), rec.suspicious_reason, _now()),
        )
        c.execute("UPDATE runs SET attempts = MAX(attempts, ?) WHERE id = ?", (rec.attempt, rec.run_id))
        row = c.execute("SELECT id FROM attempts WHERE run_id = ? AND attempt = ?",
                        (rec.run_id, rec.attempt)).fetchone()
        return int(row[0]) if row else int(cur.lastrowid or 0)


def _row_to_attempt(row: sqlite3.Row) -> AttemptRecord:
    return AttemptRecord(
        id=row["id"], run_id=row["run_id"], attempt=row["attempt"], plan_id=row["plan_id"],
        edits=row["edits"], apply_status=row["apply_status"], apply_error=row["apply_error"],
        validation=json.loads(row["validation"]), test_output=row["test_output"],
        resolved=bool(row["resolved"]), created_at=row["created_at"],
        suspicious=bool(row["suspicious"]), suspicious_reason=row["suspicious_reason"],
    )


# ---------------------------------------------------------------------------- trace


@dataclass
class RunTrace:
    """Everything one run did, each list in the order it happened."""

    run: RunRecord
    retrievals: list[RetrievalRecord]
    calls: list[CallRecord]
    plans: list[dict[str, Any]]
    attempts: list[AttemptRecord]

    def attempt_numbers(self) -> list[int]:
        seen = {r.attempt for r in self.retrievals} | {c.attempt for c in self.calls}
        seen |= {p["attempt"] for p in self.plans} | {a.attempt for a in self.attempts}
        return sorted(seen)

    def by_attempt(self) -> dict[int, dict[str, Any]]:
        """{attempt: {retrievals, calls, plans, attempt}}: what ``cra harness show`` prints."""
        return {
            n: {
                "retrievals": [r for r in self.retrievals if r.attempt == n],
                "calls": [c for c in self.calls if c.attempt == n],
                "plans": [p for p in self.plans if p["attempt"] == n],
                "attempt": next((a for a in self.attempts if a.attempt == n), None),
            }
            for n in self.attempt_numbers()
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RUN_VERSION,
            "run": asdict(self.run),
            "retrievals": [asdict(r) for r in self.retrievals],
            "calls": [asdict(c) for c in self.calls],
            "plans": self.plans,
            "attempts": [asdict(a) for a in self.attempts],
        }


def get_run_trace(db: Database, run_id: int) -> RunTrace:
    run = get_run(db, run_id)
    retrievals = [
        RetrievalRecord(id=r["id"], run_id=r["run_id"], attempt=r["attempt"], query=r["query"],
                        files=json.loads(r["files"]), symbols=json.loads(r["symbols"]),
                        seconds=r["seconds"], created_at=r["created_at"])
        for r in db.query("SELECT * FROM retrievals WHERE run_id = ? ORDER BY attempt, id", (run_id,))
    ]
    calls = [_row_to_call(r) for r in db.query(
        "SELECT * FROM llm_calls WHERE run_id = ? ORDER BY attempt, id", (run_id,))]
    plans = [
        {"id": r["id"], "attempt": r["attempt"], "kind": r["kind"], "source": r["source"],
         "plan": json.loads(r["plan"]), "score": r["score"], "created_at": r["created_at"]}
        for r in db.query("SELECT * FROM plans WHERE run_id = ? ORDER BY attempt, id", (run_id,))
    ]
    attempts = [_row_to_attempt(r) for r in db.query(
        "SELECT * FROM attempts WHERE run_id = ? ORDER BY attempt", (run_id,))]
    return RunTrace(run=run, retrievals=retrievals, calls=calls, plans=plans, attempts=attempts)
