"""One call for every LLM use in cra: ``LLMClient.complete(messages, *, stage, ...)``.

Why one call: the pipeline's stages, the test generator and later the trained adapters
all talk to a model the same way, so a provider (in-process llama.cpp, or an
OpenAI-compatible server such as vLLM or llama-server) is a setting, not a code path, and
every request lands in the raw DB the same way (``calllog``): stage, run, task, attempt,
model, adapter, prompt, answers, token counts, latency, temperature, seed, outcome.

Failures are outcomes, not crashes. A timeout, a 5xx or a refused connection is recorded
and retried up to ``max_retries`` times, then raised as ``LLMUnavailable`` (an
``LLMError`` and an ``InfraError``): the server's failure, not the model's, which the
pipeline records as an ``infra_error`` run. Any other failed request (a 4xx, a library
error) is an ``LLMError`` the pipeline keeps as the run's failure kind. ``preflight()``
checks once, before any work, that a model server answers at all. An answer that does not match the
requested JSON schema is *returned* with ``status == "bad_output"`` (and recorded so):
the repair loop may still want to show it back to the model. A bad model path or a
missing optional extra is the user's to fix and raises ``BadInput`` / ``MissingExtra``.

The client never downloads anything: a model is a local GGUF path or a name a
configured server already serves.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from appliance.config import CONFIG_NAME, LLMConfig
from appliance.errors import BadInput, ConfigError, CraError, Failed, InfraError
from appliance.llm.routing import STAGE_SLOTS, AdapterRoutes, AdapterTarget
from appliance.status import CallStatus

if TYPE_CHECKING:
    from appliance.db.core import Database
    from appliance.llm.calllog import CallLog

RETRYABLE = (CallStatus.TIMEOUT, CallStatus.SERVER_ERROR, CallStatus.CONNECTION_ERROR)
"""Statuses worth retrying; still failing after every retry, they are the server's fault."""
MAX_BACKOFF_S = 30.0

Messages = list[dict[str, Any]]


# ------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Request:
    """What a provider is asked: one prompt, ``n`` samples, seeds ``seed``, ``seed + 1`` ..."""

    messages: Messages
    temperature: float
    n: int
    max_tokens: int
    seed: int
    timeout_s: float
    json_schema: dict[str, Any] | None = None
    adapter: str | None = None  # logged; without routes also what the provider uses (a path or a name)
    target: AdapterTarget | None = None  # with routes: the adapter version, for each engine's field


@dataclass
class ProviderResult:
    """A provider's answer. ``prompt_tokens`` counts the prompt once; completions are summed."""

    texts: list[str]
    finish_reasons: list[str | None]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ProviderError(Failed):
    """A request that got no usable answer; ``status`` says why, ``retryable`` if worth retrying."""

    def __init__(self, status: str, message: str, *, retryable: bool | None = None):
        super().__init__(message)
        self.status = status
        self.retryable = status in RETRYABLE if retryable is None else retryable


class LLMError(Failed):
    """A request that failed every try: a recorded outcome the pipeline keeps as the run's failure."""

    def __init__(self, status: str, message: str, *, stage: str, tries: int, call_ids: list[int]):
        super().__init__(message, hint="each try is in the llm_calls table; check the model or the server")
        self.status = status
        self.stage = stage
        self.tries = tries
        self.call_ids = call_ids


class LLMUnavailable(LLMError, InfraError):
    """Every try timed out, got a 5xx or could not connect: the server failed, not the model."""


@dataclass
class Completion:
    """The answer to one ``complete()``: ``n`` texts and what they cost."""

    texts: list[str]
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    model: str
    adapter: str | None
    finish_reasons: list[str | None]
    seed: int
    status: str = "ok"  # "ok", or "bad_output" when a text fails the requested schema
    errors: list[str | None] = field(default_factory=list)  # per text: why it failed the schema
    call_id: int | None = None  # the llm_calls row, when logged

    @property
    def text(self) -> str:
        return self.texts[0]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def valid_texts(self) -> list[str]:
        """The texts that passed the schema (all of them when none was asked for)."""
        return [t for t, e in zip(self.texts, self.errors, strict=True) if e is None]


class Provider(Protocol):
    """What the client needs from a backend. Providers raise ``ProviderError`` for failures."""

    name: str
    model: str

    def generate(self, request: Request) -> ProviderResult: ...

    def close(self) -> None: ...


class Pingable(Protocol):
    """A provider that can say cheaply whether it answers at all (a server's ``GET /models``).
    Raises ``ProviderError``; in-process providers need no ping."""

    def ping(self, timeout_s: float) -> None: ...


@dataclass(frozen=True)
class CallContext:
    """Where a call belongs: run, task (repo id + commit sha) and attempt."""

    run_id: int | None = None
    repo_id: int | None = None
    sha: str | None = None
    attempt: int = 1


# ------------------------------------------------------------------------------ checks


def _check_messages(messages: Any) -> Messages:
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise BadInput("messages must be a non-empty list of {role, content} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise BadInput(f"message {i} must be an object with string 'role' and 'content'")
        out.append(dict(m))
    return out


def schema_errors(texts: list[str], schema: dict[str, Any] | None) -> list[str | None]:
    """Per text: None when it is one JSON value valid under ``schema``, else why not.

    Strict on purpose: a constrained model writes the JSON and nothing else, so prose or
    a fence around it means the constraint did not hold, and that is worth knowing.
    """
    if schema is None:
        return [None] * len(texts)
    import jsonschema
    from jsonschema.exceptions import best_match

    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    out: list[str | None] = []
    for text in texts:
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            head = (text or "")[:60]
            out.append(f"not JSON ({exc.msg if hasattr(exc, 'msg') else exc}): {head!r}")
            continue
        error = best_match(validator.iter_errors(value))
        if error is None:
            out.append(None)
        else:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            out.append(f"schema: {where}: {error.message[:200]}")
    return out


# ------------------------------------------------------------------------------ client


class LLMClient:
    """A provider, the retry policy and the call log; ``bound()`` adds run/task context."""

    def __init__(self, provider: Provider, *, config: LLMConfig | None = None,
                 log: CallLog | Database | None = None, sleep: Any = time.sleep,
                 routes: AdapterRoutes | None = None):
        from appliance.llm.calllog import as_call_log

        self.provider = provider
        self.config = config or LLMConfig()
        self.log = as_call_log(log)
        self._sleep = sleep
        self.routes = routes

    @classmethod
    def from_config(cls, config: LLMConfig, *, log: CallLog | Database | None,
                    routes: AdapterRoutes | None = None) -> LLMClient:
        """The client for ``[llm]``; ``ConfigError`` when no provider is configured.

        With ``routes`` every call's adapter is a slot (``adapter="plan"``, or the call's
        stage through ``STAGE_SLOTS``) resolved to that slot's routed version.
        """
        from appliance.llm.providers import make_provider

        if not config.configured:
            raise ConfigError("no LLM is configured", path=CONFIG_NAME,
                              hint="set [llm] provider and model, or pass --model PATH / --endpoint URL")
        return cls(make_provider(config), config=config, log=log, routes=routes)

    @property
    def adapter_label(self) -> str:
        """What the routes amount to, for a run's key (e.g. ``active:plan@v3``); empty without."""
        return self.routes.label if self.routes is not None else ""

    def _route(self, stage: str, adapter: str | None) -> tuple[str | None, AdapterTarget | None]:
        """(the adapter as logged, the routed version) for one call."""
        if self.routes is None:
            return adapter or None, None
        if adapter and adapter not in STAGE_SLOTS.values():
            raise BadInput(f"adapter {adapter!r} is not an adapter slot",
                           hint=f"with routed adapters, name a slot: {', '.join(sorted(STAGE_SLOTS.values()))}")
        target = self.routes.for_slot(adapter) if adapter else self.routes.for_stage(stage)
        return (target.label if target else None), target

    def describe(self) -> str:
        return f"{self.provider.name} {self.provider.model}"

    def preflight(self, timeout_s: float = 30.0) -> None:
        """Check that the model server answers at all, before any work starts.

        Raises ``InfraError`` naming the server when it cannot be reached, times out or
        answers 5xx, so a command fails at once instead of recording every task as a
        failure. A provider without ``ping`` (in process) passes.
        """
        ping = getattr(self.provider, "ping", None)
        if ping is None:
            return
        limit = min(timeout_s, self.config.timeout_s) if self.config.timeout_s > 0 else timeout_s
        try:
            ping(limit)
        except ProviderError as exc:
            if exc.status == CallStatus.BAD_REQUEST:  # it answered: a 4xx is no outage
                return
            where = getattr(self.provider, "base", self.describe())
            raise InfraError(f"the model server at {where} is not available: {exc}",
                             hint="start it (or fix --endpoint / [llm] endpoint) and run the command "
                                  "again; nothing was run") from exc

    def close(self) -> None:
        self.provider.close()

    def bound(self, *, run_id: int | None = None, repo_id: int | None = None,
              sha: str | None = None, attempt: int | None = None) -> BoundClient:
        return BoundClient(self, CallContext()).bound(run_id=run_id, repo_id=repo_id, sha=sha, attempt=attempt)

    def for_run(self, run: Any, *, attempt: int = 1) -> BoundClient:
        """The view for one attempt of a run (an ``appliance.db.runs.RunRecord``)."""
        return self.bound(run_id=run.id, repo_id=run.repo_id, sha=run.sha, attempt=attempt)

    def complete(self, messages: Messages, *, stage: str, temperature: float = 0.2, n: int = 1,
                 max_tokens: int = 512, json_schema: dict[str, Any] | None = None,
                 adapter: str | None = None, seed: int | None = None) -> Completion:
        return self._complete(CallContext(), messages, stage=stage, temperature=temperature, n=n,
                              max_tokens=max_tokens, json_schema=json_schema, adapter=adapter, seed=seed)

    def _complete(self, ctx: CallContext, messages: Messages, *, stage: str, temperature: float,
                  n: int, max_tokens: int, json_schema: dict[str, Any] | None,
                  adapter: str | None, seed: int | None) -> Completion:
        from appliance.llm.calllog import call_record

        msgs = _check_messages(messages)
        if not isinstance(stage, str) or not stage.strip():
            raise BadInput("every LLM call names its stage (scope, plan, execute, ...)")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise BadInput(f"n must be an integer >= 1, not {n!r}")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise BadInput(f"max_tokens must be an integer >= 1, not {max_tokens!r}")
        if not isinstance(temperature, int | float) or temperature < 0:
            raise BadInput(f"temperature must be a number >= 0, not {temperature!r}")
        if json_schema is not None and not isinstance(json_schema, dict):
            raise BadInput("json_schema must be a JSON schema object")
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        label, target = self._route(stage, adapter)
        request = Request(messages=msgs, temperature=float(temperature), n=n, max_tokens=max_tokens,
                          seed=seed, timeout_s=float(self.config.timeout_s), json_schema=json_schema,
                          adapter=label, target=target)
        tries = 1 + self.config.max_retries
        call_ids: list[int] = []
        for try_no in range(1, tries + 1):
            started = time.monotonic()
            try:
                result = self.provider.generate(request)
            except ProviderError as exc:
                latency = time.monotonic() - started
                call_ids.append(self.log.record(call_record(
                    ctx, self.provider, request, stage=stage, try_no=try_no, latency_s=latency,
                    status=exc.status, error=str(exc))))
                if exc.retryable and try_no < tries:
                    self._sleep(min(self.config.retry_backoff_s * 2 ** (try_no - 1), MAX_BACKOFF_S))
                    continue
                error_class = LLMUnavailable if exc.status in RETRYABLE else LLMError
                raise error_class(
                    exc.status,
                    f"the {stage} call to {self.describe()} failed after {try_no} "
                    f"{'try' if try_no == 1 else 'tries'}: {exc.status}: {exc}",
                    stage=stage, tries=try_no, call_ids=call_ids,
                ) from exc
            except CraError as exc:  # a bad model path, a missing extra: the user's to fix
                self.log.record(call_record(
                    ctx, self.provider, request, stage=stage, try_no=try_no,
                    latency_s=time.monotonic() - started, status="error", error=str(exc)))
                raise
            except Exception as exc:  # a library failure: recorded, then a typed outcome
                call_ids.append(self.log.record(call_record(
                    ctx, self.provider, request, stage=stage, try_no=try_no,
                    latency_s=time.monotonic() - started, status="error",
                    error=f"{type(exc).__name__}: {exc}")))
                raise LLMError("error", f"the {stage} call to {self.describe()} failed: "
                               f"{type(exc).__name__}: {exc}", stage=stage, tries=try_no,
                               call_ids=call_ids) from exc
            latency = time.monotonic() - started
            errors = schema_errors(result.texts, json_schema)
            bad = [i for i, e in enumerate(errors) if e is not None]
            status = "bad_output" if bad else "ok"
            error_text = "; ".join(f"sample {i}: {errors[i]}" for i in bad) or None
            call_id = self.log.record(call_record(
                ctx, self.provider, request, stage=stage, try_no=try_no, latency_s=latency,
                status=status, error=error_text, result=result))
            return Completion(
                texts=result.texts, prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens, latency_s=round(latency, 4),
                model=self.provider.model, adapter=request.adapter,
                finish_reasons=result.finish_reasons, seed=seed, status=status, errors=errors,
                call_id=call_id,
            )
        raise AssertionError("unreachable: the loop returns or raises")


class BoundClient:
    """A light view of a client with run/task/attempt context; cheap to make per stage."""

    def __init__(self, client: LLMClient, context: CallContext):
        self.client = client
        self.context = context

    def bound(self, *, run_id: int | None = None, repo_id: int | None = None,
              sha: str | None = None, attempt: int | None = None) -> BoundClient:
        """A new view; arguments left out keep this view's values."""
        ctx = self.context
        return BoundClient(self.client, CallContext(
            run_id=ctx.run_id if run_id is None else run_id,
            repo_id=ctx.repo_id if repo_id is None else repo_id,
            sha=ctx.sha if sha is None else sha,
            attempt=ctx.attempt if attempt is None else attempt,
        ))

    def complete(self, messages: Messages, *, stage: str, temperature: float = 0.2, n: int = 1,
                 max_tokens: int = 512, json_schema: dict[str, Any] | None = None,
                 adapter: str | None = None, seed: int | None = None) -> Completion:
        return self.client._complete(self.context, messages, stage=stage, temperature=temperature,
                                     n=n, max_tokens=max_tokens, json_schema=json_schema,
                                     adapter=adapter, seed=seed)

    def describe(self) -> str:
        return self.client.describe()
