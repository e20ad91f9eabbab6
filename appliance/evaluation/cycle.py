"""``cra cycle``: day -> sleep -> eval -> gate, N times, each cycle a row that resumes.

Seed 002's loop on cra's parts, one adapter slot at a time:

* **day**: the pipeline on every validated task not yet run with the active adapters
  (``harness.pipeline.run_repo`` skips finished runs), then the triples those runs and
  the commits teach (``harness.triples``);
* **sleep**: ``cra train-plan`` (which stage is weak, what data there is), ``cra
  curate-data`` for the slot, cut at the cycle's cutoff (the holdout's start), and ``cra
  train``: a candidate version, trained from the frozen base;
* **eval**: first, when tasks were held out that the active version was not judged on, a
  regression check of it against the version before it (or the base model, before the
  first): a regression rolls it back (seed 004 §6); then the candidate against the active version (``evaluate``), and
  the gates promote it or keep the active one.

Every stage's result is written to the cycle's row before the next stage starts (the
stage column says where a rerun resumes): a killed cycle reruns only what it had not
finished, and each stage is itself resumable (finished runs, stored plans and datasets
by content hash, training checkpoints, stored evaluation results). A sleep that builds
the very dataset an earlier cycle trained on has nothing new to learn: the cycle says so
and ends there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.config import Home, Settings
from appliance.db import evaluation as sql
from appliance.db.core import Database
from appliance.db.evaluation import CycleRow
from appliance.errors import BadInput, Interrupted
from appliance.evaluation import evaluate
from appliance.evaluation.holdout import day
from appliance.llm import LLMClient
from appliance.status import CycleStage, EvalDecision, EvalKind

Progress = Callable[[str, int, int], None]


@dataclass
class CycleOutcome:
    """What one call of ``run_cycles`` did: the cycle rows it finished, in order."""

    cycles: list[CycleRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"cycles": [c.to_dict() for c in self.cycles], "notes": self.notes}


def default_cutoff(db: Database, settings: Settings) -> int:
    """The holdout's start when none is given: the latest ``holdout_share`` of validated tasks
    is held out (by author date), the earlier ones train."""
    tasks = sql.valid_tasks(db)
    if len(tasks) < 2:
        raise BadInput("a cycle needs validated tasks to train on and to hold out",
                       hint="run cra harness validate first")
    share = settings.evaluation.holdout_share
    first_held = min(len(tasks) - 1, max(1, round(len(tasks) * (1 - share))))
    return tasks[first_held].author_ts


def run_cycles(home: Home, db: Database, settings: Settings, slot: str, *, cycles: int, client: LLMClient,
               cutoff_ts: int | None = None, client_for: Callable[..., LLMClient] | None = None,
               progress: Progress | None = None) -> CycleOutcome:
    """Run ``cycles`` cycles of ``slot`` (an unfinished one first), each to its end."""
    if cycles < 1:
        raise BadInput(f"--cycles {cycles} must be at least 1")
    tick = progress or (lambda step, done, total: None)
    out = CycleOutcome()
    for _ in range(cycles):
        row = sql.open_cycle(db, slot)
        if row is None:
            cutoff = cutoff_ts if cutoff_ts is not None else default_cutoff(db, settings)
            row = sql.new_cycle(db, slot, cutoff_ts=cutoff, params={"cutoff": day(cutoff)})
        elif cutoff_ts is not None and cutoff_ts != row.cutoff_ts:
            raise BadInput(f"cycle {row.number} of {slot} was started with cutoff {day(row.cutoff_ts)}",
                           hint="rerun without --cutoff (or with the same one) to finish it first")
        out.cycles.append(_one(home, db, settings, row, client=client, client_for=client_for, tick=tick))
    return out


def _one(home: Home, db: Database, settings: Settings, row: CycleRow, *, client: LLMClient,
         client_for: Callable[..., LLMClient] | None, tick: Progress) -> CycleRow:
    slot = row.slot
    if row.stage == CycleStage.DAY:
        from appliance.evaluation.sides import active_side

        day_client = client_for(active_side(db, home).only(evaluate.PIPELINE_SLOTS)) if client_for else client
        summary = run_day(home, db, settings, client=day_client, tick=tick)
        row = sql.update_cycle(db, row.id, stage=CycleStage.PLAN, day=summary)
    if row.stage == CycleStage.PLAN:
        from appliance.training.plan import make_plan

        tick("train-plan", 0, 1)
        plan = make_plan(db, settings.training)
        row = sql.update_cycle(db, row.id, stage=CycleStage.CURATE, plan_id=plan.id)
    if row.stage == CycleStage.CURATE:
        dataset_id, note = curate(home, db, settings, row)
        if dataset_id is None or _trained_on(db, slot, dataset_id):
            why = note or f"dataset {dataset_id} is the one an earlier version of {slot} was trained on: nothing new"
            return sql.update_cycle(db, row.id, stage=CycleStage.DONE, dataset_id=dataset_id, note=why,
                                    decision=EvalDecision.KEEP)
        row = sql.update_cycle(db, row.id, stage=CycleStage.TRAIN, dataset_id=dataset_id)
    if row.stage == CycleStage.TRAIN:
        assert row.dataset_id is not None
        version = train(home, db, settings, slot, row.dataset_id, tick=tick)
        row = sql.update_cycle(db, row.id, stage=CycleStage.EVAL, version=version)
    if row.stage == CycleStage.EVAL:
        assert row.version is not None
        done = _evaluated(db, row)
        if done is None:  # a finished evaluation is not run twice (a stop just after it finished)
            check_active(home, db, settings, slot, client=client, client_for=client_for, tick=tick)
            from appliance.evaluation.sides import resolve

            resolved = resolve(db, home, f"{slot}:v{row.version}", "active")
            request = evaluate.Request(slot, resolved.candidate, resolved.baseline, kind=resolved.kind,
                                       cutoff_ts=row.cutoff_ts, cycle=row.number)
            done = evaluate.run(home, db, settings, request, client=client, client_for=client_for, promote=True,
                                progress=tick).evaluation
        elif done.decision == EvalDecision.PROMOTE and not done.applied:
            evaluate.apply_decision(home, db, done)
        sql.update_cycle(db, row.id, evaluation_id=done.id)
        row = sql.update_cycle(db, row.id, stage=CycleStage.DONE, decision=done.decision)
    return row


def _evaluated(db: Database, row: CycleRow) -> sql.EvaluationRow | None:
    """The finished evaluation of this cycle's candidate, made since the cycle started."""
    for e in reversed(sql.list_evaluations(db, slot=row.slot, done_only=True)):
        if e.kind == EvalKind.CANDIDATE and e.candidate_version == row.version and e.created_at >= row.created_at:
            return e
    return None


def run_day(home: Home, db: Database, settings: Settings, *, client: LLMClient, tick: Progress) -> dict[str, Any]:
    """The pipeline on every repo's validated tasks not yet run with ``client``'s adapters, then
    the triples of every repo (gold and run-derived); the run counts and ids, per repo."""
    from appliance.db.corpus import list_repos
    from harness.pipeline import run_repo
    from harness.triples import build_from_runs, build_gold

    config = settings.evaluation
    summary: dict[str, Any] = {}
    for repo in [r["name"] for r in list_repos(db)]:
        ran = run_repo(home, db, repo, client=client, temperatures=(config.temperature,),
                       max_attempts=config.max_attempts,
                       progress=lambda done, total, run, repo=repo: tick(f"day {repo}", done, total))
        gold = build_gold(db, home, repo)
        runs = build_from_runs(db, repo)
        summary[repo] = {"runs": ran["runs"], "ran": ran["ran"], "resolved_rate": ran["resolved_rate"],
                         "by_status": ran["by_status"], "adapter": ran["adapter"], "gold_triples": gold.triples,
                         "run_triples": runs["added"]}
    return summary


def curate(home: Home, db: Database, settings: Settings, row: CycleRow) -> tuple[int | None, str | None]:
    """(the slot's dataset for its recipe's method, or None and why) from the cycle's plan."""
    from appliance.training.curate import curate_from_plan
    from appliance.training.recipe import slot_recipe

    method = slot_recipe(home, row.slot, serving=settings.serving).training.method
    try:
        results = curate_from_plan(db, home, settings.training, str(row.plan_id), slot=row.slot,
                                   cutoff_ts=row.cutoff_ts)
    except BadInput as exc:
        if "builds nothing" not in str(exc):
            raise
        return None, f"no {row.slot} training data before {day(row.cutoff_ts)}: {exc}"
    chosen = [r.dataset for r in results if r.dataset.kind == method]
    if not chosen:
        return None, f"the plan builds no {method.upper()} data for {row.slot}"
    return chosen[0].id, None


def _trained_on(db: Database, slot: str, dataset_id: int) -> bool:
    from appliance.adapters.registry import versions

    return any(v.dataset_id == dataset_id for v in versions(db, slot))


def train(home: Home, db: Database, settings: Settings, slot: str, dataset_id: int, *, tick: Progress) -> int:
    """``cra train SLOT --dataset ID`` (resuming its checkpoint when a stopped cycle left one);
    returns the new version's number."""
    from appliance.training.trainer import train as train_adapter

    def progress(p: Any) -> None:
        tick(f"train {slot}", int(getattr(p, "step", 0)), int(getattr(p, "total", 0)))

    try:
        try:
            result = train_adapter(home, db, slot, dataset_id, settings=settings, resume=True, progress=progress)
        except BadInput as exc:
            if "nothing to resume" not in str(exc):
                raise
            result = train_adapter(home, db, slot, dataset_id, settings=settings, progress=progress)
    except Interrupted as exc:  # the cycle resumes the checkpoint itself: name the cycle, not cra train
        raise Interrupted(exc.message, hint=f"continue with: cra cycle --slot {slot} (the same command)") from exc
    return result.version.version


def check_active(home: Home, db: Database, settings: Settings, slot: str, *, client: LLMClient,
                 client_for: Callable[..., LLMClient] | None, tick: Progress) -> evaluate.Outcome | None:
    """A regression check of the active version against the one before it (the base model
    before the first), when tasks from after its data's cutoff exist that no evaluation of
    it has seen: new commits validated since. A regression rolls it back."""
    from appliance.adapters.registry import current
    from appliance.evaluation.sides import resolve

    active = current(db, slot, "active")
    if active is None or active.dataset_id is None:
        return None
    cutoff = sql.dataset_cutoffs(db, [active.dataset_id])[active.dataset_id]
    seen = {k for r in sql.list_evaluations(db, slot=slot, done_only=True) if r.candidate_version == active.version
            for k in r.holdout}
    if all(t.key in seen for t in sql.valid_tasks(db, since_ts=cutoff)):
        return None
    resolved = resolve(db, home, f"{slot}:active", "previous")
    request = evaluate.Request(slot, resolved.candidate, resolved.baseline, kind=EvalKind.REGRESSION)
    return evaluate.run(home, db, settings, request, client=client, client_for=client_for, progress=tick)
