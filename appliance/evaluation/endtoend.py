"""End-to-end metrics (the spec's Gate 2): the real pipeline on the held-out tasks, per side.

``run_side`` runs ``harness.pipeline.run_repo`` on the tasks, ``samples`` runs per task at
the evaluation's temperature; the pipeline's seeds depend only on the sample and the
attempt, so both sides get the same seeds. Runs are keyed by model and adapter label
(``runs``' UNIQUE key): a rerun skips finished runs, and a side whose adapters did not
change since an earlier evaluation reuses its runs.

``task_results`` turns a task's runs into the Gate 2 metrics (see ``metrics``); two failed
attempts are "the same error" when their signatures (``appliance.training.signatures``,
what ``cra train-plan`` groups failures by) are equal. Runs that
ended ``error`` or ``infra_error`` are the harness's or the infrastructure's failures, not
the model's: they are left out and counted, never scored as failures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from appliance.config import EvaluationConfig, Home
from appliance.db.core import Database
from appliance.db.evaluation import Result, TaskRef
from appliance.db.runs import RunKey, find_run, get_run_trace
from appliance.evaluation.stats import pass_at_k
from appliance.llm import LLMClient
from appliance.status import EvalMetric, RunStatus
from appliance.training.signatures import signature


def run_side(home: Home, db: Database, client: LLMClient, tasks: Sequence[TaskRef], *, adapter: str | None,
             config: EvaluationConfig, progress: Callable[[int, int], None] | None = None) -> str:
    """Run the pipeline on ``tasks`` (resumable); returns the adapter label its runs carry."""
    from harness.pipeline import run_repo

    by_repo: dict[str, list[str]] = {}
    for t in tasks:
        by_repo.setdefault(t.repo, []).append(t.sha)
    total = len(tasks) * config.samples
    done = 0
    label = adapter or ""
    for repo, shas in by_repo.items():
        offset = done

        def tick(n: int, _total: int, _run: Any, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + n, total)

        summary = run_repo(home, db, repo, client=client, temperatures=(config.temperature,), samples=config.samples,
                           max_attempts=config.max_attempts, adapter=adapter, shas=shas, progress=tick)
        label = str(summary.get("adapter", label))
        done += len(shas) * config.samples
    return label


def repeats(signatures: Sequence[str]) -> tuple[int, int]:
    """(failed repair attempts that repeat an earlier signature, failed repair attempts)."""
    seen: set[str] = set()
    repeated = 0
    for sig in signatures:
        if sig in seen:
            repeated += 1
        seen.add(sig)
    return repeated, max(0, len(signatures) - 1)


def task_results(db: Database, arm: str, task: TaskRef, *, model: str, adapter: str,
                 config: EvaluationConfig) -> list[Result]:
    """The Gate 2 metrics of one task on one side, from its stored runs."""
    runs = [find_run(db, RunKey(repo=task.repo, sha=task.sha, provider="", model=model, adapter=adapter,
                                temperature=config.temperature, sample=s)) for s in range(config.samples)]
    scored = [r for r in runs if r is not None and r.status in (RunStatus.RESOLVED, RunStatus.FAILED)]
    left_out = {r.id: r.status for r in runs if r is not None and r not in scored}
    detail: dict[str, Any] = {"run_ids": [r.id for r in scored]}
    if left_out:
        detail["left_out"] = left_out  # error / infra_error / running: not the model's failures
    names = (EvalMetric.RESOLVED_RATE, EvalMetric.PASS_AT_K, EvalMetric.STEPS_TO_GREEN, EvalMetric.REPEAT_ERROR_RATE)
    if not scored:
        why = {**detail, "unmeasured": "no finished run"}
        return [Result(arm, task.repo, task.sha, name, None, why) for name in names]
    n = len(scored)
    c = sum(1 for r in scored if r.status == RunStatus.RESOLVED)
    steps = [float(r.steps_to_green or r.attempts) if r.status == RunStatus.RESOLVED
             else float(config.max_attempts + 1) for r in scored]
    repeated = chances = 0
    for r in scored:
        attempts = get_run_trace(db, r.id).attempts
        sigs = [signature(a.validation, {"apply_status": a.apply_status, "apply_error": a.apply_error,
                                         "test_output": a.test_output}) for a in attempts if not a.resolved]
        got, could = repeats(sigs)
        repeated += got
        chances += could
    k = config.pass_k
    return [
        Result(arm, task.repo, task.sha, EvalMetric.RESOLVED_RATE, c / n, {**detail, "resolved": c, "runs": n}),
        Result(arm, task.repo, task.sha, EvalMetric.PASS_AT_K, pass_at_k(n, c, k) if n >= k else None,
               {**detail, "k": k, **({} if n >= k else {"unmeasured": f"{n} finished runs, fewer than k={k}"})}),
        Result(arm, task.repo, task.sha, EvalMetric.STEPS_TO_GREEN, sum(steps) / n, {**detail, "steps": steps}),
        Result(arm, task.repo, task.sha, EvalMetric.REPEAT_ERROR_RATE, repeated / chances if chances else None,
               {**detail, "repeated": repeated, "repairs_failed": chances,
                **({} if chances else {"unmeasured": "no failed repair attempt"})}),
    ]
