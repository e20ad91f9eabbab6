"""Error signatures: what makes two failed attempts "the same failure".

A signature is a short string built from what an attempt recorded: its outcome kind, and
then the apply-error reason (block numbers and paths dropped), the bad output's stage and
reason, the LLM error's status, or for failing tests the first failing test and the
exception type with its normalised message (numbers, quoted values, addresses and paths
replaced by placeholders, so ``KeyError: 'a'`` and ``KeyError: 'b'`` group together, as
SWE-bench's log parsers key failures by test and error class). Small functions in a table,
one per outcome kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

MAX_MESSAGE = 80

_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w.])")
_PATH = re.compile(r"(?:[\w.-]+/)+[\w.-]+")
_SPACE = re.compile(r"\s+")
_BLOCK = re.compile(r"^block \d+ \(([^)]*)\):\s*")
# "E   KeyError: 'x'" (pytest's long traceback) or "FAILED t.py::test - ValueError: bad" (short
# summary): one multi-line search over the whole log, the first match wins.
_EXCEPTION = re.compile(
    r"^[ \t]*(?:E[ \t]+((?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Failure|Warning|Interrupt))\b:?[ \t]*(.*)$"
    r"|(?:FAILED|ERROR)[ \t]+\S+[ \t]+-[ \t]+((?:[A-Za-z_]\w*\.)*[A-Z]\w*)\b:?[ \t]*(.*)$)", re.MULTILINE)


@lru_cache(maxsize=1 << 16)  # the same messages come back run after run
def normalise(message: str | None, limit: int = MAX_MESSAGE) -> str:
    """A message with its run-specific values replaced: the part that repeats."""
    text = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    text = _QUOTED.sub("'…'", text)
    text = _HEX.sub("0xN", text)
    text = _PATH.sub("PATH", text)
    text = _NUMBER.sub("N", text)
    return _SPACE.sub(" ", text).strip()[:limit]


def exception_of(output: str) -> tuple[str, str] | None:
    """(exception type, normalised message) of the first error a pytest log shows, or None."""
    match = _EXCEPTION.search(output)
    if match is None:
        return None
    kind, message = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
    return kind.rsplit(".", 1)[-1], normalise(message)


def _failing_test(validation: dict[str, Any]) -> str:
    if validation.get("failing"):
        return str(validation["failing"])
    for group in ("fail_to_pass", "pass_to_pass"):
        for node, outcome in sorted((validation.get(group) or {}).items()):
            if outcome != "passed":
                return node
    return ""


def _tests(v: dict[str, Any], a: dict[str, Any]) -> str:
    test = _failing_test(v)
    exc = exception_of(a.get("test_output") or "")
    what = f"{exc[0]}: {exc[1]}".rstrip(": ") if exc else "no exception shown"
    return f"{v.get('kind', 'tests_failed')}: {test or 'unknown test'}: {what}"


def _apply(v: dict[str, Any], a: dict[str, Any]) -> str:
    first = (a.get("apply_error") or v.get("error") or "").split(";")[0]
    return f"apply_error: {normalise(_BLOCK.sub('', first))}"


def _bad_output(v: dict[str, Any], a: dict[str, Any]) -> str:
    return f"bad_output[{v.get('stage', 'execute')}]: {normalise(v.get('error') or a.get('apply_error'))}"


def _llm(v: dict[str, Any], a: dict[str, Any]) -> str:
    return f"llm_error[{v.get('stage', '?')}]: {v.get('status', 'error')}"


def _plain(v: dict[str, Any], a: dict[str, Any]) -> str:
    return f"{v.get('kind') or a.get('apply_status')}: {normalise(v.get('error'))}".rstrip(": ")


SIGNATURES: dict[str, Callable[[dict[str, Any], dict[str, Any]], str]] = {
    "tests_failed": _tests,
    "timeout": _tests,
    "apply_error": _apply,
    "bad_output": _bad_output,
    "llm_error": _llm,
}


def signature(validation: dict[str, Any], attempt: dict[str, Any]) -> str:
    """The signature of one failed attempt.

    ``validation``: the attempt's validation JSON, or its parts (``kind``, ``stage``,
    ``error``, ``status``, and ``failing``: the first failing test); ``attempt``: its other
    columns (``apply_status``, ``apply_error``, ``test_output``).
    """
    kind = validation.get("kind") or attempt.get("apply_status") or "unknown"
    if attempt.get("apply_status") == "apply_error" and kind not in SIGNATURES:
        kind = "apply_error"
    return SIGNATURES.get(kind, _plain)(validation, attempt)
