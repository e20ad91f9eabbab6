"""The Plan stage: a step plan for a task, from retrieval alone or from a model.

Two planners, one output (``harness.plans.Plan``) so that both are stored, scored against
the commit's ground truth and followed by the executor the same way:

* ``retrieval_plan``: no model. The top retrieved files, ordered so a file comes after
  the files it imports (``import_order``), each with its best retrieved symbols. It is
  what ``cra harness run`` does with no model configured, and the baseline a model must
  beat on alignment.
* ``model_plan``: the model writes the plan as JSON under ``plan_json_schema``, whose
  ``file`` enum is the commit's indexed non-test files, so a constrained model cannot
  name a file that does not exist. The kind (step, meta, test) is a field of the schema
  and of the prompt, not a separate code path. A repair attempt is the same call with
  the previous plan, edits and failing output appended (``repair_messages``).

The spec's three plan kinds (seed 004 §3, Gate 1) share that call and differ only in the
prompt's instructions and which files the schema lists (``first_plan_prompt``): a step
plan (files, symbols, order: what the executor follows), a meta plan (the approach: which
modules, in which order, why) over the same source files, and a test plan (which tests
to add or change) over the repo's test files, its related tests shown beside the code.

A model's answer is untrusted: an unreadable plan comes back as a ``PlanOutcome`` with
``error`` set (the pipeline records ``bad_output``), never as an exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.llm import BoundClient, LLMClient
from harness.index import SymbolIndex
from harness.plans import Plan, PlanFormatError, PlanStep, files_outside_schema, plan_json_schema
from harness.retrieve import Retrieval, import_order, retrieve
from harness.testrun import is_test_file

Messages = list[dict[str, str]]
RETRIEVAL_FILES = 3  # files the retrieval planner plans for
RETRIEVAL_SYMBOLS = 3  # symbols per file
PROMPT_FILES = 8  # retrieved files whose outlines the plan prompt shows
TEST_PROMPT_SOURCES = 3  # of those, shown in a test plan's prompt beside the related tests
OUTLINE_LINES = 40  # symbols listed per file in the plan prompt
PLAN_MAX_TOKENS = 1024
MAX_SCHEMA_FILES = 400  # files a plan schema's enum lists before it narrows to retrieval's
REPAIR_OUTPUT_CHARS = 4000

PLAN_SYSTEM = (
    "You are the plan stage of a code agent. You get a task and the repository files most "
    "related to it, with the functions, methods and classes each defines. Answer with one "
    "JSON object {{\"kind\": \"{kind}\", \"steps\": [...]}}; each step has an integer id, the "
    "file to change (one of the repository's files), the symbols to change or add by qualified "
    "name, an action (modify, add, delete, test), a one-line description, and depends_on: the "
    "ids of the steps it needs first. Order the steps so a file comes after the files it imports."
)
META_SYSTEM = (
    "You are the plan stage of a code agent, writing the approach. You get a task and the "
    "repository files most related to it, with the functions, methods and classes each defines. "
    "Answer with one JSON object {\"kind\": \"meta\", \"steps\": [...]}; each step names one "
    "module (file) the change goes through, in the order the work should go (a file after the "
    "files it imports), with a one-line description of what changes there and why; symbols may "
    "stay empty; action is modify, add or delete; depends_on lists the ids of the steps it needs first."
)
TEST_SYSTEM = (
    "You are the plan stage of a code agent, writing the test plan. You get a task, the code it "
    "concerns and the repository's related tests. Answer with one JSON object "
    "{\"kind\": \"test\", \"steps\": [...]}; each step names a test file (an existing one, or a "
    "new tests/... file), the test functions or classes to add or change by qualified name, "
    "action test, a one-line description of what the tests check, and depends_on."
)
SYSTEMS = {"step": PLAN_SYSTEM.format(kind="step"), "meta": META_SYSTEM, "test": TEST_SYSTEM}
"""The plan prompt's instructions per kind; the step plan's text is what gold triples were built with."""
REPAIR_TEMPLATE = (
    "Those edits did not solve the task.\n\nEdits:\n{edits}\n\nWhat went wrong:\n{output}\n\n"
    "Write a revised plan as one JSON object of the same shape."
)


@dataclass
class PlanOutcome:
    """A planner's result: the plan, or the raw answer and why it is not a plan."""

    plan: Plan | None
    text: str = ""
    error: str | None = None
    messages: Messages = field(default_factory=list)
    call_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.plan is not None


def source_files(index: SymbolIndex, sha: str, *, exclude: Callable[[str], bool] = is_test_file) -> list[str]:
    """The commit's indexed files a plan may name (test files left out)."""
    return [f.path for f in index.files(sha) if not exclude(f.path)]


def schema_files(index: SymbolIndex, sha: str, retrieval: Retrieval, *,
                 limit: int = MAX_SCHEMA_FILES) -> list[str]:
    """The files a model's plan may name: all source files of a repo up to ``limit``;
    beyond it the retrieved files and the files they import or are imported by, so the
    schema's enum (a grammar under llama.cpp) stays small enough to compile quickly."""
    files = source_files(index, sha)
    if len(files) <= limit:
        return files
    known = set(files)
    top = [s.path for s in retrieval.files if s.path in known]
    graph = index.import_graph(sha)
    chosen = dict.fromkeys(top)
    for path in top:
        for near in sorted(graph.get(path, set())):
            chosen.setdefault(near, None)
    for path, deps in sorted(graph.items()):
        if deps & set(top):
            chosen.setdefault(path, None)
    picked = [p for p in chosen if p in known][:limit]
    return picked or files[:limit]


# ------------------------------------------------------------------------------ retrieval


def retrieval_plan(
    index: SymbolIndex, sha: str, retrieval: Retrieval, *, k_files: int = RETRIEVAL_FILES,
    k_symbols: int = RETRIEVAL_SYMBOLS, kind: str = "step",
) -> Plan | None:
    """A plan from the top retrieved files and symbols, foundations first; None when
    retrieval found nothing to plan for."""
    top = [s.path for s in retrieval.files[:k_files]]
    if not top:
        return None
    graph = index.import_graph(sha)
    ordered = import_order(graph, top)
    ids = {path: i for i, path in enumerate(ordered, start=1)}
    steps = []
    for path in ordered:
        names: list[str] = []
        for s in retrieval.symbols:
            if s.path == path and s.symbol not in names:
                names.append(s.symbol)
            if len(names) >= k_symbols:
                break
        deps = sorted(ids[d] for d in graph.get(path, set()) if d in ids and d != path)
        what = ", ".join(names) if names else "the code the task names"
        steps.append(PlanStep(id=ids[path], file=path, symbols=names, action="modify",
                              description=f"Change {what} in {path} for the task", depends_on=deps))
    return Plan(steps=steps, kind=kind, source="retrieval")


# ------------------------------------------------------------------------------ model


def _listing(outlines: dict[str, list[str]], empty: str) -> str:
    parts = []
    for path, lines in outlines.items():
        shown = lines[:OUTLINE_LINES]
        more = f"\n  ... {len(lines) - len(shown)} more" if len(lines) > len(shown) else ""
        body = "\n".join(f"  {ln}" for ln in shown) if shown else "  (no functions or classes)"
        parts.append(f"{path}\n{body}{more}")
    return "\n\n".join(parts) if parts else empty


def plan_messages(
    instruction: str, outlines: dict[str, list[str]], *, kind: str = "step",
    tests: dict[str, list[str]] | None = None,
) -> Messages:
    """The plan prompt: task + the retrieved files with their symbols (best first); for a
    test plan, ``tests`` (the related test files and their tests) after them."""
    files = _listing(outlines, "(retrieval found no related file)")
    user = f"Task:\n{instruction.strip()}\n\nRelated files:\n{files}"
    if tests is not None:
        user += f"\n\nRelated tests:\n{_listing(tests, '(the repository has no related test file)')}"
    system = SYSTEMS[kind] if kind in SYSTEMS else PLAN_SYSTEM.format(kind=kind)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def repair_messages(previous: Messages, plan_text: str, edits: str, output: str) -> Messages:
    """The plan prompt again with the last plan, its edits and what failed appended."""
    tail = output if len(output) <= REPAIR_OUTPUT_CHARS else "...\n" + output[-REPAIR_OUTPUT_CHARS:]
    return [
        *previous,
        {"role": "assistant", "content": plan_text},
        {"role": "user", "content": REPAIR_TEMPLATE.format(edits=edits.strip() or "(none)", output=tail.strip())},
    ]


def outlines_for(index: SymbolIndex, sha: str, retrieval: Retrieval, *, k_files: int = PROMPT_FILES,
                 exclude: Callable[[str], bool] = is_test_file) -> dict[str, list[str]]:
    """{file: ["Qual.name: signature", ...]} for the top retrieved files."""
    out: dict[str, list[str]] = {}
    for scored in retrieval.files:
        if len(out) >= k_files:
            break
        if exclude(scored.path):
            continue
        out[scored.path] = [f"{s.symbol.qualname}: {s.symbol.signature}" for s in index.symbols(sha, scored.path)]
    return out


def existing_tests(index: SymbolIndex, sha: str) -> list[str]:
    """The commit's indexed test files: what a test plan may name besides new test files."""
    return [f.path for f in index.files(sha) if is_test_file(f.path)]


def first_plan_prompt(
    index: SymbolIndex, sha: str, instruction: str, retrieval: Retrieval, *, kind: str = "step",
) -> tuple[Messages, list[str]]:
    """The plan stage's first prompt for ``kind`` and the files its schema lets a plan name.

    One function for the pipeline, the gold plan triples and the stage evaluation, so what a
    model is trained on is, byte for byte, what it is asked at run time. ``retrieval`` is
    over the source files (tests excluded); a test plan also retrieves the related tests and
    may name the repo's test files (``test_files``) or a new one.
    """
    outlines = outlines_for(index, sha, retrieval)
    if kind != "test":
        return plan_messages(instruction, outlines, kind=kind), schema_files(index, sha, retrieval)
    related = retrieve(index, sha, instruction, exclude=lambda p: not is_test_file(p))
    tests = outlines_for(index, sha, related, exclude=lambda p: not is_test_file(p))
    messages = plan_messages(instruction, dict(list(outlines.items())[:TEST_PROMPT_SOURCES]), kind=kind,
                             tests=tests)
    return messages, existing_tests(index, sha)


def model_plan(
    client: LLMClient | BoundClient, messages: Messages, files: list[str], *, kind: str = "step",
    temperature: float = 0.2, adapter: str | None = None, seed: int | None = None,
    max_tokens: int = PLAN_MAX_TOKENS,
) -> PlanOutcome:
    """Ask for a plan under the schema; ``LLMError`` propagates, a bad answer is returned."""
    schema = plan_json_schema(files, kind=kind, new_files=True)
    completion = client.complete(messages, stage="plan", temperature=temperature, max_tokens=max_tokens,
                                 json_schema=schema, adapter=adapter, seed=seed)
    text = completion.text
    out = PlanOutcome(plan=None, text=text, messages=messages, call_id=completion.call_id)
    try:
        plan = Plan.from_json(text, source="model")
    except PlanFormatError as exc:
        out.error = str(exc)
        return out
    # The schema says the same, but a server in json_object mode does not enforce it.
    unknown = files_outside_schema(plan, files)
    if unknown:
        out.error = (f"the plan names files the repository does not have (only an add or test step "
                     f"may create one): {', '.join(unknown[:5])}")
        return out
    out.plan = plan
    return out


def plan_text(plan: Plan) -> str:
    """A plan as the model writes it (what a repair prompt shows back)."""
    return json.dumps(plan.model_dict(), ensure_ascii=False)


def symbol_spans(index: SymbolIndex, sha: str, plan: Plan) -> dict[str, list[tuple[int, int]]]:
    """{file: [(first, last line)]} of the plan's symbols, for the executor's excerpts."""
    out: dict[str, list[tuple[int, int]]] = {}
    for path, names in plan.symbols().items():
        wanted = set(names)
        for s in index.symbols(sha, path):
            if s.symbol.qualname in wanted:
                out.setdefault(path, []).append((s.symbol.lineno, s.symbol.end_lineno))
    return out


def describe(outcome: PlanOutcome) -> dict[str, Any]:
    return {"ok": outcome.ok, "error": outcome.error, "call_id": outcome.call_id}
