"""The agent pipeline: index -> retrieve -> plan -> execute -> validate -> repair, every step kept.

``run_repo`` runs every valid task of a repo once per (temperature, sample). A run is one
row of the ``runs`` table (``appliance.db.runs``) and everything it did hangs off it: the
retrieval (``log_retrieval``), each plan (``save_plan``, scored against the commit's ground
truth), each LLM call (the client logs them, bound to the run and attempt) and each
attempt's edits and test outcome (``save_attempt``). ``cra harness show RUN`` prints it.

With a model, an attempt is: plan (model, schema-constrained) -> execute (edits) ->
validate (``harness.candidate``). A failed attempt feeds the next one: the model gets its
plan, its edits and what failed, writes a revised plan, then fresh edits, up to
``max_attempts``. With no model (``client=None``) the retrieval planner writes one plan
per task and the run ends ``planned``: no execute stage.

Every ending is an outcome, never a crash: an ``LLMError`` finishes the run ``failed``
with ``llm_error``; garbage is ``bad_output``; an edit that does not apply is
``apply_error``; an edit to what grades it (tests, conftest, pytest configuration) is
refused as ``oracle_tamper``; failing tests ``tests_failed``; results whose sources
disagree ``grading_conflict``; passing tests from a patch that reaches for the grader
``suspicious`` (the attempt carries the flag and never counts resolved); a test run that
hangs ``timeout``. Model-written code runs only at the ``bwrap`` sandbox level unless
``allow_weak_sandbox`` (``--allow-weak-sandbox``); the run records the level it used.

Infrastructure failures are not model failures (as SWE-bench keeps them apart): a model
server that is down, answers 5xx or times out after every retry (``LLMUnavailable``), or
an environment that breaks mid-run, ends the run ``infra_error``, which no resolved rate
counts, no DPO pair uses and a rerun retries. A server that cannot be reached when the
command starts stops it at once (``LLMClient.preflight``), and so does one that stops
answering mid-way (checked after each infra_error run): the runs left are not burned as
failures. Trouble of the harness's own (a git or index error) ends a run ``error``, also
retried. Resumable: finished runs are skipped (``force`` redoes them), interrupted ones
restarted clean (``start_run``).

Several processes may run one repo at once (two terminals, or ``cra cycle`` beside ``cra
harness run``): each run key is claimed in the DB (``appliance.db.leases``, kind ``run``)
before its row is started, so a live process's ``running`` row is never taken for an
interrupted one and reset under it. A key another live process holds is left to it and
checked again later (it is then skipped as finished); one whose owner died is taken over.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.config import Home
from appliance.db.core import Database
from appliance.db.leases import (
    DEFAULT_LEASE_S,
    Claim,
    Heartbeat,
    Owner,
    claim,
    release,
    release_all,
)
from appliance.db.runs import (
    AttemptRecord,
    RunKey,
    RunRecord,
    RunTrace,
    finish_run,
    get_run,
    log_retrieval,
    save_attempt,
    start_run,
    summarize_runs,
)
from appliance.db.tasks import TaskRecord, list_tasks
from appliance.db.triples import save_plan, set_plan_score
from appliance.errors import BadInput, CraError, Failed, InfraError
from appliance.llm import BoundClient, LLMClient, LLMError
from appliance.status import ApplyStatus, LeaseKind, RunStatus
from harness.alignment import score_plan_kind
from harness.candidate import CandidateEnv, EvalOptions, evaluate, task_env
from harness.executor import execute
from harness.groundtruth import GroundTruth, ground_truth, truth_of_tests
from harness.index import SymbolIndex, index_path
from harness.planner import (
    first_plan_prompt,
    model_plan,
    plan_text,
    repair_messages,
    retrieval_plan,
    symbol_spans,
)
from harness.plans import KINDS, Plan
from harness.retrieve import K_FILES, K_SYMBOLS, Retrieval, retrieve
from harness.sandbox import require_full_isolation
from harness.testrun import is_test_file, patch_paths

RETRIEVAL_PROVIDER = "retrieval"
RETRIEVAL_MODEL = "retrieval-planner"
Progress = Callable[[int, int, "RunRecord | None"], None]
"""progress(done, total, run): once with (0, total, None), then after every run (skipped ones too)."""


@dataclass
class PipelineOptions:
    """The knobs ``cra harness run`` does not expose as flags, with defaults that suit it.

    ``extra_kinds``: plan kinds (``meta``, ``test``) the model is also asked for on a run's
    first attempt, beside the plan it follows; each is stored and scored against its own
    gold (the test plan against the commit's test patch) and never executed.
    """

    kind: str = "step"  # plan kind the model is asked for
    k_files: int = K_FILES
    k_symbols: int = K_SYMBOLS
    evaluation: EvalOptions = field(default_factory=EvalOptions)
    extra_kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for kind in (self.kind, *self.extra_kinds):
            if kind not in KINDS:
                raise BadInput(f"unknown plan kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
        if self.kind in self.extra_kinds:
            raise BadInput(f"plan kind {self.kind!r} is the one the run follows; extra kinds are the others")


@dataclass
class _Task:
    """Per-task state shared by its runs: ground truth, retrieval, environment."""

    task: TaskRecord
    truth: GroundTruth | None = None
    tests_truth: GroundTruth | None = None  # the test patch's: a test plan's gold
    retrieval: Retrieval | None = None
    env: CandidateEnv | None = None
    env_error: str | None = None


def _check(temperatures: Sequence[float], samples: int, max_attempts: int, limit: int | None) -> None:
    if not temperatures:
        raise BadInput("--temperatures needs at least one value", hint="e.g. --temperatures 0.2,0.8")
    for t in temperatures:
        if not isinstance(t, int | float) or t < 0 or t > 2:
            raise BadInput(f"temperature {t!r} is not a number between 0 and 2")
    if samples < 1:
        raise BadInput(f"--samples {samples} must be at least 1")
    if max_attempts < 1:
        raise BadInput(f"--max-attempts {max_attempts} must be at least 1")
    if limit is not None and limit < 1:
        raise BadInput(f"--limit {limit} must be at least 1")


def run_repo(
    home: Home, db: Database, name: str, *, client: LLMClient | None = None,
    temperatures: Sequence[float] = (0.2,), samples: int = 1, max_attempts: int = 3,
    limit: int | None = None, adapter: str | None = None, progress: Progress | None = None,
    options: PipelineOptions | None = None, workers: int = 1, force: bool = False,
    shas: Sequence[str] | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> dict[str, Any]:
    """Run the pipeline on the valid tasks of ``name``; returns the summary table as a dict.

    ``client=None``: the retrieval planner only (runs end ``planned``; one run per task,
    temperatures and samples do not apply). Ctrl-C stops between stages: the current run
    stays ``running`` and the next call restarts it clean. ``force`` runs finished runs
    again (their rows are reset); without it they are skipped.

    Raises ``InfraError`` (exit 1) before any run when the model server cannot be reached,
    and after the run that found it gone when it stops answering mid-way.

    ``workers`` > 1 runs that many runs at once, each worker a process of its own with its
    own database connection, index handle and worktree slot: for a server that batches
    concurrent requests (vLLM, llama-server with parallel slots), where one run at a time
    leaves the GPU mostly idle. The in-process llama_cpp provider serves one request at a
    time, so it refuses more than one worker.

    ``shas``: only these tasks (full commit shas), e.g. an evaluation's holdout.

    ``lease_s``: how long a claim on a run key lives without its heartbeat (seconds; the
    ``[harness] lease_s`` setting), after which another process may take the key over.
    """
    _check(temperatures, samples, max_attempts, limit)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise BadInput(f"--workers {workers!r} must be an integer of at least 1")
    if workers > 1 and client is not None and client.provider.name == "llama_cpp":
        raise BadInput("--workers above 1 needs a model server: the in-process llama_cpp provider "
                       "answers one request at a time",
                       hint="serve the model (llama-server -np K, or vLLM) and pass --endpoint URL")
    options = options or PipelineOptions()
    if client is not None:  # the model's code will run: only where the host is hidden
        require_full_isolation(options.evaluation.level, what="model-written code",
                               allow_weak=options.evaluation.allow_weak_sandbox)
        client.preflight()
    tasks = [t for t in list_tasks(db, name, status="valid") if t.parent]
    if shas is not None:
        wanted = set(shas)
        tasks = [t for t in tasks if t.sha in wanted]
    if limit is not None:
        tasks = tasks[:limit]
    if client is None:
        combos: list[tuple[float, int]] = [(0.0, 0)]
        provider, model = RETRIEVAL_PROVIDER, RETRIEVAL_MODEL
    else:
        combos = [(float(t), s) for t in temperatures for s in range(samples)]
        provider, model = client.provider.name, client.provider.model
    # Routed adapters (``--adapters active``) name their versions in the key: after a promote,
    # the same task runs again rather than being skipped as done.
    run_adapter = adapter or (client.adapter_label if client is not None else "")
    units = [(task, RunKey(repo=name, sha=task.sha, provider=provider, model=model, adapter=run_adapter,
                           temperature=temperature, sample=sample))
             for task in tasks for temperature, sample in combos]
    tick = progress or (lambda done, total, run: None)
    tick(0, len(units), None)
    seen: list[RunRecord] = []
    counts = {"ran": 0, "skipped": 0}

    def report(run: RunRecord, ran: bool) -> None:
        counts["ran" if ran else "skipped"] += 1
        seen.append(run)
        tick(len(seen), len(units), run)

    work = _Work(home=home, name=name, client=client, adapter=adapter, max_attempts=max_attempts,
                 options=options, force=force, lease_s=lease_s)
    if workers > 1 and client is not None and len(units) > 1:
        _run_in_processes(work, db, units, min(workers, len(units)), report)
    else:
        _run_units(work, db, units, report)
    ran, skipped = counts["ran"], counts["skipped"]
    summary = summarize_runs(seen)
    scores = [r.summary["plan_score"] for r in seen if isinstance(r.summary.get("plan_score"), int | float)]
    summary.update({
        "repo": name, "mode": "retrieval" if client is None else "model", "provider": provider,
        "model": model, "adapter": run_adapter, "tasks": len(tasks), "ran": ran, "skipped": skipped,
        "mean_plan_score": round(sum(scores) / len(scores), 4) if scores else None,
    })
    if summary["infra_errors"]:
        summary["note"] = (f"{summary['infra_errors']} run(s) hit an infrastructure error and are not "
                           "counted; run again to retry them")
    if client is None:
        summary["note"] = "no model configured: retrieval planner only, no execute stage"
    return summary


# ------------------------------------------------------------------------------ workers


@dataclass
class _Work:
    """What every run of one ``run_repo`` call shares."""

    home: Home
    name: str
    client: LLMClient | None
    adapter: str | None
    max_attempts: int
    options: PipelineOptions
    force: bool = False
    lease_s: float = DEFAULT_LEASE_S
    since: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))


Unit = tuple[TaskRecord, RunKey]


def unit_id(key: RunKey) -> str:
    """A run key as the text of its lease (``leases.sha``): what makes a ``runs`` row unique."""
    return f"{key.sha}|{key.model}|{key.adapter or ''}|{float(key.temperature)!r}|{key.sample}"


def _run_units(work: _Work, db: Database, units: Sequence[Unit], report: Callable[[RunRecord, bool], None]) -> None:
    """The runs of ``units`` one after the other; a task's runs share its retrieval and env.

    Each key is claimed before its row is started and released with its outcome; a key
    another live process holds goes to the back of the queue, tried again every ``poll``
    seconds until its owner has finished it (then skipped) or died (then taken over).
    """
    index_file = index_path(work.home, work.name)
    index_file.parent.mkdir(parents=True, exist_ok=True)
    state: _Task | None = None
    owner = Owner.this_process()  # per process: forked workers claim as themselves
    poll = max(0.5, min(5.0, work.lease_s / 4))
    todo: deque[tuple[float, Unit]] = deque((0.0, unit) for unit in units)
    with SymbolIndex(index_file) as index, Heartbeat(db, owner, work.lease_s):
        try:
            while todo:
                due, (task, key) = todo.popleft()
                if due > time.monotonic():
                    todo.append((due, (task, key)))
                    if all(d > time.monotonic() for d, _ in todo):  # only held keys left: wait
                        time.sleep(min(poll, max(0.0, min(d for d, _ in todo) - time.monotonic())))
                    continue
                unit = unit_id(key)
                if claim(db, LeaseKind.RUN, work.name, unit, owner, lease_s=work.lease_s,
                         redo=True) == Claim.HELD:
                    todo.append((time.monotonic() + poll, (task, key)))
                    continue
                try:
                    run = start_run(db, key, force=work.force, since=work.since)
                    if run.finished:
                        report(run, False)
                        continue
                    if state is None or state.task.sha != task.sha:  # units come task by task
                        state = _Task(task)
                    run = _run_one(work.home, db, work.name, work.home.repo_dir(work.name), index, state, run,
                                   client=work.client, adapter=work.adapter, max_attempts=work.max_attempts,
                                   options=work.options)
                finally:
                    release(db, LeaseKind.RUN, work.name, unit, owner)
                report(run, True)
                if run.status == RunStatus.INFRA_ERROR and work.client is not None:
                    _still_there(work.client, run)
        finally:
            release_all(db, owner)  # what we did not finish, others may take at once


def _still_there(client: LLMClient, run: RunRecord) -> None:
    """After an infra_error run: stop the whole command if the server is gone, rather than
    burn every run left as one more infra_error (raises ``InfraError``)."""
    try:
        client.preflight()
    except InfraError as exc:
        raise InfraError(f"{exc.message}; it stopped answering during run {run.id}",
                         hint="the finished runs are stored: run the same command again once it is back") from exc


def _run_in_processes(
    work: _Work, db: Database, units: Sequence[Unit], workers: int, report: Callable[[RunRecord, bool], None],
) -> None:
    """``_run_units`` in ``workers`` forked processes, unit i in worker i mod ``workers``.

    Each worker opens its own connection to the raw DB (SQLite connections do not survive
    a fork), logs its LLM calls through it, and checks candidates in its own worktree slot.
    The workers report each finished run's id; this process reads the rows back.
    """
    assert work.client is not None
    ctx = multiprocessing.get_context("fork")
    done_q = ctx.Queue()

    def worker(slot: int) -> None:
        try:
            own = Database(db.path)
            try:
                client = LLMClient(work.client.provider, config=work.client.config, log=own)
                options = replace(work.options, evaluation=replace(work.options.evaluation, slot=slot))
                mine = replace(work, client=client, options=options)
                _run_units(mine, own, units[slot::workers], lambda run, ran: done_q.put(("run", run.id, ran)))
            finally:
                own.close()
            done_q.put(("done", slot, None))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
            done_q.put(("error", slot, f"{type(exc).__name__}: {exc}"))

    procs = [ctx.Process(target=worker, args=(slot,), name=f"cra-run-{slot}", daemon=True)
             for slot in range(workers)]
    for proc in procs:
        proc.start()
    finished: set[int] = set()
    errors: list[str] = []
    try:
        while len(finished) < workers:
            try:
                kind, ident, extra = done_q.get(timeout=1.0)
            except queue.Empty:
                dead = [i for i, p in enumerate(procs) if not p.is_alive() and i not in finished]
                for slot in dead:  # killed (OOM, a signal) before it could say so
                    finished.add(slot)
                    errors.append(f"worker {slot} exited with code {procs[slot].exitcode}")
                continue
            if kind == "run":
                report(get_run(db, int(ident)), bool(extra))
            else:
                finished.add(int(ident))
                if kind == "error":
                    errors.append(f"worker {ident}: {extra}")
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
    if errors:
        raise Failed(f"{len(errors)} of {workers} run workers failed: {'; '.join(errors)[:500]}",
                     hint="the runs they finished are stored; rerun to continue the rest")


# ------------------------------------------------------------------------------ one run


def _prepare(repo_dir: Path, index: SymbolIndex, state: _Task, options: PipelineOptions) -> Retrieval:
    """Index the parent (incrementally), retrieve, and compute the ground truth, once per task."""
    task = state.task
    assert task.parent is not None
    if state.retrieval is None:
        if not index.has_commit(task.parent):
            index.index_commit(repo_dir, task.parent)
        state.retrieval = retrieve(index, task.parent, task.instruction, options.k_files, options.k_symbols,
                                   exclude=is_test_file)
        gold = set(patch_paths(task.gold_patch))
        try:
            state.truth = ground_truth(repo_dir, task.parent, task.sha, lambda p, g=gold: p not in g)
        except CraError:
            state.truth = None  # plans are stored unscored; ``cra harness score`` can retry
        if "test" in (options.kind, *options.extra_kinds):
            try:
                state.tests_truth = truth_of_tests(repo_dir, task.parent, task.sha, lambda p, g=gold: p not in g)
            except CraError:
                state.tests_truth = None
    return state.retrieval


def _store_plan(db: Database, name: str, state: _Task, plan: Plan, run: RunRecord, attempt: int) -> tuple[int, float | None]:
    pid = save_plan(db, name, state.task.sha, plan.to_dict(), run_id=run.id, attempt=attempt)
    truth = state.tests_truth if plan.kind == "test" else state.truth
    if truth is None:
        return pid, None
    detail = score_plan_kind(plan, truth).to_dict()
    set_plan_score(db, pid, detail)
    return pid, detail["score"]


def _extra_plans(m: _ModelRun, client: BoundClient, seed: int) -> dict[str, Any]:
    """The extra plan kinds of a run's first attempt, stored and scored: {kind: score or error}."""
    task = m.state.task
    assert task.parent is not None and m.state.retrieval is not None
    out: dict[str, Any] = {}
    for kind in m.options.extra_kinds:
        messages, files = first_plan_prompt(m.index, task.parent, task.instruction, m.state.retrieval, kind=kind)
        outcome = model_plan(client, messages, files, kind=kind, temperature=m.run.temperature, adapter=m.adapter,
                             seed=seed)
        if outcome.plan is None:
            out[kind] = {"error": outcome.error}
            continue
        _, score = _store_plan(m.db, m.name, m.state, outcome.plan, m.run, 1)
        out[kind] = {"score": score}
    return out


def _run_one(
    home: Home, db: Database, name: str, repo_dir: Path, index: SymbolIndex, state: _Task, run: RunRecord, *,
    client: LLMClient | None, adapter: str | None, max_attempts: int, options: PipelineOptions,
) -> RunRecord:
    started = time.monotonic()
    try:
        retrieval = _prepare(repo_dir, index, state, options)
        log_retrieval(db, run.id, attempt=1, query=retrieval.query,
                      files=[f.__dict__ for f in retrieval.files],
                      symbols=[s.__dict__ for s in retrieval.symbols], seconds=retrieval.seconds)
        if client is None:
            return _retrieval_run(db, name, index, state, run, retrieval, options)
        return _model_run(home, db, name, repo_dir, index, state, run, retrieval, client=client,
                          adapter=adapter, max_attempts=max_attempts, options=options, started=started)
    except CraError as exc:  # git, index or environment trouble: the harness's, retried by a rerun
        return finish_run(db, run.id, status=RunStatus.ERROR, attempts=get_run(db, run.id).attempts,
                          failure_kind="harness_error",
                          summary={"error": str(exc), "seconds": round(time.monotonic() - started, 3)})
    except Exception as exc:  # noqa: BLE001 - a bug of cra: kept with the run, the next run goes on
        return finish_run(db, run.id, status=RunStatus.ERROR, attempts=get_run(db, run.id).attempts,
                          failure_kind="internal_error",
                          summary={"error": f"{type(exc).__name__}: {exc}",
                                   "traceback": traceback.format_exc()[-4000:]})


def _retrieval_run(
    db: Database, name: str, index: SymbolIndex, state: _Task, run: RunRecord, retrieval: Retrieval,
    options: PipelineOptions,
) -> RunRecord:
    assert state.task.parent is not None
    plan = retrieval_plan(index, state.task.parent, retrieval, kind=options.kind)
    if plan is None:
        save_attempt(db, AttemptRecord(run_id=run.id, attempt=1, apply_status=ApplyStatus.NOT_RUN,
                                       validation={"kind": "no_plan"}))
        return finish_run(db, run.id, status=RunStatus.PLANNED, attempts=1, failure_kind="no_plan",
                          summary={"plan_id": None, "plan_score": None,
                                   "reason": "retrieval found no file for the instruction"})
    pid, score = _store_plan(db, name, state, plan, run, 1)
    save_attempt(db, AttemptRecord(run_id=run.id, attempt=1, plan_id=pid, apply_status=ApplyStatus.NOT_RUN,
                                   validation={"kind": "planned", "plan_score": score}))
    return finish_run(db, run.id, status=RunStatus.PLANNED, attempts=1,
                      summary={"plan_id": pid, "plan_score": score, "files": plan.files()})


@dataclass
class _ModelRun:
    """One model run in progress: what its stages share, and what each attempt leaves to the next."""

    home: Home
    db: Database
    name: str
    repo_dir: Path
    index: SymbolIndex
    state: _Task
    run: RunRecord
    client: LLMClient
    adapter: str | None
    options: PipelineOptions
    started: float
    messages: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    last_kind: str = "tests_failed"
    isolation: str | None = None  # the sandbox level its candidates ran at
    extra: dict[str, Any] = field(default_factory=dict)  # the extra plan kinds' scores

    def finish(self, status: str, attempts: int, *, failure_kind: str | None = None,
               error: str | None = None) -> RunRecord:
        steps = attempts if status == RunStatus.RESOLVED else None
        return finish_run(self.db, self.run.id, status=status, attempts=attempts, steps_to_green=steps,
                          failure_kind=failure_kind, isolation=self.isolation,
                          summary=_summary(self.history, self.scores, self.started, self.options.evaluation.slot,
                                           error=error, extra=self.extra))

    def retry(self, record: AttemptRecord, kind: str, answer: str, shown: str, feedback: str) -> None:
        """Store a failed attempt and give the model its answer and what went wrong."""
        self.last_kind = kind
        save_attempt(self.db, record)
        self.history.append(record.validation)
        self.messages = repair_messages(self.messages, answer, shown, feedback)


def _model_run(
    home: Home, db: Database, name: str, repo_dir: Path, index: SymbolIndex, state: _Task, run: RunRecord,
    retrieval: Retrieval, *, client: LLMClient, adapter: str | None, max_attempts: int,
    options: PipelineOptions, started: float,
) -> RunRecord:
    """Plan -> execute -> validate, repaired up to ``max_attempts`` times; every attempt stored."""
    task = state.task
    assert task.parent is not None
    first, files = first_plan_prompt(index, task.parent, task.instruction, retrieval, kind=options.kind)
    if not files:
        save_attempt(db, AttemptRecord(run_id=run.id, attempt=1, apply_status=ApplyStatus.NOT_RUN,
                                       validation={"kind": "no_plan"}))
        return finish_run(db, run.id, status=RunStatus.FAILED, attempts=1, failure_kind="no_plan",
                          summary={"reason": "the parent commit has no indexed source file"})
    m = _ModelRun(home, db, name, repo_dir, index, state, run, client, adapter, options, started,
                  messages=first, files=files)
    for attempt in range(1, max_attempts + 1):
        ended = _attempt(m, attempt)
        if ended is not None:
            return ended
    return m.finish(RunStatus.FAILED, max_attempts, failure_kind=m.last_kind)


def _attempt(m: _ModelRun, attempt: int) -> RunRecord | None:
    """One attempt; the finished run when it ends the run, None when a repair follows."""
    task, run = m.state.task, m.run
    assert task.parent is not None
    bound = m.client.for_run(run, attempt=attempt)
    seed = 1000 * run.sample + attempt
    record = AttemptRecord(run_id=run.id, attempt=attempt, apply_status=ApplyStatus.NOT_RUN)
    try:
        if attempt == 1 and m.options.extra_kinds:
            m.extra = _extra_plans(m, bound, seed)
        outcome = model_plan(bound, m.messages, m.files, kind=m.options.kind, temperature=run.temperature,
                             adapter=m.adapter, seed=seed)
        if outcome.plan is None:
            record.validation = {"kind": "bad_output", "stage": "plan", "error": outcome.error}
            record.test_output = f"the plan is not usable: {outcome.error}"
            m.retry(record, "bad_output", outcome.text or "(empty)", "",
                    f"Your answer was not a usable plan: {outcome.error}")
            return None
        plan = outcome.plan
        record.plan_id, score = _store_plan(m.db, m.name, m.state, plan, run, attempt)
        if score is not None:
            m.scores.append(score)
        result = execute(bound, task.instruction, plan, m.repo_dir, task.parent, temperature=run.temperature,
                         adapter=m.adapter, seed=seed, spans=symbol_spans(m.index, task.parent, plan))
    except LLMError as exc:
        # The server's failure (down, 5xx, timeouts after retries) is no model failure.
        infra = isinstance(exc, InfraError)
        record.validation = {"kind": RunStatus.INFRA_ERROR.value if infra else "llm_error", "stage": exc.stage,
                             "status": exc.status, "error": str(exc)}
        save_attempt(m.db, record)
        m.history.append(record.validation)
        if infra:
            return m.finish(RunStatus.INFRA_ERROR, attempt, failure_kind=exc.status, error=str(exc))
        return m.finish(RunStatus.FAILED, attempt, failure_kind="llm_error", error=str(exc))
    record.edits = result.rendered
    if result.status in ("bad_output", "no_edits"):
        record.apply_status, record.apply_error = ApplyStatus.NO_EDITS, result.error
        record.validation = {"kind": "bad_output", "stage": "execute", "error": result.error, "plan_score": score}
        record.test_output = result.text[-4000:]
        m.retry(record, "bad_output", plan_text(plan), result.text[:2000],
                f"The edits could not be read: {result.error}")
        return None
    if result.status == "apply_error":
        record.apply_status, record.apply_error = ApplyStatus.APPLY_ERROR, result.error
        record.validation = {"kind": "apply_error", "error": result.error, "plan_score": score}
        m.retry(record, "apply_error", plan_text(plan), result.rendered, f"The edits do not apply: {result.error}")
        return None
    return _validate_stage(m, attempt, record, plan, result, score)


def _validate_stage(m: _ModelRun, attempt: int, record: AttemptRecord, plan: Plan, result: Any,
                    score: float | None) -> RunRecord | None:
    """Check the applied edits in the task's environment (``harness.candidate.evaluate``)."""
    state, task = m.state, m.state.task
    if state.env is None and state.env_error is None:
        try:
            state.env = task_env(m.home, m.db, task)
        except CraError as exc:
            state.env_error = str(exc)
    # The environment is the infrastructure: when it is missing or breaks, that is no model failure.
    if state.env is None:
        record.apply_status = ApplyStatus.APPLIED
        record.validation = {"kind": "env_error", "error": state.env_error}
        save_attempt(m.db, record)
        return m.finish(RunStatus.INFRA_ERROR, attempt, failure_kind="env_error", error=state.env_error)
    ev = evaluate(m.home, task, result.edits, state.env, options=m.options.evaluation)
    if ev.kind == "env_error":
        record.apply_status = ApplyStatus.APPLIED
        record.validation = {"kind": "env_error", "error": ev.output}
        save_attempt(m.db, record)
        return m.finish(RunStatus.INFRA_ERROR, attempt, failure_kind="env_error", error=ev.output)
    record.apply_status = {"apply_error": ApplyStatus.APPLY_ERROR, "oracle_tamper": ApplyStatus.ORACLE_TAMPER}.get(
        ev.kind, ApplyStatus.APPLIED)
    record.apply_error = ev.apply_error
    record.validation = {
        "kind": ev.kind, "fail_to_pass": ev.fail_to_pass, "pass_to_pass": ev.pass_to_pass,
        "restored": ev.restored, "seconds": ev.seconds, "plan_score": score,
        "isolation": ev.isolation or None, "conflict": ev.conflict,
    }
    record.test_output = ev.output
    record.resolved = ev.resolved
    record.suspicious = bool(ev.suspicious)
    record.suspicious_reason = "; ".join(ev.suspicious) or None
    m.isolation = ev.isolation or m.isolation
    if ev.resolved:
        save_attempt(m.db, record)
        m.history.append({"kind": ev.kind})
        return m.finish(RunStatus.RESOLVED, attempt)
    m.retry(record, ev.kind, plan_text(plan), result.rendered, ev.output)
    return None


def _summary(history: list[dict[str, Any]], scores: list[float], started: float, slot: int, *,
             error: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attempt_kinds": [h.get("kind") for h in history],
        "slot": slot,  # the worktree slot its candidates were checked in
        "plan_score": scores[0] if scores else None,
        "best_plan_score": max(scores) if scores else None,
        "seconds": round(time.monotonic() - started, 3),
    }
    if error:
        out["error"] = error
    if extra:
        out["extra_plans"] = extra  # {kind: {"score": s} or {"error": why}}
    return out


# ------------------------------------------------------------------------------ reading runs


def trace_text(trace: RunTrace) -> str:
    """A run's full trace as plain text, attempt by attempt: what ``cra harness show RUN`` prints.

    Retrieval (top files with scores), each plan (with its alignment score), each LLM
    call (stage, status, tokens, latency), the edits and the test output of every attempt.
    """
    run = trace.run
    head = [
        (f"run {run.id}  {run.repo} {run.sha[:12]}  {run.provider} {run.model}"
         f"{' adapter ' + run.adapter if run.adapter else ''}  T={run.temperature} sample {run.sample}"),
        f"status {run.status}"
        + (f" ({run.failure_kind})" if run.failure_kind else "")
        + f"  attempts {run.attempts}"
        + (f"  green at {run.steps_to_green}" if run.steps_to_green else ""),
    ]
    if run.summary.get("error"):
        head.append(f"error: {run.summary['error']}")
    out = ["\n".join(head)]
    for n, parts in trace.by_attempt().items():
        lines = [f"=== attempt {n} ==="]
        for r in parts["retrievals"]:
            files = ", ".join(f"{f['path']} ({f['score']:.3g})" for f in r.files[:5]) or "(nothing)"
            lines.append(f"[retrieve] {r.seconds * 1000:.0f} ms: {files}")
        for p in parts["plans"]:
            score = "unscored" if p["score"] is None else f"score {p['score']:.3f}"
            lines.append(f"[plan] {p['source']} {p['kind']}, {score}")
            for s in p["plan"].get("steps", []):
                deps = f" after {s['depends_on']}" if s.get("depends_on") else ""
                syms = f" {', '.join(s['symbols'])}" if s.get("symbols") else ""
                lines.append(f"  {s['id']}. {s['action']} {s['file']}{syms}{deps}: {s.get('description', '')}")
        for c in parts["calls"]:
            tokens = f"{c.prompt_tokens or 0}+{c.completion_tokens or 0} tokens"
            lines.append(f"[llm] {c.stage} try {c.try_no}: {c.status}, {tokens}, {c.latency_s:.2f}s"
                         + (f": {c.error}" if c.error else ""))
        a = parts["attempt"]
        if a is not None:
            kind = a.validation.get("kind", a.apply_status)
            lines.append(f"[outcome] {kind}, apply {a.apply_status}" + (f": {a.apply_error}" if a.apply_error else ""))
            if a.edits:
                lines.append("[edits]\n" + a.edits.rstrip())
            if a.test_output:
                lines.append("[tests]\n" + a.test_output.rstrip())
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"
