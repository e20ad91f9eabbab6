"""``cra datasets import``: external SFT data brought by USB, stored as a marked source.

Seed 004 §3 names the cold-start datasets that train the execute-code adapter before the
harness has produced anything: CommitPackFT, OpenCodeInstruct and SRI Tuning. Nothing is
downloaded: the file is read from where it lies, line by line.

Formats (one JSON object per line):

``commitpackft``
    ``old_contents``, ``new_contents``, ``message`` (or ``subject``), optional
    ``old_file``/``new_file`` and ``commit``, ``repos``, ``lang``, ``license``. Turned into the
    execute stage's own prompt (``harness.triples.execute_messages``: the message as the task,
    a one-step plan on the file, the old contents as the code) answered with the commit's
    change as search/replace blocks (``harness.edits``), so it trains the prompt the pipeline
    sends.
``sri``
    Search-and-replace rows: ``code`` (the file, or the context with its marker), ``search``,
    ``replace``, optional ``instruction`` and ``path``; the answer is that block in cra's format.
``messages``
    ``{"messages": [...]}``: everything before the last assistant message is the prompt.
``prompt-completion``
    ``{"prompt": ..., "completion": ...}``, each a string or a list of messages (trl's shape).

A malformed line is refused with its line number and nothing is imported (one
transaction). Rows whose change is empty are skipped and counted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.db import training as tsql
from appliance.db.core import Database
from appliance.db.training import ImportedDataset, ImportedRow
from appliance.db.triples import content_hash
from appliance.errors import BadInput
from appliance.hashing import sha256_file
from appliance.status import AdapterSlot, ImportFormat, values
from appliance.training.sources import SLOT_STAGES

FORMATS = tuple(values(ImportFormat))
SLOTS = tuple(values(AdapterSlot))
ROLES = ("system", "user", "assistant")
INSERT_BATCH = 1000


class _Skip(Exception):
    """A well-formed row that teaches nothing (no change): counted, not imported."""


def _messages(value: Any, what: str, default_role: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if not isinstance(value, list) or not value:
        raise ValueError(f"'{what}' must be a string or a non-empty list of messages")
    out = []
    for m in value:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"'{what}' holds a message without a role ({'/'.join(ROLES)}) and a string content")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _text(row: dict[str, Any], *keys: str, required: bool = True) -> str | None:
    for key in keys:
        value = row.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"'{key}' must be a string")
            return value
    if required:
        raise ValueError(f"'{keys[0]}' is missing")
    return None


def _execute_prompt(instruction: str, path: str, code: str) -> list[dict[str, str]]:
    from harness.plans import Plan, PlanStep
    from harness.triples import execute_messages

    plan = Plan([PlanStep(id=1, file=path, action="modify", description=instruction.strip().splitlines()[0][:200])],
                source="gold")
    return execute_messages(instruction, plan, [(path, code)])


def _commitpackft(row: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, Any]]:
    from harness.edits import edits_for_file, render_edits

    old = _text(row, "old_contents")
    new = _text(row, "new_contents")
    message = _text(row, "message", "subject")
    assert old is not None and new is not None and message is not None
    path = _text(row, "new_file", "old_file", required=False) or "file.py"
    if old == new:
        raise _Skip("no change")
    if not message.strip():
        raise ValueError("'message' is empty")
    edits = edits_for_file(path, old, new)
    if not edits:
        raise _Skip("no change")
    meta = {k: row[k] for k in ("commit", "repos", "lang", "license", "old_file", "new_file") if k in row}
    return _execute_prompt(message, path, old), [{"role": "assistant", "content": render_edits(edits)}], meta


def _sri(row: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, Any]]:
    from harness.edits import Edit, render_edits

    code = _text(row, "code", "context")
    search = _text(row, "search")
    replace = _text(row, "replace")
    assert code is not None and search is not None and replace is not None
    if search == replace:
        raise _Skip("no change")
    if search and search not in code:
        raise ValueError("'search' does not occur in 'code'")
    path = _text(row, "path", required=False) or "file.py"
    instruction = _text(row, "instruction", required=False) or "Complete the code at the marker."
    block = render_edits([Edit(path, search, replace)])
    meta = {k: row[k] for k in ("id", "source", "lang", "license") if k in row}
    return _execute_prompt(instruction, path, code), [{"role": "assistant", "content": block}], meta


def _messages_row(row: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, Any]]:
    messages = _messages(row.get("messages"), "messages", "user")
    if messages[-1]["role"] != "assistant" or len(messages) < 2:
        raise ValueError("'messages' must end with the assistant's answer after at least one prompt message")
    meta = {k: v for k, v in row.items() if k != "messages" and isinstance(v, str | int | float | bool)}
    return messages[:-1], messages[-1:], meta


def _prompt_completion(row: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, Any]]:
    if "prompt" not in row or "completion" not in row:
        raise ValueError("'prompt' and 'completion' are both needed")
    prompt = _messages(row["prompt"], "prompt", "user")
    completion = _messages(row["completion"], "completion", "assistant")
    meta = {k: v for k, v in row.items() if k not in ("prompt", "completion") and isinstance(v, str | int | float | bool)}
    return prompt, completion, meta


CONVERTERS = {"commitpackft": _commitpackft, "sri": _sri, "messages": _messages_row,
              "prompt-completion": _prompt_completion}


@dataclass
class ImportResult:
    dataset: ImportedDataset
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {**self.dataset.to_dict(), "created": self.created}


def _rows(path: Path, fmt: str, stage: str, skipped: Counter[str]) -> Iterator[ImportedRow]:
    convert = CONVERTERS[fmt]
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadInput(f"line {line_no} is not UTF-8 ({exc.reason}); nothing was imported", path=path) from exc
            if not text.strip():
                continue
            try:
                row = json.loads(text)
                if not isinstance(row, dict):
                    raise TypeError("a line must hold a JSON object")
                prompt, completion, meta = convert(row)
            except _Skip as why:
                skipped[str(why)] += 1
                continue
            except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
                raise BadInput(f"line {line_no} is not a {fmt} row: {exc}; nothing was imported", path=path,
                               hint=f"fix or remove line {line_no}, then import again") from exc
            yield ImportedRow(line_no=line_no, prompt=prompt, completion=completion, meta=meta,
                              content_hash=content_hash("sft", stage, prompt, completion))


def import_dataset(db: Database, path: Path | str, *, fmt: str, license: str, slot: str = "execute-code",
                   name: str | None = None) -> ImportResult:
    """Import ``path`` as an external source of ``slot``'s SFT data, all of it or nothing.

    The same file in the same format for the same slot is imported once (by sha256).
    Raises ``BadInput`` for an unknown format or slot, a missing file, a taken name or a
    malformed line (with its number).
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise BadInput(f"unknown import format '{fmt}'", hint=f"use one of {', '.join(FORMATS)}")
    if slot not in SLOTS:
        raise BadInput(f"unknown adapter slot '{slot}'", hint=f"use one of {', '.join(SLOTS)}")
    if not path.is_file():
        raise BadInput("no such file", path=path, hint="give the JSONL file (e.g. on the USB stick)")
    if not license.strip():
        raise BadInput("an import needs its licence", hint="pass --license, e.g. --license Apache-2.0")
    digest = sha256_file(path)
    existing = tsql.find_import(db, sha256=digest, fmt=fmt, slot=slot)
    if existing is not None:
        return ImportResult(existing, False)
    name = name or path.name.split(".")[0]
    if tsql.find_import(db, name=name) is not None:
        raise BadInput(f"an import named '{name}' exists already", hint="give another one with --name")
    stage = SLOT_STAGES.get(slot, slot)
    skipped: Counter[str] = Counter()
    with db.write() as conn:
        ds_id = tsql.insert_import(conn, name=name, fmt=fmt, slot=slot, license=license.strip(),
                                   source_file=str(path), sha256=digest)
        n = 0
        batch: list[ImportedRow] = []
        for row in _rows(path, fmt, stage, skipped):
            batch.append(row)
            if len(batch) >= INSERT_BATCH:
                n += tsql.insert_imported_rows(conn, ds_id, batch)
                batch.clear()
        n += tsql.insert_imported_rows(conn, ds_id, batch)
        if n == 0:
            raise BadInput(f"no usable row ({dict(skipped) or 'the file is empty'}); nothing was imported", path=path)
        tsql.close_import(conn, ds_id, n, dict(skipped))
    found = tsql.find_import(db, name=name)
    assert found is not None
    return ImportResult(found, True)
