"""Stage-level metrics (the spec's Gate 1): each stage asked on its own about a held-out commit.

For every task, ``probes`` builds the questions once, arm-independent: the scope prompt
(the repo's files), the precision prompt (the changed files' outlines), the plan stage's
first prompt in each kind (``harness.planner.first_plan_prompt``: retrieval at the parent,
the same prompt the pipeline sends), and the execute prompt for the gold plan with the
parent's code. Every prompt is the one the gold triples of ``harness.triples`` are built
with, so an adapter is tested on exactly what it was trained to answer, on commits after
its data's cutoff. ``ask`` sends one probe through the client (logged in ``llm_calls``
with the task's repo and commit) with the side's adapter for that stage's slot, under a
JSON schema where the answer is JSON, and scores the answer against the commit.

An answer that cannot be read scores 0: it is the model's failure. A request that fails
for the infrastructure's reasons (timeout, server error, refused connection after the
client's retries) is not a score at all: ``InfraFailure`` stops the evaluation, which a
rerun resumes; any other failed request leaves that metric unmeasured for the task.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.db.tasks import TaskRecord
from appliance.errors import CraError, Failed
from appliance.llm import LLMClient, LLMError
from appliance.llm.client import RETRYABLE
from appliance.status import EvalMetric
from harness.alignment import match_symbols, score_plan_kind
from harness.edits import read_texts
from harness.executor import judge_answer, plan_context
from harness.groundtruth import GroundTruth, gold_plan, ground_truth, truth_of_tests
from harness.index import SymbolIndex
from harness.planner import PLAN_MAX_TOKENS, first_plan_prompt
from harness.plans import Plan, PlanFormatError, files_outside_schema, plan_json_schema
from harness.retrieve import retrieve
from harness.testrun import is_test_file, patch_paths
from harness.triples import (
    execute_messages,
    precision_json_schema,
    precision_messages,
    precision_outlines,
    scope_json_schema,
    scope_listing,
    scope_messages,
)

Messages = list[dict[str, str]]
SCOPE_MAX_TOKENS = 256
PRECISION_MAX_TOKENS = 512
EXECUTE_MAX_TOKENS = 2048
MAX_LISTED_FILES = 1500  # as gold triples: a longer scope listing has no scope example
PLAN_METRICS = {"step": EvalMetric.PLAN_ALIGNMENT, "meta": EvalMetric.META_PLAN_ALIGNMENT,
                "test": EvalMetric.TEST_PLAN_ALIGNMENT}


class InfraFailure(Failed):
    """The model server or the network failed, not the model: nothing is scored."""


@dataclass
class Probe:
    """One stage question about one task. ``messages`` None: not measurable (``why_not``)."""

    metric: str
    stage: str
    messages: Messages | None = None
    schema: dict[str, Any] | None = None
    max_tokens: int = 512
    why_not: str | None = None
    judge: Callable[[str], tuple[float, dict[str, Any]]] = field(default=lambda text: (0.0, {}), repr=False)


def probe_seed(seed: int, repo: str, sha: str, metric: str) -> int:
    """The same seed for both sides of one question (and a different one per question)."""
    digest = hashlib.sha256(f"{seed}:{repo}:{sha}:{metric}".encode()).hexdigest()
    return int(digest[:8], 16) % 2**31


def probes(repo_dir: Path, index: SymbolIndex, task: TaskRecord, *, scope_k: int) -> dict[str, Probe]:
    """{metric: probe} for one task, every stage metric present (unmeasurable ones say why)."""
    assert task.parent is not None
    parent = task.parent
    gold = set(patch_paths(task.gold_patch))

    def is_test(p: str, g: set[str] = gold) -> bool:
        return p not in g

    truth = ground_truth(repo_dir, parent, task.sha, is_test)
    out: dict[str, Probe] = {}
    if not truth.files:
        why = "the commit changes no non-test Python file"
        for name, stage in ((EvalMetric.SCOPE_RECALL, "scope"), (EvalMetric.SYMBOL_RECALL, "precision"),
                            (EvalMetric.APPLY_RATE, "execute"), *((m, "plan") for m in PLAN_METRICS.values())):
            out[name] = Probe(name, stage, why_not=why)
        return out
    out[EvalMetric.SCOPE_RECALL] = _scope(repo_dir, task, truth, scope_k)
    out[EvalMetric.SYMBOL_RECALL] = _precision(repo_dir, task, truth)
    if not index.has_commit(parent):
        index.index_commit(repo_dir, parent)
    retrieval = retrieve(index, parent, task.instruction, exclude=is_test_file)
    tests = truth_of_tests(repo_dir, parent, task.sha, is_test)
    for kind, name in PLAN_METRICS.items():
        kind_truth = tests if kind == "test" else truth
        if not kind_truth.files:
            out[name] = Probe(name, "plan", why_not="the commit changes no test file")
            continue
        messages, files = first_plan_prompt(index, parent, task.instruction, retrieval, kind=kind)
        out[name] = Probe(name, "plan", messages, plan_json_schema(files, kind=kind, new_files=True),
                          PLAN_MAX_TOKENS, judge=_plan_judge(kind, files, kind_truth))
    out[EvalMetric.APPLY_RATE] = _execute(repo_dir, task, truth)
    return out


def _field(text: str, key: str, kind: type) -> Any:
    """``json.loads(text)[key]`` when it is a ``kind``; else a string saying what is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg})"
    if not isinstance(value, dict) or not isinstance(value.get(key), kind):
        return f"no {key!r} {kind.__name__} in the answer"
    return value[key]


def _scope(repo_dir: Path, task: TaskRecord, truth: GroundTruth, k: int) -> Probe:
    name = EvalMetric.SCOPE_RECALL
    listed = scope_listing(repo_dir, task.parent or "", truth)
    if len(listed) > MAX_LISTED_FILES:
        return Probe(name, "scope", why_not=f"{len(listed)} files to list, more than {MAX_LISTED_FILES}")
    if not listed:
        return Probe(name, "scope", why_not="the parent has no Python file to list")
    want = list(truth.files)

    def judge(text: str) -> tuple[float, dict[str, Any]]:
        files = _field(text, "files", list)
        if isinstance(files, str):
            return 0.0, {"error": f"not a scope answer: {files}"}
        top = list(dict.fromkeys(str(f).strip().removeprefix("./") for f in files))[:k]
        hit = [f for f in want if f in top]
        return len(hit) / len(want), {"answer": top, "gold": want, "hit": hit, "k": k}

    return Probe(name, "scope", scope_messages(task.instruction, listed), scope_json_schema(listed),
                 SCOPE_MAX_TOKENS, judge=judge)


def _precision(repo_dir: Path, task: TaskRecord, truth: GroundTruth) -> Probe:
    name = EvalMetric.SYMBOL_RECALL
    n_true = sum(len(set(v)) for v in truth.symbols.values())
    if n_true == 0:
        return Probe(name, "precision", why_not="the commit changes no function, method or class")
    outlines, why = precision_outlines(read_texts(repo_dir, task.parent or "", truth.files, strict=False), truth)
    if outlines is None:
        return Probe(name, "precision", why_not=why)

    def judge(text: str) -> tuple[float, dict[str, Any]]:
        named = _field(text, "symbols", dict)
        if isinstance(named, str):
            return 0.0, {"error": f"not a precision answer: {named}"}
        hits = []
        for path, true in truth.symbols.items():
            said = named.get(path) or []
            said = [s for s in said if isinstance(s, str)] if isinstance(said, list) else []
            hits += [f"{path}::{t}" for _, t in match_symbols(said, true)]
        return len(hits) / n_true, {"hit": hits, "gold": n_true}

    return Probe(name, "precision", precision_messages(task.instruction, outlines), precision_json_schema(truth.files),
                 PRECISION_MAX_TOKENS, judge=judge)


def _plan_judge(kind: str, files: list[str], truth: GroundTruth) -> Callable[[str], tuple[float, dict[str, Any]]]:
    def judge(text: str) -> tuple[float, dict[str, Any]]:
        try:
            plan = Plan.from_json(text, source="model")
        except PlanFormatError as exc:
            return 0.0, {"error": str(exc)}
        outside = files_outside_schema(plan, files)
        if outside:
            return 0.0, {"error": f"names files outside the schema: {', '.join(outside[:3])}"}
        if plan.kind != kind:
            plan = Plan(plan.steps, kind=kind, source="model")
        score = score_plan_kind(plan, truth)
        return score.score, {"files": score.files.matched, "missed": score.files.missed,
                             "symbols": score.symbols.matched, "order": score.order}

    return judge


def _execute(repo_dir: Path, task: TaskRecord, truth: GroundTruth) -> Probe:
    name = EvalMetric.APPLY_RATE
    plan = gold_plan(truth)
    messages = execute_messages(task.instruction, plan, plan_context(repo_dir, task.parent or "", plan))

    def judge(text: str) -> tuple[float, dict[str, Any]]:
        result = judge_answer(text, repo_dir, task.parent or "")
        return (1.0 if result.ok else 0.0), {"status": result.status, "error": result.error}

    return Probe(name, "execute", messages, None, EXECUTE_MAX_TOKENS, judge=judge)


def ask(client: LLMClient, probe: Probe, *, repo_id: int, sha: str, adapter: str | None, seed: int,
        temperature: float) -> tuple[float | None, dict[str, Any]]:
    """(value, detail) of one probe on one side; ``InfraFailure`` when the server failed."""
    if probe.messages is None:
        return None, {"unmeasured": probe.why_not}
    try:
        completion = client.bound(repo_id=repo_id, sha=sha).complete(
            probe.messages, stage=probe.stage, temperature=temperature, max_tokens=probe.max_tokens,
            json_schema=probe.schema, adapter=adapter, seed=seed)
    except LLMError as exc:
        if exc.status in RETRYABLE:
            raise InfraFailure(f"the {probe.stage} probe of {sha[:10]} got no answer: {exc}",
                               hint="the results measured so far are kept: run the same command again to "
                                    "resume once the model server answers") from exc
        return None, {"unmeasured": f"the request failed: {exc}", "call_ids": exc.call_ids}
    try:
        value, detail = probe.judge(completion.text)
    except CraError as exc:  # a git read of the parent failing is the harness's, not the model's
        return None, {"unmeasured": str(exc), "call_id": completion.call_id}
    return value, {**detail, "call_id": completion.call_id, "status": completion.status}
