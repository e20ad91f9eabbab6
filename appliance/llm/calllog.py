"""Where the client's calls go: the ``llm_calls`` table, or a list in memory.

Each request *try* is one record, whatever its outcome, so a timeout that succeeded on
the second try is two rows and the raw DB tells the whole story: the training data
curator can count failures per stage, the report can price a run in tokens and seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from appliance.db.core import Database
from appliance.db.runs import CallRecord, log_call

if TYPE_CHECKING:
    from appliance.llm.client import CallContext, Provider, ProviderResult, Request


class CallLog(Protocol):
    def record(self, rec: CallRecord) -> int: ...


class DbCallLog:
    """Writes every record to ``llm_calls`` in its own transaction (a crash loses nothing)."""

    def __init__(self, db: Database):
        self.db = db

    def record(self, rec: CallRecord) -> int:
        return log_call(self.db, rec)


class MemoryCallLog:
    """Keeps records in a list: for a client used outside any CRA_HOME."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def record(self, rec: CallRecord) -> int:
        rec.id = len(self.records) + 1
        self.records.append(rec)
        return rec.id


class NoCallLog:
    """Records nothing; only for a caller that said so explicitly (``log=None``)."""

    def record(self, rec: CallRecord) -> int:
        return 0


def as_call_log(log: Any) -> CallLog:
    if log is None:
        return NoCallLog()
    if isinstance(log, Database):
        return DbCallLog(log)
    if hasattr(log, "record"):
        return log
    raise TypeError(f"not a call log: {log!r}")


def call_record(
    ctx: CallContext, provider: Provider, request: Request, *, stage: str, try_no: int,
    latency_s: float, status: str, error: str | None = None, result: ProviderResult | None = None,
) -> CallRecord:
    """The row for one try: the request as sent, and the answer when there was one."""
    return CallRecord(
        stage=stage, provider=provider.name, model=provider.model, adapter=request.adapter or "",
        messages=request.messages, temperature=request.temperature, seed=request.seed,
        n=request.n, max_tokens=request.max_tokens, json_schema=request.json_schema,
        responses=list(result.texts) if result else [],
        finish_reasons=list(result.finish_reasons) if result else [],
        prompt_tokens=result.prompt_tokens if result else None,
        completion_tokens=result.completion_tokens if result else None,
        latency_s=latency_s, status=status, error=error, run_id=ctx.run_id,
        repo_id=ctx.repo_id, sha=ctx.sha, attempt=ctx.attempt, try_no=try_no,
    )
