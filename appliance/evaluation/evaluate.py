"""One evaluation, start to decision: what ``cra eval`` and ``cra cycle`` call.

In order, each step resumable:

1. **holdout**: the chronological holdout of the sides' training data, refused when it
   leaks or is too small (``holdout``), and the frozen regression set;
2. the evaluation's row, found again by ``params_hash`` when the same evaluation was
   stopped before (its stored results are skipped);
3. **stage metrics** (Gate 1): every probe of every task on both sides, the same seed on
   both; a probe whose slot uses the same adapter on both sides is asked once;
4. **end to end** (Gate 2): the pipeline on every task, per side (``endtoend``);
5. the **summary** with its paired intervals and the **gates**' decision (``gates``);
6. the **report** (``report``), then the row marked done with decision and report;
7. with ``apply``, the decision goes through the registry: a promote (candidate) or a
   rollback (a regression of the active version), in one transaction with the audit row
   naming the report and the evaluation's ``applied`` column.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import Home, Settings
from appliance.db import evaluation as sql
from appliance.db.core import Database
from appliance.db.corpus import get_repo
from appliance.db.evaluation import EvaluationRow, Result, TaskRef
from appliance.db.tasks import get_task
from appliance.errors import BadInput
from appliance.evaluation import endtoend, gates, report, stages
from appliance.evaluation.holdout import Holdout, select_holdout
from appliance.evaluation.metrics import METRICS, STAGE_METRICS
from appliance.evaluation.sides import Side
from appliance.llm import LLMClient
from appliance.status import EvalArm, EvalDecision, EvalKind
from appliance.training.logs import LogAnalysisAPI

PIPELINE_SLOTS = ("plan", "execute-code")
"""The slots whose adapters the pipeline's stages call (plan, execute): what end-to-end runs depend on."""
Progress = Callable[[str, int, int], None]
"""progress(step, done, total), as ``appliance.cli.base.progress_bar`` takes it."""


@dataclass
class Request:
    """What to evaluate: ``slot``'s version on the candidate side against the baseline side.

    ``kind`` "regression": the candidate side holds the active version and the baseline the
    one before it; its decision is keep or roll back.
    """

    slot: str
    candidate: Side
    baseline: Side
    kind: str = EvalKind.CANDIDATE
    cutoff_ts: int | None = None
    repos: tuple[str, ...] | None = None
    cycle: int | None = None  # the cycle it belongs to: how the learning curves label it

    def __post_init__(self) -> None:
        if self.candidate.key == self.baseline.key:
            raise BadInput(f"the candidate and the baseline are the same ({self.candidate.key}): nothing to compare",
                           hint="name another --baseline (active, base, previous or SLOT:vN)")


@dataclass
class Outcome:
    """A finished evaluation: its row (decision, summary, report folder), whether it resumed
    an interrupted one, and the registry action taken, if any."""

    evaluation: EvaluationRow
    verdict: gates.Verdict
    report: Path
    holdout: Holdout
    resumed: bool = False
    applied: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"evaluation": self.evaluation.to_dict(), "verdict": self.verdict.to_dict(),
                "report": str(self.report), "holdout": self.holdout.to_dict(), "resumed": self.resumed,
                "applied": self.applied, "undo": report.undo_command(self.evaluation)}


def _params(settings: Settings, client: LLMClient, request: Request) -> dict[str, Any]:
    c = settings.evaluation
    return {"model": client.describe(), "provider": client.provider.name, "temperature": c.temperature,
            "samples": c.samples, "pass_k": c.pass_k, "max_attempts": c.max_attempts, "scope_k": c.scope_k,
            "seed": c.seed, "bootstrap_resamples": c.bootstrap_resamples, "level": c.level,
            "end_to_end": c.end_to_end, "effect": c.effect, "primary": c.primary[request.slot],
            "max_loss": c.max_loss, "frozen_tolerance": c.frozen_tolerance,
            "candidate": request.candidate.to_dict(), "baseline": request.baseline.to_dict()}


def params_hash(request: Request, params: dict[str, Any], holdout: Holdout) -> str:
    blob = json.dumps({"kind": request.kind, "slot": request.slot, "cutoff": holdout.cutoff_ts, "params": params,
                       "holdout": [t.to_list() for t in sorted(holdout.tasks)],
                       "frozen": [t.to_list() for t in sorted(holdout.frozen)]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def run(home: Home, db: Database, settings: Settings, request: Request, *, client: LLMClient,
        client_for: Callable[[Side], LLMClient] | None = None, promote: bool = False,
        progress: Progress | None = None) -> Outcome:
    """Evaluate, decide, report, and act on the decision; see the module doc.

    A promote decision is applied through the registry with ``promote``; a rollback
    decision (a regression of the active version, ``[evaluation] rollback`` on) always is.

    ``client`` answers the stage probes (each call names its side's adapter); ``client_for``
    gives the client a side's pipeline runs use (default: ``client``, with the side's one
    adapter for every stage). Raises ``LeakError`` / ``HoldoutTooSmall`` before anything
    runs, ``stages.InfraFailure`` when the model server fails (rerun to resume).
    """
    config = settings.evaluation
    tick = progress or (lambda step, done, total: None)
    datasets = sorted(set(request.candidate.datasets) | set(request.baseline.datasets))
    holdout, new_frozen = select_holdout(db, config, datasets=datasets, cutoff_ts=request.cutoff_ts,
                                         repos=request.repos)
    params = _params(settings, client, request)
    row, resumed = sql.start_evaluation(
        db, kind=request.kind, slot=request.slot, candidate=_label(request.candidate, request.slot),
        baseline=_label(request.baseline, request.slot), candidate_version=request.candidate.version(request.slot),
        baseline_version=request.baseline.version(request.slot), cutoff_ts=holdout.cutoff_ts, params=params,
        params_hash=params_hash(request, params, holdout), holdout=holdout.tasks, frozen=holdout.frozen,
        datasets=datasets)
    if new_frozen:
        sql.set_frozen(db, holdout.frozen, chosen_by=row.id)
    tasks = holdout.all_tasks
    _stage_metrics(home, db, row, request, tasks, client=client, scope_k=config.scope_k, seed=config.seed,
                   temperature=config.temperature, tick=tick)
    if config.end_to_end:
        _end_to_end(home, db, row, request, tasks, client=client, client_for=client_for, settings=settings, tick=tick)
    return _decide(home, db, settings, row, request, holdout, resumed=resumed, promote=promote)


def _end_to_end(home: Home, db: Database, row: EvaluationRow, request: Request, tasks: list[TaskRef], *,
                client: LLMClient, client_for: Callable[[Side], LLMClient] | None, settings: Settings,
                tick: Progress) -> None:
    """The pipeline on every task, per side. Only the slots the pipeline calls count: two
    sides that differ elsewhere (a scope candidate) make the same runs, made once."""
    config = settings.evaluation
    sides = {EvalArm.CANDIDATE: request.candidate.only(PIPELINE_SLOTS),
             EvalArm.BASELINE: request.baseline.only(PIPELINE_SLOTS)}
    made: dict[str, tuple[str, str]] = {}  # side key -> (model, run label)
    for arm, side in sides.items():
        side_client = client_for(side) if client_for is not None else client
        if side.key not in made:
            adapter = None if client_for is not None else _pipeline_adapter(side, client.provider.name)
            label = endtoend.run_side(home, db, side_client, tasks, adapter=adapter, config=config,
                                      progress=lambda done, total, arm=arm: tick(f"runs {arm}", done, total))
            made[side.key] = (side_client.provider.model, label)
        model, label = made[side.key]
        shared = {"shared": "both sides make the same pipeline calls"} if sides[EvalArm.CANDIDATE].key == \
            sides[EvalArm.BASELINE].key else {}
        results = [Result(r.arm, r.repo, r.sha, r.metric, r.value, {**r.detail, **shared})
                   for t in tasks for r in endtoend.task_results(db, arm, t, model=model, adapter=label,
                                                                 config=config)]
        sql.save_results(db, row.id, results)


def _label(side: Side, slot: str) -> str:
    own = side.of(slot)
    others = [a.label for a in side.adapters if a.slot != slot]
    head = own.label if own else "base"
    return head + (f" (+{', '.join(others)})" if others else "")


def _pipeline_adapter(side: Side, provider: str) -> str | None:
    """The one adapter a side's pipeline runs use for every stage (without per-stage routing)."""
    if len(side.adapters) > 1:
        raise BadInput(f"side {side.name} uses {side.key}: the pipeline runs one adapter for every stage here",
                       hint="evaluate one slot's versions against the base, or serve the adapters and route them")
    return side.adapter_for(side.adapters[0].slot, provider) if side.adapters else None


def _stage_metrics(home: Home, db: Database, row: EvaluationRow, request: Request, tasks: list[TaskRef], *,
                   client: LLMClient, scope_k: int, seed: int, temperature: float, tick: Progress) -> None:
    """Every stage probe of every task on both sides; each task's results in one transaction."""
    from harness.index import SymbolIndex, index_path

    done = sql.measured(db, row.id)
    provider = client.provider.name
    wanted = [(arm, m.name) for m in STAGE_METRICS for arm in EvalArm]
    indexes: dict[str, SymbolIndex] = {}
    try:
        for i, ref in enumerate(tasks):
            tick("probes", i, len(tasks))
            todo = [(arm, name) for arm, name in wanted if (arm, ref.repo, ref.sha, name) not in done]
            if not todo:
                continue
            if ref.repo not in indexes:
                path = index_path(home, ref.repo)
                path.parent.mkdir(parents=True, exist_ok=True)
                indexes[ref.repo] = SymbolIndex(path)
            task = get_task(db, ref.repo, ref.sha)
            repo_id = get_repo(db, ref.repo).id
            assert repo_id is not None
            probes = stages.probes(home.repo_dir(ref.repo), indexes[ref.repo], task, scope_k=scope_k)
            results: list[Result] = []
            for name in dict.fromkeys(n for _, n in todo):
                probe = probes[name]
                slot = METRICS[name].slot
                s = stages.probe_seed(seed, ref.repo, ref.sha, name)
                adapters = {arm: side.adapter_for(slot, provider) for arm, side in
                            ((EvalArm.CANDIDATE, request.candidate), (EvalArm.BASELINE, request.baseline))}
                answers: dict[str | None, tuple[float | None, dict[str, Any]]] = {}
                for arm in EvalArm:
                    if (arm, name) not in todo:
                        continue
                    adapter = adapters[arm]
                    if adapter not in answers:  # the same adapter on both sides: one question
                        answers[adapter] = stages.ask(client, probe, repo_id=repo_id, sha=ref.sha, adapter=adapter,
                                                      seed=s, temperature=temperature)
                    value, detail = answers[adapter]
                    results.append(Result(arm, ref.repo, ref.sha, name, value, detail))
            sql.save_results(db, row.id, results)
        tick("probes", len(tasks), len(tasks))
    finally:
        for ix in indexes.values():
            ix.close()


def routed_clients(client: LLMClient, db: Database, home: Home) -> Callable[[Side], LLMClient]:
    """A client per side whose calls each use the side's adapter for their stage's slot
    (``appliance.llm.routing``). A side that is the active versions of the slots the pipeline
    calls is routed under the alias ``active``, as ``cra harness run --adapters active`` and
    the cycle's day route them, so its runs are those runs (a task the day ran is not run
    again)."""
    from appliance.evaluation.sides import active_side
    from appliance.llm.routing import AdapterRoutes, AdapterTarget

    def make(side: Side) -> LLMClient:
        targets = {a.slot: AdapterTarget(slot=a.slot, label=a.label, name=a.name, gguf=a.gguf,
                                         base_gguf=a.base_gguf) for a in side.adapters}
        active = active_side(db, home).only(PIPELINE_SLOTS)
        alias = "active" if side.only(PIPELINE_SLOTS).key == active.key else "eval"
        return LLMClient(client.provider, config=client.config, log=db, routes=AdapterRoutes(targets, alias=alias))

    return make


def history(db: Database, slot: str, current: EvaluationRow, *, cycle: int | None = None) -> list[tuple[EvaluationRow, str]]:
    """The slot's finished evaluations of candidates, oldest first, with ``current`` last,
    each labelled by its cycle when it has one (``cycle``: the current one's)."""
    cycles = {c.evaluation_id: c.number for c in sql.list_cycles(db, slot) if c.evaluation_id is not None}
    if cycle is not None:
        cycles[current.id] = cycle
    rows = [r for r in sql.list_evaluations(db, slot=slot, done_only=True)
            if r.kind == EvalKind.CANDIDATE and r.id != current.id]
    if current.kind == EvalKind.CANDIDATE:
        rows.append(current)
    return [(r, f"cycle {cycles[r.id]}" if r.id in cycles else f"eval {r.id}") for r in rows]


def _decide(home: Home, db: Database, settings: Settings, row: EvaluationRow, request: Request, holdout: Holdout, *,
            resumed: bool, promote: bool) -> Outcome:
    config = settings.evaluation
    results = sql.list_results(db, row.id)
    domain_of = LogAnalysisAPI(db).domain_of  # a repo's catalog category, as train-plan slices by
    summary = gates.summarize(results, row.holdout, row.frozen, primary=config.primary[row.slot], config=config,
                              domain_of=domain_of)
    verdict = gates.judge(summary, kind=row.kind, config=config)
    row.summary = summary
    past = history(db, row.slot, row, cycle=request.cycle)
    past_sources: dict[str, list[int]] = {}
    for r, _ in past:
        for k, v in report.sources(sql.list_results(db, r.id)).items():
            past_sources.setdefault(k, []).extend(v)
    folder = report.write_report(home, row, results, summary, reasons=verdict.reasons, decision=verdict.decision,
                                 holdout=holdout.to_dict(), history=past, history_sources=past_sources,
                                 domain_of=domain_of)
    rel = folder.relative_to(home.root).as_posix()
    row = sql.finish_evaluation(db, row.id, decision=verdict.decision, reasons=verdict.reasons,
                                summary={**summary, "checks": verdict.to_dict()["checks"],
                                         "holdout": holdout.to_dict()}, report=rel)
    applied = None
    if (promote and verdict.decision == EvalDecision.PROMOTE) or verdict.decision == EvalDecision.ROLLBACK:
        applied = apply_decision(home, db, row)
        row = sql.get_evaluation(db, row.id)
        # The report names what was done with it.
        folder = report.write_report(home, row, results, summary, reasons=verdict.reasons,
                                     decision=verdict.decision, holdout=holdout.to_dict(), history=past,
                                     history_sources=past_sources, domain_of=domain_of)
    return Outcome(row, verdict, folder, holdout, resumed=resumed, applied=applied, notes=holdout.notes)


def apply_decision(home: Home, db: Database, row: EvaluationRow) -> str:
    """Act on a finished evaluation's decision through the registry, in one transaction with
    its audit row (naming the report) and the evaluation's ``applied`` mark."""
    from appliance.adapters import registry

    if row.decision not in (EvalDecision.PROMOTE, EvalDecision.ROLLBACK):
        raise BadInput(f"evaluation {row.id} decided to {row.decision}: there is nothing to apply")
    if row.applied:
        raise BadInput(f"evaluation {row.id}'s decision was applied already ({row.applied})")
    reason = f"evaluation {row.id}: " + "; ".join(row.reasons)[:400]
    with db.write() as conn:
        if row.decision == EvalDecision.PROMOTE:
            registry.promote(db, home, row.slot, row.candidate_version, reason=reason, report=row.report)
        else:
            to = row.baseline_version if row.baseline_version is not None else registry.BASE
            registry.rollback(db, home, row.slot, to=to, reason=reason, report=row.report)
        sql.set_applied(conn, row.id, str(row.decision))
    return str(row.decision)
