"""A provider that answers from a script: for tests of the orchestration around the model.

The repair loop, pollution stripping, edit application and resumption are about what
the pipeline does *with* answers; a scripted provider makes those answers exact (a real
edit to a real repo, then a wrong one, then garbage) while everything else stays real:
the client's retries, schema checks and the call log run as with a real model. It is
never the only test of a stage: the model-backed tests use the tiny GGUF model.

A script is a list consumed one sample at a time, or a callable ``f(request, index)``.
An item can be a string (the answer), a ``ProviderError`` (raised: a scripted timeout or
server error) or a callable ``f(request) -> str``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from appliance.errors import Failed
from appliance.llm.client import ProviderError, ProviderResult, Request

Answer = str | ProviderError | Callable[[Request], str]


class ScriptExhausted(Failed):
    """The test asked the scripted model more often than its script allows."""


class ScriptedProvider:
    name = "scripted"

    def __init__(self, script: Iterable[Answer] | Callable[[Request, int], str], *, model: str = "scripted"):
        self.model = model
        self._fn: Callable[[Request, int], str] | None = script if callable(script) else None
        self._items: list[Answer] = [] if callable(script) else list(script)
        self.requests: list[Request] = []  # every request, in order, as the client sent it
        self.answered = 0

    @property
    def remaining(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Nothing to free."""

    def _next(self, request: Request) -> str:
        if self._fn is not None:
            return self._fn(request, self.answered)
        if not self._items:
            raise ScriptExhausted(f"the scripted model has no answer left after {self.answered}",
                                  hint="add answers to the script")
        item = self._items.pop(0)
        if isinstance(item, ProviderError):
            raise item
        return item(request) if callable(item) else item

    def generate(self, request: Request) -> ProviderResult:
        self.requests.append(request)
        texts = []
        for _ in range(request.n):
            texts.append(self._next(request))
            self.answered += 1
        # Words, not tokens: a scripted model has no tokenizer; the columns stay comparable.
        prompt = sum(len(str(m.get("content", "")).split()) for m in request.messages)
        return ProviderResult(texts=texts, finish_reasons=["stop"] * len(texts), prompt_tokens=prompt,
                              completion_tokens=sum(len(t.split()) for t in texts))


def scripted(*answers: Any, model: str = "scripted") -> ScriptedProvider:
    """``scripted("a", "b")``: the shortest way to script a model in a test."""
    return ScriptedProvider(list(answers), model=model)
