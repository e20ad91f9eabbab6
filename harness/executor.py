"""The Execute stage: a plan and the code in, whole search/replace edits out, checked.

The prompt is ``harness.triples.execute_messages``, the very prompt the gold execute
triples are built with, so a trained adapter sees at inference what it saw in training.
The answer is untrusted text: ``parse_edits`` keeps the blocks and drops the pollution
around them (prose, markdown fences, ``if __name__ == "__main__":`` code between blocks),
and the blocks are applied in memory to the parent's files (exact, then whitespace
tolerant), so an edit that cannot apply is a recorded ``apply_error`` before any
checkout is touched. What the candidate evaluator applies is the *clean* rendering.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.llm import BoundClient, LLMClient
from harness.edits import (
    ApplyResult,
    Edit,
    EditFormatError,
    apply_to_texts,
    parse_edits,
    read_texts,
    render_edits,
)
from harness.plans import Plan
from harness.triples import execute_messages

MAX_CONTEXT_CHARS = 60_000  # whole files up to this much, then excerpts (as gold triples do)
EXCERPT_LINES = 30
EXECUTE_MAX_TOKENS = 2048
STATUSES = ("applied", "apply_error", "no_edits", "bad_output")


@dataclass
class ExecuteResult:
    """One execute call: the raw answer, the blocks read from it and whether they apply."""

    status: str  # applied | apply_error | no_edits | bad_output
    text: str = ""  # the model's answer as written
    edits: list[Edit] = field(default_factory=list)
    rendered: str = ""  # the blocks alone, pollution stripped: what is stored and applied
    error: str | None = None
    apply: ApplyResult | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    call_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "applied"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "edits": self.rendered, "error": self.error,
                "apply": self.apply.to_dict() if self.apply else None, "call_id": self.call_id}


def plan_context(
    repo_dir: Path | str, rev: str, plan: Plan, *, spans: dict[str, list[tuple[int, int]]] | None = None,
    max_chars: int = MAX_CONTEXT_CHARS, excerpt_lines: int = EXCERPT_LINES,
) -> list[tuple[str, str]]:
    """(header, code) pairs for the plan's existing files at ``rev``.

    Whole files when they fit in ``max_chars``; otherwise excerpts around ``spans``
    ({path: [(first_line, last_line)]}, 1-based, e.g. the plan's symbols from the index),
    else each file's head, so the prompt never silently exceeds the budget.
    """
    files = plan.files(include_tests=True)
    texts = read_texts(repo_dir, rev, files, strict=False)
    whole = [(p, t) for p in files if (t := texts.get(p)) is not None]
    if sum(len(t) for _, t in whole) <= max_chars:
        return whole
    out: list[tuple[str, str]] = []
    budget = max_chars
    for path, text in whole:
        lines = text.split("\n")
        ranges = sorted((max(0, a - 1 - excerpt_lines), min(len(lines), b + excerpt_lines))
                        for a, b in (spans or {}).get(path, []))
        if not ranges:
            ranges = [(0, min(len(lines), 4 * excerpt_lines))]
        merged: list[list[int]] = []
        for lo, hi in ranges:
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        for lo, hi in merged:
            chunk = "\n".join(lines[lo:hi])
            if len(chunk) > budget:
                continue
            budget -= len(chunk)
            out.append((f"{path} (lines {lo + 1}-{hi} of {len(lines)})", chunk))
    return out


def read_edits(text: str) -> tuple[list[Edit], str | None]:
    """The blocks of an answer, pollution stripped; (blocks, why-not) for a broken answer."""
    try:
        return parse_edits(text), None
    except EditFormatError as exc:
        return [], str(exc)


def check_edits(repo_dir: Path | str, rev: str, edits: list[Edit]) -> ApplyResult:
    """Apply ``edits`` in memory to the files at ``rev``: exact, then whitespace tolerant."""
    texts = read_texts(repo_dir, rev, sorted({e.path for e in edits}), strict=False)
    _, result = apply_to_texts(texts, edits)
    return result


def judge_answer(text: str, repo_dir: Path | str, rev: str) -> ExecuteResult:
    """Everything after the model answered: read the blocks, check they apply at ``rev``."""
    edits, error = read_edits(text)
    if error is not None:
        return ExecuteResult("bad_output", text=text, error=error)
    if not edits:
        head = text.strip().splitlines()[0][:80] if text.strip() else ""
        return ExecuteResult("no_edits", text=text,
                             error=f"the answer holds no search/replace block (starts with {head!r})")
    rendered = render_edits(edits)
    result = check_edits(repo_dir, rev, edits)
    status = "applied" if result.ok else "apply_error"
    return ExecuteResult(status, text=text, edits=edits, rendered=rendered, error=result.apply_error, apply=result)


def execute(
    client: LLMClient | BoundClient, instruction: str, plan: Plan, repo_dir: Path | str, rev: str, *,
    temperature: float = 0.2, adapter: str | None = None, seed: int | None = None,
    max_tokens: int = EXECUTE_MAX_TOKENS, spans: dict[str, list[tuple[int, int]]] | None = None,
) -> ExecuteResult:
    """Ask for the edits that carry out ``plan`` and check them against ``rev``.

    An ``LLMError`` propagates (the pipeline records it as the run's failure); every
    answer, however bad, comes back as an ``ExecuteResult``.
    """
    messages = execute_messages(instruction, plan, plan_context(repo_dir, rev, plan, spans=spans))
    completion = client.complete(messages, stage="execute", temperature=temperature,
                                 max_tokens=max_tokens, adapter=adapter, seed=seed)
    result = judge_answer(completion.text, repo_dir, rev)
    result.messages = messages
    result.call_id = completion.call_id
    return result
