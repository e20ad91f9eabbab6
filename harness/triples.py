"""Training data from commits and runs: gold SFT, run SFT, DPO pairs, and the JSONL export.

The commit is the teacher. With no model at all, every task already yields four
examples (``gold_examples``):

* **scope**: instruction + the repo's Python files -> the files the commit changed;
* **precision**: instruction + those files with their symbols -> the symbols it changed;
* **plan**: the plan stage's own first prompt (instruction + the outlines of the files
  retrieval ranks highest, ``harness.planner.first_plan_prompt``) -> the gold plan, in the
  JSON the plan schema constrains a model to (only with the repo's symbol index);
* **execute**: instruction + context (the changed files' text at the parent; retrieval
  replaces it later) + the gold plan -> the commit's change as search/replace blocks,
  the very format the Execute stage writes (``harness.edits``).

Runs add more once the pipeline exists (``run_sft``, ``run_dpo``): the prompt and answer
of every attempt that resolved its task, and preference pairs, a resolved answer over a
failed one for the same prompt, or for plans the better-aligned plan when the alignment
scores differ by at least a margin. ``RunRecord`` is the minimal shape those functions
need; the runs table will map onto it.

The prompt builders here are the ones the pipeline's stages must use too, so training
and inference see the same text. ``export`` writes what trl trains on: SFT as
``messages`` (or ``prompt``/``completion``), DPO as ``prompt``/``chosen``/``rejected``,
one JSONL file per stage and kind, deterministic, deduplicated by content hash.

This module also recomputes stored plans' alignment scores (``score_stored_plans``):
both jobs turn the DB and a repo's history into stored, derived records.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.atomic import write_atomic
from appliance.config import Home
from appliance.db.core import Database
from appliance.db.corpus import get_commits, list_repos
from appliance.db.tasks import TaskRecord, list_tasks
from appliance.db.triples import (
    TRIPLE_KINDS,
    TRIPLE_STAGES,
    Messages,
    TripleRecord,
    list_plans,
    list_triples,
    save_plan,
    save_triples,
    set_plan_score,
    triple_counts,
)
from appliance.errors import BadInput, CraError, NotFound
from appliance.records import CommitRecord
from appliance.status import RunStatus
from harness import pysource
from harness.alignment import DEFAULT_WEIGHTS, Weights, score_plan
from harness.edits import EditError, diff_hunks, gold_edits, read_texts, render_edits
from harness.git import git
from harness.groundtruth import GroundTruth, gold_plan, ground_truth, is_python, truth_of_tests
from harness.index import SymbolIndex, index_path
from harness.planner import first_plan_prompt, plan_text
from harness.plans import KINDS, Plan, PlanFormatError, files_outside_schema
from harness.retrieve import retrieve
from harness.testrun import is_test_file, patch_paths

EXPORT_VERSION = 1
SFT_FORMATS = ("messages", "prompt_completion")

# --------------------------------------------------------------------------- prompts

SCOPE_SYSTEM = (
    "You are the scope stage of a code agent. You get a task and the Python files of a "
    "repository. Answer with one JSON object {\"files\": [...]}: the non-test files that must "
    "change (new files included), each file after the files it imports."
)
PRECISION_SYSTEM = (
    "You are the precision stage of a code agent. You get a task and the files to change, "
    "with the functions, methods and classes each defines now. Answer with one JSON object "
    "{\"symbols\": {\"path\": [\"Class.method\", \"function\", ...]}}: the symbols that must "
    "change or be added, by qualified name."
)
EXECUTE_SYSTEM = (
    "You are the execute stage of a code agent. You get a task, a plan and the code. Make "
    "the change with search/replace blocks and nothing else. Each block is the file's path "
    "on one line, then\n<<<<<<< SEARCH\nthe exact lines to replace, copied from the file\n"
    "=======\nthe new lines\n>>>>>>> REPLACE\nSEARCH must match one place in the file; "
    "include enough lines to make it unique. An empty SEARCH creates a new file. To delete "
    "a file write its path, then <<<<<<< DELETE and >>>>>>> DELETE on two lines. Write "
    "whole lines, never fragments, and no code outside blocks."
)


def _fence(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return fence


def scope_messages(instruction: str, repo_files: Sequence[str]) -> Messages:
    listing = "\n".join(repo_files)
    return [
        {"role": "system", "content": SCOPE_SYSTEM},
        {"role": "user", "content": f"Task:\n{instruction.strip()}\n\nRepository files:\n{listing}"},
    ]


def precision_messages(instruction: str, outlines: dict[str, list[str] | None]) -> Messages:
    """``outlines``: {file: ["def f(x)", "class C", ...] or None for a file to create}."""
    parts = []
    for path, outline in outlines.items():
        if outline is None:
            parts.append(f"{path} (new file)")
        elif not outline:
            parts.append(f"{path} (no functions or classes)")
        else:
            parts.append(path + "\n" + "\n".join(f"  {line}" for line in outline))
    body = "\n\n".join(parts)
    return [
        {"role": "system", "content": PRECISION_SYSTEM},
        {"role": "user", "content": f"Task:\n{instruction.strip()}\n\nFiles to change:\n{body}"},
    ]


def execute_messages(instruction: str, plan: Plan, context: Sequence[tuple[str, str]]) -> Messages:
    """``context``: (header, code) pairs, e.g. ("pkg/mod.py", text) or an excerpt's header."""
    blocks = []
    for header, code in context:
        fence = _fence(code)
        blocks.append(f"{header}\n{fence}python\n{code.rstrip(chr(10))}\n{fence}")
    plan_text = json.dumps(plan.model_dict(), indent=1, ensure_ascii=False)
    code = "\n\n".join(blocks) if blocks else "(no existing code: every file is new)"
    return [
        {"role": "system", "content": EXECUTE_SYSTEM},
        {"role": "user", "content": f"Task:\n{instruction.strip()}\n\nPlan:\n{plan_text}\n\nCode:\n{code}"},
    ]


def scope_listing(repo_dir: Path | str, parent: str, truth: GroundTruth) -> list[str]:
    """The files a scope prompt lists: the parent's non-test Python files (and any changed
    file the parent lacks but the commit does not add, e.g. a rename's source)."""
    return sorted({p for p in _python_files(repo_dir, parent) if not is_test_file(p)}
                  | (set(truth.files) - set(truth.added)))


def precision_outlines(
    old: dict[str, str | None], truth: GroundTruth,
) -> tuple[dict[str, list[str] | None] | None, str | None]:
    """(the precision prompt's outlines of the changed files, None) or (None, why there is
    no precision example): ``old`` holds the files' text at the parent (None: a new file)."""
    outlines: dict[str, list[str] | None] = {}
    unreadable = []
    for path in truth.files:
        text = old.get(path)
        if text is None:
            outlines[path] = None
            continue
        try:
            outlines[path] = outline(text)
        except SyntaxError:
            unreadable.append(path)
    if unreadable:
        return None, f"not valid Python at the parent: {', '.join(unreadable)}"
    if truth.unparsed:
        return None, f"not valid Python at the commit: {', '.join(truth.unparsed)}"
    return outlines, None


def scope_json_schema(files: Sequence[str], *, max_files: int = 12) -> dict[str, Any]:
    """The scope answer's schema: ``{"files": [...]}``, each one of the listed files.

    Existing files only: a constrained model given a free path pattern invents paths
    instead of choosing, so a file the commit adds is a miss for the scope stage (the plan
    stage may still create it)."""
    if not files:
        raise BadInput("a scope schema needs at least one file to list")
    listed = {"type": "string", "enum": sorted(dict.fromkeys(files))}
    return {"title": "scope", "type": "object",
            "properties": {"files": {"type": "array", "items": listed, "minItems": 1, "maxItems": max_files}},
            "required": ["files"], "additionalProperties": False}


def precision_json_schema(files: Sequence[str], *, max_symbols: int = 16) -> dict[str, Any]:
    """The precision answer's schema: ``{"symbols": {file: [qualified name, ...]}}`` over the
    files the prompt lists, every one present."""
    names = list(dict.fromkeys(files))
    per_file = {"type": "array", "items": {"type": "string"}, "maxItems": max_symbols}
    return {"title": "precision", "type": "object",
            "properties": {"symbols": {"type": "object", "properties": {f: per_file for f in names},
                                       "required": names, "additionalProperties": False}},
            "required": ["symbols"], "additionalProperties": False}


def assistant(content: str) -> Messages:
    return [{"role": "assistant", "content": content}]


def outline(text: str) -> list[str]:
    """A file's symbols as the precision prompt lists them: "Parser.parse: def parse(self, s)"."""
    return [f"{s.qualname}: {s.signature}" for s in pysource.parse_symbols(text)]


# --------------------------------------------------------------------------- gold examples


@dataclass
class GoldOptions:
    """Limits of gold derivation; a limit that is hit skips that example and says why
    (truncating instead would teach answers the prompt does not support)."""

    context_lines: int = 2  # around each gold edit's hunk
    max_listed_files: int = 1500  # scope prompt: more files than this skips scope
    max_context_chars: int = 60_000  # execute prompt: whole files up to this, then excerpts
    excerpt_lines: int = 30  # lines kept around each hunk in an excerpt
    # Plan kinds with a gold plan triple each: "step" (what the executor follows), "meta"
    # (the approach), "test" (the tests to add or change, from the commit's test patch).
    plan_kinds: tuple[str, ...] = ("step",)

    def __post_init__(self) -> None:
        unknown = [k for k in self.plan_kinds if k not in KINDS]
        if unknown:
            raise BadInput(f"unknown plan kind {unknown[0]!r}", hint=f"use {', '.join(KINDS)}")


@dataclass
class GoldExamples:
    """What one commit teaches: its ground truth, gold plan, triples, and what was skipped."""

    truth: GroundTruth
    plan: Plan
    triples: list[TripleRecord] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # stage -> why


def _python_files(repo_dir: Path | str, rev: str) -> list[str]:
    out = git(repo_dir, "ls-tree", "-r", "--name-only", "-z", rev)
    return sorted(p for p in out.split("\0") if p and is_python(p))


def _context(
    repo_dir: Path | str, parent: str, sha: str, files: list[str], old: dict[str, str | None],
    options: GoldOptions,
) -> list[tuple[str, str]] | None:
    """Whole files when they fit, else excerpts around the hunks; None when even those do not."""
    whole = [(p, t) for p in files if (t := old.get(p)) is not None]
    if sum(len(t) for _, t in whole) <= options.max_context_chars:
        return whole
    excerpts: list[tuple[str, str]] = []
    for path, text in whole:
        lines = text.split("\n")
        spans: list[list[int]] = []
        for h in diff_hunks(repo_dir, parent, sha, path):
            lo = max(0, h.old_start - options.excerpt_lines)
            hi = min(len(lines), h.old_end + options.excerpt_lines)
            if spans and lo <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], hi)
            else:
                spans.append([lo, hi])
        for lo, hi in spans:
            excerpts.append((f"{path} (lines {lo + 1}-{hi} of {len(lines)})", "\n".join(lines[lo:hi])))
    if sum(len(c) for _, c in excerpts) > options.max_context_chars:
        return None
    return excerpts


def gold_examples(
    repo_dir: Path | str,
    *,
    repo: str,
    sha: str,
    parent: str,
    instruction: str,
    author_ts: int,
    test_paths_rule: Callable[[str], bool] = is_test_file,
    options: GoldOptions | None = None,
    index: SymbolIndex | None = None,
) -> GoldExamples:
    """The scope, precision, plan and execute SFT triples one commit yields, with no model.

    ``index`` is the repo's symbol index (``harness.index``); without it there is no plan
    triple, whose prompt needs retrieval at the parent."""
    options = options or GoldOptions()
    truth = ground_truth(repo_dir, parent, sha, test_paths_rule)
    plan = gold_plan(truth)
    out = GoldExamples(truth=truth, plan=plan)
    if not truth.files:
        stages = ("scope", "precision", "plan", "execute") if index else ("scope", "precision", "execute")
        out.skipped = {s: "the commit changes no non-test Python file" for s in stages}
        return out

    def triple(stage: str, prompt: Messages, answer: str) -> TripleRecord:
        return TripleRecord(kind="sft", stage=stage, repo=repo, sha=sha, author_ts=author_ts, prompt=prompt,
                            completion=assistant(answer), origin="gold", meta={"parent": parent})

    listed = scope_listing(repo_dir, parent, truth)
    if len(listed) > options.max_listed_files:
        out.skipped["scope"] = f"{len(listed)} files to list, more than max_listed_files={options.max_listed_files}"
    else:
        answer = json.dumps({"files": truth.files}, ensure_ascii=False)
        out.triples.append(triple("scope", scope_messages(instruction, listed), answer))

    old = read_texts(repo_dir, parent, truth.files, strict=False)
    outlines, why = precision_outlines(old, truth)
    if outlines is None:
        out.skipped["precision"] = why or ""
    else:
        answer = json.dumps({"symbols": {p: truth.symbols.get(p, []) for p in truth.files}}, ensure_ascii=False)
        out.triples.append(triple("precision", precision_messages(instruction, outlines), answer))

    if index is not None:
        for kind in options.plan_kinds:
            stage = "plan" if kind == "step" else f"plan:{kind}"
            if kind == "step":
                kind_plan: Plan | None = plan
            elif kind == "meta":
                kind_plan = gold_plan(truth, kind="meta")
            else:
                tests = truth_of_tests(repo_dir, parent, sha, test_paths_rule)
                kind_plan = gold_plan(tests, kind="test") if tests.files else None
            if kind_plan is None:
                out.skipped[stage] = "the commit changes no test file"
                continue
            why = _plan_triple(index, repo_dir, parent, instruction, kind_plan, out, triple)
            if why:
                out.skipped[stage] = why

    try:
        edits = gold_edits(repo_dir, parent, sha, truth.files, context=options.context_lines)
    except EditError as exc:
        out.skipped["execute"] = f"no exact gold edits: {exc}"
        return out
    context = _context(repo_dir, parent, sha, truth.files, old, options)
    if context is None:
        out.skipped["execute"] = f"context over max_context_chars={options.max_context_chars} even as excerpts"
        return out
    out.triples.append(triple("execute", execute_messages(instruction, plan, context), render_edits(edits)))
    return out


def _plan_triple(
    index: SymbolIndex, repo_dir: Path | str, parent: str, instruction: str, plan: Plan,
    out: GoldExamples, triple: Callable[[str, Messages, str], TripleRecord],
) -> str | None:
    """Add the gold plan triple to ``out``; or say why this commit has none."""
    if not index.has_commit(parent):
        index.index_commit(repo_dir, parent)
    retrieval = retrieve(index, parent, instruction, exclude=is_test_file)
    messages, files = first_plan_prompt(index, parent, instruction, retrieval, kind=plan.kind)
    outside = files_outside_schema(plan, files)
    if outside:
        # A constrained model could never write this plan (a file beyond the schema's list,
        # or a new file by a path the schema's pattern refuses): training on it would teach
        # an answer it cannot give.
        return f"the gold plan names files the plan schema does not allow: {', '.join(outside[:3])}"
    out.triples.append(triple("plan", messages, plan_text(plan)))
    return None


@dataclass
class BuildReport:
    """What ``build_gold`` did for one repo."""

    repo: str
    tasks: int = 0
    triples: int = 0  # new rows
    duplicates: int = 0  # examples already stored
    plans: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # "stage: reason" -> count
    errors: list[dict[str, str]] = field(default_factory=list)  # commits that failed whole

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "tasks": self.tasks, "triples": self.triples, "duplicates": self.duplicates,
                "plans": self.plans, "skipped": self.skipped, "errors": self.errors}


def build_gold(
    db: Database, home: Home, name: str, *, statuses: Iterable[str] = ("valid",),
    options: GoldOptions | None = None,
) -> BuildReport:
    """Gold triples and gold plans (scored) for a repo's tasks, stored; safe to rerun.

    The task's own gold patch decides which files are non-test, so the triples agree
    with what validation ran. One transaction per task.
    """
    wanted = set(statuses)
    repo_dir = home.repo_dir(name)
    if not repo_dir.exists():
        raise NotFound(f"no clone of '{name}' at {repo_dir}", hint="import it with 'cra corpus import' or 'cra corpus add'")
    commits = {c.sha: c for c in get_commits(db, name)}
    report = BuildReport(repo=name)
    index_file = index_path(home, name)
    index_file.parent.mkdir(parents=True, exist_ok=True)
    with SymbolIndex(index_file) as index:
        for task in list_tasks(db, name):
            if task.status in wanted and task.parent is not None:
                _build_one(db, repo_dir, name, task, commits.get(task.sha), index, options, report)
    return report


def _build_one(
    db: Database, repo_dir: Path, name: str, task: TaskRecord, commit: CommitRecord | None,
    index: SymbolIndex, options: GoldOptions | None, report: BuildReport,
) -> None:
    """One task's gold triples and gold plan, in one transaction."""
    assert task.parent is not None
    report.tasks += 1
    gold_paths = set(patch_paths(task.gold_patch))
    author_ts = commit.author_ts if commit else int(git(repo_dir, "log", "-1", "--format=%at", task.sha).strip())
    try:
        ex = gold_examples(
            repo_dir, repo=name, sha=task.sha, parent=task.parent, instruction=task.instruction,
            author_ts=author_ts, test_paths_rule=lambda p, g=gold_paths: p not in g, options=options,
            index=index,
        )
    except CraError as exc:
        report.errors.append({"sha": task.sha, "error": str(exc)})
        return
    with db.write():
        added = save_triples(db, ex.triples)
        report.triples += added
        report.duplicates += len(ex.triples) - added
        if ex.truth.files:
            pid = save_plan(db, name, task.sha, ex.plan.to_dict())
            set_plan_score(db, pid, score_plan(ex.plan, ex.truth).to_dict())
            report.plans += 1
    for stage, why in ex.skipped.items():
        key = skip_key(stage, why)
        report.skipped[key] = report.skipped.get(key, 0) + 1


_FILE = re.compile(r"(?<![\w<])[\w.\-]+(?:/[\w.\-]+)*\.(?:pyi?|txt|cfg|toml|ini|md|rst|json|ya?ml)\b")
_REV = re.compile(r"\b[0-9a-f]{7,64}\b")
_NUMBER = re.compile(r"\b\d[\d,]*\b")


def skip_key(stage: str, why: str) -> str:
    """How a dropped triple is counted: its stage and its cause, with the files, commits and
    counts it names replaced (``execute: no exact gold edits: <file> is not text in its
    declared encoding (cp1252) at <rev>: byte 0x81 is not cp1252``), so one cause over
    many commits is one line, and the line says what the cause is."""
    text = _REV.sub("<rev>", _FILE.sub("<file>", why))
    text = _NUMBER.sub(lambda m: m[0] if m.start() and text[m.start() - 1] in "x=-" else "<n>", text)
    return f"{stage}: {text}"


# --------------------------------------------------------------------------- run-derived


@dataclass
class AttemptRecord:
    """One LLM call of one attempt of a run, with how the attempt ended.

    ``resolved``: the attempt's edits made FAIL_TO_PASS and PASS_TO_PASS pass.
    ``alignment``: for a plan call, the plan's combined alignment score.
    """

    stage: str
    prompt: Messages
    completion: str
    resolved: bool
    attempt: int = 1
    alignment: float | None = None

    def __post_init__(self) -> None:
        if self.stage not in TRIPLE_STAGES:
            raise BadInput(f"unknown stage {self.stage!r}", hint=f"use one of {', '.join(TRIPLE_STAGES)}")


@dataclass
class RunRecord:
    """A run of the pipeline on one task (the runs table will hold these)."""

    run_id: int | str
    repo: str
    sha: str
    author_ts: int
    attempts: list[AttemptRecord] = field(default_factory=list)


@dataclass(frozen=True)
class PairConfig:
    """How run-derived DPO pairs are made."""

    plan_margin: float = 0.2  # plans: chosen's alignment must beat rejected's by this much
    max_pairs_per_prompt: int = 4  # cap, so one prompt with many samples cannot dominate

    def __post_init__(self) -> None:
        if not 0.0 < self.plan_margin <= 1.0:
            raise BadInput(f"plan_margin must be in (0, 1], got {self.plan_margin}")
        if self.max_pairs_per_prompt < 1:
            raise BadInput("max_pairs_per_prompt must be at least 1")


def _key(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _merge(triples: list[TripleRecord]) -> list[TripleRecord]:
    """One triple per content hash, the source runs of duplicates merged, stable order."""
    by_hash: dict[str, TripleRecord] = {}
    for t in triples:
        if t.content_hash in by_hash:
            kept = by_hash[t.content_hash]
            kept.source_runs = sorted(set(kept.source_runs) | set(t.source_runs), key=str)
        else:
            by_hash[t.content_hash] = t
    return list(by_hash.values())


def run_sft(runs: Iterable[RunRecord]) -> list[TripleRecord]:
    """prompt -> completion of every call whose attempt resolved its task."""
    out = [
        TripleRecord(kind="sft", stage=a.stage, repo=r.repo, sha=r.sha, author_ts=r.author_ts, prompt=a.prompt,
                     completion=assistant(a.completion), origin="run", source_runs=[r.run_id],
                     meta={"attempt": a.attempt})
        for r in runs for a in r.attempts if a.resolved
    ]
    return _merge(out)


def run_dpo(runs: Iterable[RunRecord], config: PairConfig | None = None) -> list[TripleRecord]:
    """Preference pairs over calls that share a prompt (same task, same stage).

    Plan calls: chosen = the better-aligned plan, when it beats the other by at least
    ``plan_margin``. Other stages: chosen = an answer from a resolved attempt, rejected =
    one from a failed attempt. Identical answers never pair; at most
    ``max_pairs_per_prompt`` pairs per prompt, the widest margins first.
    """
    config = config or PairConfig()
    groups: dict[tuple[str, str, str, str], list[tuple[RunRecord, AttemptRecord]]] = {}
    for r in runs:
        for a in r.attempts:
            groups.setdefault((r.repo, r.sha, a.stage, _key(a.prompt)), []).append((r, a))
    out: list[TripleRecord] = []
    for (repo, sha, stage, _), calls in sorted(groups.items()):
        # Deterministic: order candidates by their answer's hash, not by arrival.
        calls = sorted(calls, key=lambda ra: (_key(ra[1].completion), str(ra[0].run_id)))
        candidates: list[tuple[float, tuple[RunRecord, AttemptRecord], tuple[RunRecord, AttemptRecord]]] = []
        for good in calls:
            for bad in calls:
                if good[1].completion == bad[1].completion:
                    continue
                if stage == "plan":
                    ga, ba = good[1].alignment, bad[1].alignment
                    if ga is None or ba is None or ga - ba < config.plan_margin - 1e-12:
                        continue
                    margin = ga - ba
                else:
                    if not (good[1].resolved and not bad[1].resolved):
                        continue
                    margin = 1.0
                candidates.append((margin, good, bad))
        candidates.sort(key=lambda c: -c[0])  # stable: ties keep the hash order
        seen: set[tuple[str, str]] = set()
        for margin, good, bad in candidates:
            pair = (good[1].completion, bad[1].completion)
            # The same pair from other runs is kept (``_merge`` joins their source runs)
            # and does not count against the cap.
            if pair not in seen and len(seen) >= config.max_pairs_per_prompt:
                continue
            seen.add(pair)
            meta: dict[str, Any] = {"margin": round(margin, 4)}
            if stage == "plan":
                meta |= {"chosen_alignment": good[1].alignment, "rejected_alignment": bad[1].alignment}
            out.append(TripleRecord(
                kind="dpo", stage=stage, repo=repo, sha=sha, author_ts=good[0].author_ts,
                prompt=good[1].prompt, chosen=assistant(good[1].completion), rejected=assistant(bad[1].completion),
                origin="run", source_runs=sorted({good[0].run_id, bad[0].run_id}, key=str), meta=meta,
            ))
    return _merge(out)


# --------------------------------------------------------------------------- stats, export


def run_records(db: Database, name: str) -> list[RunRecord]:
    """The finished model runs of a repo, read back from the runs tables as triple input.

    Each successful LLM call becomes an ``AttemptRecord`` carrying its attempt's outcome
    (``resolved``) and, for a plan call, that attempt's plan alignment score, so SFT and
    DPO are built from exactly the prompts the pipeline sent.
    """
    from appliance.db.runs import get_run_trace, list_runs

    author_ts = {c.sha: c.author_ts for c in get_commits(db, name)}
    records: list[RunRecord] = []
    for run in list_runs(db, name):
        if run.status not in (RunStatus.RESOLVED, RunStatus.FAILED):
            # planned (no model), running and broken runs teach nothing here, and an
            # infra_error run is the server's or the environment's failure: its answers
            # are never a rejected DPO answer.
            continue
        trace = get_run_trace(db, run.id)
        resolved = {a.attempt: a.resolved for a in trace.attempts}
        scores = {p["attempt"]: p.get("score") for p in trace.plans if p.get("score") is not None}
        attempts = [
            AttemptRecord(stage=call.stage, prompt=call.messages, completion=text,
                          resolved=resolved.get(call.attempt, False), attempt=call.attempt,
                          alignment=scores.get(call.attempt) if call.stage == "plan" else None)
            for call in trace.calls if call.status == "ok" and call.stage in TRIPLE_STAGES
            for text in call.responses
        ]
        if attempts:
            records.append(RunRecord(run_id=run.id, repo=name, sha=run.sha,
                                     author_ts=author_ts.get(run.sha, 0), attempts=attempts))
    return records


def build_from_runs(db: Database, name: str, config: PairConfig | None = None) -> dict[str, int]:
    """Run-derived SFT (resolved attempts) and DPO pairs, stored; safe to rerun."""
    runs = run_records(db, name)
    sft, dpo = run_sft(runs), run_dpo(runs, config)
    return {"runs": len(runs), "sft": len(sft), "dpo": len(dpo), "added": save_triples(db, sft + dpo)}


def stats(db: Database, *, repo: str | None = None) -> dict[str, Any]:
    """Triple counts by stage and kind (zeros included), and by origin."""
    return triple_counts(db, repo=repo)


def export_row(t: TripleRecord, sft_format: str = "messages") -> dict[str, Any]:
    """One JSONL row in the shape trl's trainers read."""
    if t.kind == "dpo":
        return {"prompt": t.prompt, "chosen": t.chosen, "rejected": t.rejected}
    assert t.completion is not None
    if sft_format == "messages":
        return {"messages": t.prompt + t.completion}
    return {"prompt": t.prompt, "completion": t.completion}


def export(
    db: Database, out_dir: Path | str, *, sft_format: str = "messages", repo: str | None = None,
    before_ts: int | None = None,
) -> dict[str, Any]:
    """Write ``<stage>.<kind>.jsonl`` files and ``manifest.json`` into ``out_dir``.

    Rows are in a deterministic order (author date, repo, commit, content hash), so two
    exports of the same DB are byte-identical. ``before_ts`` keeps only triples whose
    commit was authored before it (the chronological cut-off). A stage and kind with no
    rows has no file (a stale one from an earlier export is removed). Returns the manifest.
    """
    if sft_format not in SFT_FORMATS:
        raise BadInput(f"unknown SFT format '{sft_format}'", hint=f"use one of {', '.join(SFT_FORMATS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInput("the export target is not a folder", path=out, hint="name a folder with --out")
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for stage in TRIPLE_STAGES:
        for kind in TRIPLE_KINDS:
            name = f"{stage}.{kind}.jsonl"
            rows = list_triples(db, stage=stage, kind=kind, repo=repo, before_ts=before_ts)
            if not rows:
                (out / name).unlink(missing_ok=True)
                continue
            data = "".join(json.dumps(export_row(t, sft_format), ensure_ascii=False) + "\n" for t in rows)
            blob = data.encode("utf-8")
            write_atomic(out / name, blob)
            files[name] = {"stage": stage, "kind": kind, "rows": len(rows),
                           "sha256": hashlib.sha256(blob).hexdigest()}
    manifest = {"version": EXPORT_VERSION, "sft_format": sft_format, "repo": repo, "before_ts": before_ts,
                "files": files}
    write_atomic(out / "manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


# --------------------------------------------------------------------------- scoring stored plans


def score_stored_plans(
    db: Database, home: Home, name: str | None = None, *, weights: Weights = DEFAULT_WEIGHTS,
) -> dict[str, Any]:
    """Recompute the alignment score of every stored plan (of one repo, or all).

    Ground truth is computed once per commit, with the task's gold patch deciding which
    files are non-test when there is a task. A plan whose JSON no longer parses or whose
    commit cannot be read is reported, not fatal. Returns a summary for the CLI.
    """
    names = [name] if name else [r["name"] for r in list_repos(db)]
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for repo in names:
        plans = list_plans(db, repo=repo)
        if not plans:
            continue
        repo_dir = home.repo_dir(repo)
        parents = {c.sha: c.parent for c in get_commits(db, repo)}
        tasks = {t.sha: t for t in list_tasks(db, repo)}
        truths: dict[str, GroundTruth | CraError] = {}
        for row in plans:
            if row.sha not in truths:
                task = tasks.get(row.sha)
                parent = task.parent if task else parents.get(row.sha)
                try:
                    if parent is None:
                        raise NotFound(f"commit {row.sha[:10]} of '{repo}' has no known parent")
                    if task:
                        gold = set(patch_paths(task.gold_patch))
                        truths[row.sha] = ground_truth(repo_dir, parent, row.sha, lambda p, g=gold: p not in g)
                    else:
                        truths[row.sha] = ground_truth(repo_dir, parent, row.sha)
                except CraError as exc:
                    truths[row.sha] = exc
            truth = truths[row.sha]
            if isinstance(truth, CraError):
                errors.append({"id": row.id, "repo": repo, "sha": row.sha, "error": str(truth)})
                continue
            try:
                plan = Plan.from_dict(row.plan)
            except PlanFormatError as exc:
                errors.append({"id": row.id, "repo": repo, "sha": row.sha, "error": str(exc)})
                continue
            detail = score_plan(plan, truth, weights=weights).to_dict()
            set_plan_score(db, row.id, detail)
            rows.append({
                "id": row.id, "repo": repo, "sha": row.sha, "source": row.source, "kind": row.kind,
                "run_id": row.run_id, "attempt": row.attempt, "score": detail["score"],
                "file_f1": detail["files"]["f1"], "symbol_f1": detail["symbols"]["f1"], "order": detail["order"],
            })
    by_source: dict[str, dict[str, float]] = {}
    for source in sorted({r["source"] for r in rows}):
        scores = [r["score"] for r in rows if r["source"] == source]
        by_source[source] = {"plans": len(scores), "mean_score": round(sum(scores) / len(scores), 4)}
    mean = round(sum(r["score"] for r in rows) / len(rows), 4) if rows else None
    return {"repo": name, "plans": len(rows) + len(errors), "scored": len(rows), "mean_score": mean,
            "by_source": by_source, "rows": rows, "errors": errors}
