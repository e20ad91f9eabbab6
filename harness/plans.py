"""The plan format: what the planner writes, what the executor follows, what the scorer reads.

One format for every producer (the gold commit, the retrieval planner, a model) so that a
plan can be stored, scored and turned into training data the same way whoever wrote it.
The spec's three plan kinds (step-plan, meta-plan, test-plan) share it: the kind is a
field, not a code path.

A model's JSON is untrusted input. ``Plan.from_json`` accepts what a model plausibly
writes (prose or a markdown fence around the object, extra keys, a missing optional
field) and turns everything else into one ``PlanFormatError`` that says which step and
which field are wrong, never a ``KeyError`` or ``TypeError`` from deep inside.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from appliance.errors import BadInput

PLAN_VERSION = 1  # of the JSON shape ``Plan.to_dict`` writes
ACTIONS = ("modify", "add", "delete", "test")
KINDS = ("step", "meta", "test")
SOURCES = ("gold", "retrieval", "model")
MAX_STEPS = 32  # what a plan schema allows; a longer plan is a model rambling


class PlanFormatError(BadInput):
    """A plan that cannot be read: not JSON, a missing field, a bad value, a bad reference."""


@dataclass
class PlanStep:
    """One step: which file, which symbols in it, what to do, after which steps."""

    id: int
    file: str
    symbols: list[str] = field(default_factory=list)
    action: str = "modify"
    description: str = ""
    depends_on: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "file": self.file, "symbols": list(self.symbols),
            "action": self.action, "description": self.description,
            "depends_on": list(self.depends_on),
        }


@dataclass
class Plan:
    """A plan: its kind, its steps (in the order the planner wrote them) and who wrote it."""

    steps: list[PlanStep]
    kind: str = "step"
    source: str = "model"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PlanFormatError(f"unknown plan kind {self.kind!r}", hint=f"use one of {', '.join(KINDS)}")
        if self.source not in SOURCES:
            raise PlanFormatError(f"unknown plan source {self.source!r}", hint=f"use one of {', '.join(SOURCES)}")

    # -- views the scorer and the executor use ------------------------------------------

    def ordered_steps(self) -> list[PlanStep]:
        """Steps in execution order: ``depends_on`` first, otherwise as written.

        A stable topological sort, so a plan whose list order already respects its
        dependencies comes back unchanged. Unknown ids and cycles (only possible in a
        plan built in code, ``from_dict`` refuses them) fall back to list order.
        """
        by_id = {s.id: s for s in self.steps}
        done: set[int] = set()
        out: list[PlanStep] = []
        visiting: set[int] = set()

        def visit(step: PlanStep) -> None:
            if step.id in done or step.id in visiting:
                return
            visiting.add(step.id)
            for dep in step.depends_on:
                if dep in by_id and dep != step.id:
                    visit(by_id[dep])
            visiting.discard(step.id)
            if step.id not in done:
                done.add(step.id)
                out.append(step)

        for step in self.steps:
            visit(step)
        # Steps sharing an id (a hand-built plan) are kept, in list order.
        seen = {id(s) for s in out}
        out += [s for s in self.steps if id(s) not in seen]
        return out

    def files(self, *, include_tests: bool = True) -> list[str]:
        """Files in execution order, each once (the order the scorer checks)."""
        seen: dict[str, None] = {}
        for step in self.ordered_steps():
            if include_tests or step.action != "test":
                seen.setdefault(step.file, None)
        return list(seen)

    def symbols(self, *, include_tests: bool = True) -> dict[str, list[str]]:
        """{file: [symbol, ...]} over all steps, each symbol once per file."""
        out: dict[str, dict[str, None]] = {}
        for step in self.ordered_steps():
            if include_tests or step.action != "test":
                bucket = out.setdefault(step.file, {})
                for sym in step.symbols:
                    bucket.setdefault(sym, None)
        return {f: list(s) for f, s in out.items()}

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION, "kind": self.kind, "source": self.source,
            "steps": [s.to_dict() for s in self.steps],
        }

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def model_dict(self) -> dict[str, Any]:
        """What a model writes (the schema's shape): no version, no source."""
        return {"kind": self.kind, "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> Plan:
        """Build and check a plan from parsed JSON; extra keys are ignored.

        Required: ``steps`` (a list) and, per step, ``file``. Defaults: ``kind`` "step",
        step ``id`` its 1-based position, ``symbols``/``depends_on`` empty, ``action``
        "modify", ``description`` "". ``source`` overrides the one in ``data``.
        """
        if not isinstance(data, dict):
            raise PlanFormatError(f"a plan must be a JSON object, not {_type(data)}")
        kind = data.get("kind", "step")
        if kind not in KINDS:
            raise PlanFormatError(f"unknown plan kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
        src = source if source is not None else data.get("source", "model")
        if src not in SOURCES:
            raise PlanFormatError(f"unknown plan source {src!r}", hint=f"use one of {', '.join(SOURCES)}")
        raw_steps = data.get("steps")
        if raw_steps is None:
            raise PlanFormatError("the plan has no 'steps' list", hint='write {"kind": "step", "steps": [...]}')
        if not isinstance(raw_steps, list):
            raise PlanFormatError(f"'steps' must be a list, not {_type(raw_steps)}")
        steps = [_step(raw, pos) for pos, raw in enumerate(raw_steps, start=1)]
        _check_references(steps)
        return cls(steps=steps, kind=kind, source=src)

    @classmethod
    def from_json(cls, text: str, *, source: str | None = None) -> Plan:
        """Parse a plan from JSON text, tolerating prose or a markdown fence around it."""
        if not isinstance(text, str) or not text.strip():
            raise PlanFormatError("the plan is empty", hint="the planner must answer with a JSON object")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = _embedded_object(text)
        return cls.from_dict(data, source=source)


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


_FENCE = re.compile(r"```[\w+-]*\s*\n(.*?)\n\s*```", re.DOTALL)


def _embedded_object(text: str) -> Any:
    """The first JSON object inside ``text``: in a fence, or from the first ``{``."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)]
    start = text.find("{")
    if start >= 0:
        candidates.append(text[start:])
    decoder = json.JSONDecoder()
    for chunk in candidates:
        chunk = chunk.strip()
        brace = chunk.find("{")
        if brace < 0:
            continue
        try:
            obj, _ = decoder.raw_decode(chunk[brace:])
        except json.JSONDecodeError:
            continue
        return obj
    first = text.strip().splitlines()[0][:60]
    raise PlanFormatError(f"the plan is not JSON (starts with {first!r})",
                          hint="the planner must answer with one JSON object")


def _step(raw: Any, pos: int) -> PlanStep:
    where = f"step {pos}"
    if not isinstance(raw, dict):
        raise PlanFormatError(f"{where} must be an object, not {_type(raw)}")
    sid = raw.get("id", pos)
    if isinstance(sid, bool) or not isinstance(sid, int | str) or not str(sid).strip().lstrip("-").isdigit():
        raise PlanFormatError(f"{where}: 'id' must be an integer, not {sid!r}")
    sid = int(sid)
    where = f"step {sid}"
    path = raw.get("file")
    if not isinstance(path, str) or not path.strip():
        raise PlanFormatError(f"{where} has no 'file'", hint="every step names the file it changes")
    path = path.strip()
    while path.startswith("./"):
        path = path[2:]
    symbols = raw.get("symbols", [])
    if symbols is None:
        symbols = []
    if isinstance(symbols, str):
        symbols = [symbols]
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise PlanFormatError(f"{where}: 'symbols' must be a list of strings")
    action = raw.get("action", "modify")
    if action not in ACTIONS:
        raise PlanFormatError(f"{where}: unknown action {action!r}", hint=f"use one of {', '.join(ACTIONS)}")
    description = raw.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise PlanFormatError(f"{where}: 'description' must be a string")
    deps = raw.get("depends_on", [])
    if deps is None:
        deps = []
    if isinstance(deps, int) and not isinstance(deps, bool):
        deps = [deps]
    if not isinstance(deps, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in deps):
        raise PlanFormatError(f"{where}: 'depends_on' must be a list of step ids")
    return PlanStep(
        id=sid, file=path, symbols=[s.strip() for s in symbols if s.strip()], action=action,
        description=description, depends_on=list(dict.fromkeys(deps)),
    )


def _check_references(steps: list[PlanStep]) -> None:
    ids = [s.id for s in steps]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise PlanFormatError(f"step ids repeat: {dupes}", hint="give every step its own id")
    known = set(ids)
    for s in steps:
        for d in s.depends_on:
            if d == s.id:
                raise PlanFormatError(f"step {s.id} depends on itself")
            if d not in known:
                raise PlanFormatError(f"step {s.id} depends on step {d}, which the plan does not have")
    # Cycles: a plan that can never be executed in order.
    deps = {s.id: set(s.depends_on) for s in steps}
    while deps:
        free = [i for i, d in deps.items() if not d & deps.keys()]
        if not free:
            raise PlanFormatError(f"steps {sorted(deps)} depend on each other in a cycle")
        for i in free:
            del deps[i]


NEW_FILE_ACTIONS = ("add", "test")  # the actions that may name a file the repo lacks
# A new file's path: relative, segments that do not start with a dot (no "..", no hidden
# directories), a .py file. Written in the regex subset llama.cpp's grammar converter and
# xgrammar both accept.
NEW_FILE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*[.]py$"
_NEW_FILE = re.compile(NEW_FILE_PATTERN)


def is_new_file_path(path: str) -> bool:
    """True for a path a plan may create (what ``NEW_FILE_PATTERN`` lets a model write)."""
    return bool(_NEW_FILE.match(path))


def files_outside_schema(plan: Plan, files: list[str]) -> list[str]:
    """The files of ``plan`` that ``plan_json_schema(files, new_files=True)`` would refuse."""
    known = set(files)
    return [s.file for s in plan.steps
            if s.file not in known and not (s.action in NEW_FILE_ACTIONS and is_new_file_path(s.file))]


def plan_json_schema(
    files: list[str], *, kind: str | None = None, max_steps: int = MAX_STEPS, new_files: bool = False,
) -> dict[str, Any]:
    """A JSON schema for a model's plan whose ``file`` must be one of ``files``.

    Written in the subset both llama.cpp's ``response_format`` grammar converter and
    vLLM's structured outputs (xgrammar / outlines) support: ``type``, ``properties``,
    ``required``, ``enum``, ``items``, ``minItems``/``maxItems``, ``additionalProperties``,
    and with ``new_files`` ``anyOf`` and ``pattern``. Every field is required so a
    constrained model cannot drop one; ``kind`` stays a field (an enum of one when ``kind``
    is given) so one schema shape serves all plan kinds.

    ``new_files``: a step may also name a file that does not exist yet, when its action is
    ``add`` or ``test`` and its path matches ``NEW_FILE_PATTERN``. Without it a model can
    never plan a commit that creates a module.
    """
    names = sorted(dict.fromkeys(f for f in files if f))
    if not names and not new_files:
        raise BadInput("a plan schema needs at least one file", hint="index the repo first")
    if kind is not None and kind not in KINDS:
        raise BadInput(f"unknown plan kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")

    def step_schema(file: dict[str, Any], actions: tuple[str, ...]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "file": file,
                "symbols": {"type": "array", "items": {"type": "string"}},
                "action": {"type": "string", "enum": list(actions)},
                "description": {"type": "string"},
                "depends_on": {"type": "array", "items": {"type": "integer"}},
            },
            "required": ["id", "file", "symbols", "action", "description", "depends_on"],
            "additionalProperties": False,
        }

    step = step_schema({"type": "string", "enum": names}, ACTIONS)
    if new_files:
        created = step_schema({"type": "string", "pattern": NEW_FILE_PATTERN}, NEW_FILE_ACTIONS)
        # No existing file to name (a test plan in a repo without tests): new files only.
        step = {"anyOf": [step, created]} if names else created
    return {
        "title": "plan",
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": [kind] if kind else list(KINDS)},
            "steps": {"type": "array", "items": step, "minItems": 1, "maxItems": max_steps},
        },
        "required": ["kind", "steps"],
        "additionalProperties": False,
    }
