"""An OpenAI-compatible chat server over HTTP: vLLM, llama.cpp's llama-server, llama-cpp-python.

Plain ``urllib`` (no SDK: the core install has no extra dependency) with proxies
switched off, because cra's runtime must never reach past the host the user configured;
there is no default host at all.

The adapter is chosen per request by *model name*: vLLM serves each LoRA module under
its own name (``--lora-modules name=path``), llama-cpp-python's server serves each
``model_alias`` of its config file. With ``check_models`` the name is first looked up in
``GET /models``, because llama-cpp-python's server silently answers an unknown name with
its default model, which would put the wrong model's answers in the DB.

Structured output. Servers disagree on the wire format of a JSON schema:

* ``json_schema`` (OpenAI's): ``response_format={"type": "json_schema", "json_schema":
  {"name": ..., "schema": ...}}``; vLLM (every version with structured outputs), llama.cpp's
  llama-server, SGLang accept it; llama-cpp-python's server rejects it.
* ``json_object_schema`` (llama-cpp-python's): ``response_format={"type": "json_object",
  "schema": ...}``; llama-server accepts it too; vLLM reads it as "any JSON".
* ``guided_json`` (vLLM before 0.11) and ``structured_outputs={"json": ...}`` (vLLM 0.11
  on): vLLM's own fields; other servers ignore them.

No single body is schema-constrained on all of them, and sending two kinds at once makes
vLLM refuse the request ("only one kind of structured outputs"). So ``auto`` sends
``json_schema`` and, when a server refuses it with 400/422, switches to
``json_object_schema`` for the rest of the provider's life (llama-cpp-python's server
answers that refusal with a 500 whose message names ``response_format``); the other
modes are fixed.

``n``: vLLM returns ``n`` choices; llama-cpp-python's server ignores ``n`` and returns
one, so missing samples are asked for one by one with seeds ``seed + i``.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from appliance.config import check_endpoint
from appliance.errors import BadInput
from appliance.llm.client import ProviderError, ProviderResult, Request
from appliance.llm.routing import AdapterTarget

ERROR_BODY_CHARS = 600


def normalise_base(url: str) -> str:
    """``http://host:port`` and ``http://host:port/`` mean ``http://host:port/v1``."""
    check_endpoint(url)
    parts = urlsplit(url)
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def response_format_body(schema: dict[str, Any], mode: str) -> dict[str, Any]:
    """The request fields that carry ``schema`` in structured-output ``mode``."""
    if mode in ("auto", "json_schema"):
        name = str(schema.get("title") or "output").replace(" ", "_")[:64]
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": name, "schema": schema, "strict": True}}}
    if mode == "json_object_schema":
        return {"response_format": {"type": "json_object", "schema": schema}}
    if mode == "guided_json":
        return {"guided_json": schema}
    if mode == "structured_outputs":
        return {"structured_outputs": {"json": schema}}
    raise ValueError(f"unknown structured output mode {mode!r}")


def _refuses_format(exc: ProviderError) -> bool:
    """A server refusing ``response_format`` type json_schema: 400/422 from most servers,
    500 with the validation message from llama-cpp-python's (its error handler turns
    request validation errors into 500s)."""
    status = getattr(exc, "http_status", None)
    body = getattr(exc, "body", "")
    return status in (400, 422) or (status == 500 and "response_format" in body)


class OpenAICompatProvider:
    """Chat completions from a configured server; model (or adapter) chosen by name."""

    name = "openai_compat"

    def __init__(self, endpoint: str, model: str, *, api_key: str | None = None,
                 structured_output: str = "auto", check_models: bool = True):
        if not model:
            raise BadInput("the openai_compat provider needs the name of a served model",
                           hint="set [llm] model, e.g. the name vLLM was started with (--served-model-name)")
        self.base = normalise_base(endpoint)
        self.model = model
        self.api_key = api_key
        self.mode = structured_output
        self.check_models = check_models
        self._served: set[str] | None = None
        # No proxies: a loopback or LAN endpoint must be reached directly, never via a proxy.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def from_config(cls, config: Any) -> OpenAICompatProvider:
        api_key = None
        if config.api_key_env:
            api_key = os.environ.get(config.api_key_env)
            if not api_key:
                raise BadInput(f"[llm] api_key_env names ${config.api_key_env}, which is not set",
                               hint=f"export {config.api_key_env}=... or clear api_key_env")
        return cls(config.endpoint, config.model, api_key=api_key,
                   structured_output=config.structured_output, check_models=config.check_models)

    def close(self) -> None:
        """Nothing to free: every request opens and closes its own connection."""

    # -- HTTP ---------------------------------------------------------------------------

    def _http(self, method: str, path: str, body: dict[str, Any] | None, timeout: float,
              base: str | None = None) -> Any:
        """JSON in, JSON out; every failure a ``ProviderError`` with its status."""
        data = json.dumps(body).encode("utf-8") if body is not None else None
        req = urllib.request.Request((base or self.base) + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with self._opener.open(req, timeout=timeout if timeout > 0 else None) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")[:ERROR_BODY_CHARS]
            status = ("timeout" if exc.code == 408 else
                      "server_error" if exc.code >= 500 or exc.code == 429 else "bad_request")
            err = ProviderError(status, f"HTTP {exc.code} from {self.base}{path}: {text.strip()}")
            err.http_status = exc.code  # type: ignore[attr-defined]
            err.body = text  # type: ignore[attr-defined]
            raise err from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise ProviderError("timeout", f"no answer from {self.base} within {timeout:g} s") from None
            raise ProviderError("connection_error", f"cannot reach {self.base}: {exc.reason}") from None
        except TimeoutError:  # socket.timeout is an alias
            raise ProviderError("timeout", f"no answer from {self.base} within {timeout:g} s") from None
        except (ConnectionError, http.client.HTTPException) as exc:
            raise ProviderError("connection_error",
                                f"the connection to {self.base} broke: {type(exc).__name__}: {exc}") from None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            head = raw[:120].decode("utf-8", "replace")
            raise ProviderError("server_error", f"{self.base}{path} answered with something that is not "
                                f"JSON: {head!r}") from None

    def served_models(self, timeout: float = 30.0) -> set[str] | None:
        """Names from ``GET /models``; None when the server has no such listing."""
        try:
            data = self._http("GET", "/models", None, timeout)
        except ProviderError as exc:
            if exc.status == "bad_request":  # 404: a server without /models
                return None
            raise
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return None
        return {str(item.get("id")) for item in items if isinstance(item, dict) and item.get("id")}

    def ping(self, timeout_s: float) -> None:
        """One ``GET /models``: raises ``ProviderError`` (connection_error, timeout,
        server_error) when the server does not answer; a 404 means a server without a
        listing, which is alive."""
        self.served_models(timeout_s)

    def _check_name(self, name: str, timeout: float) -> None:
        if not self.check_models:
            return
        if self._served is None or name not in self._served:
            self._served = self.served_models(timeout)
        if self._served is not None and name not in self._served:
            raise BadInput(
                f"the server at {self.base} does not serve a model named {name!r}",
                hint=f"it serves: {', '.join(sorted(self._served)) or 'nothing'}; for vLLM start it "
                     "with --lora-modules NAME=PATH, for llama-cpp-python add a model_alias",
            )

    # -- chat ---------------------------------------------------------------------------

    def lora_ids(self, timeout: float = 30.0) -> dict[str, int] | None:
        """llama-server's ``GET /lora-adapters`` (at the server root) as {real path: id}; None elsewhere."""
        try:
            data = self._http("GET", "/lora-adapters", None, timeout, base=self.base.removesuffix("/v1"))
        except ProviderError as exc:
            if exc.status == "bad_request":  # 404: not llama-server
                return None
            raise
        if not isinstance(data, list):
            return None
        return {os.path.realpath(str(a["path"])): int(a["id"]) for a in data
                if isinstance(a, dict) and "path" in a and "id" in a}

    def _target_fields(self, target: AdapterTarget, timeout: float) -> tuple[str, dict[str, Any]]:
        """(model name, extra body fields) that select ``target`` on this server.

        vLLM and llama-cpp-python's server list the version under its name in ``/models``;
        llama-server lists its ``--lora`` files under ``/lora-adapters`` and takes a
        per-request ``lora`` list (adapters it does not name get scale 0).
        """
        if self._served is None or target.name not in self._served:
            self._served = self.served_models(timeout)
        if self._served is None or target.name in self._served:
            return target.name, {}
        ids = self.lora_ids(timeout) if target.gguf else None
        if ids and os.path.realpath(target.gguf or "") in ids:
            return self.model, {"lora": [{"id": ids[os.path.realpath(target.gguf or "")], "scale": 1.0}]}
        raise BadInput(
            f"the server at {self.base} serves neither a model named {target.name!r} nor its LoRA file",
            hint="start it with 'cra serve' from this CRA_HOME (it serves the active and candidate versions); "
                 f"it serves: {', '.join(sorted(self._served)) or 'nothing'}")

    def _body(self, request: Request, name: str, n: int, seed: int,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": name, "messages": request.messages, "temperature": request.temperature,
            "max_tokens": request.max_tokens, "seed": seed, "n": n, "stream": False, **(extra or {}),
        }
        if request.json_schema is not None:
            body.update(response_format_body(request.json_schema, self.mode))
        return body

    def _chat(self, request: Request, name: str, n: int, seed: int,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            return self._http("POST", "/chat/completions", self._body(request, name, n, seed, extra),
                              request.timeout_s)
        except ProviderError as exc:
            if self.mode == "auto" and request.json_schema is not None and _refuses_format(exc):
                # llama-cpp-python's server knows only json_object+schema; remember that.
                self.mode = "json_object_schema"
                return self._http("POST", "/chat/completions", self._body(request, name, n, seed, extra),
                                  request.timeout_s)
            raise

    def generate(self, request: Request) -> ProviderResult:
        extra: dict[str, Any] = {}
        if request.target is not None:
            name, extra = self._target_fields(request.target, request.timeout_s)
        else:
            name = request.adapter or self.model
            self._check_name(name, request.timeout_s)
        texts: list[str] = []
        reasons: list[str | None] = []
        prompt_tokens: int | None = None
        completion_tokens: int | None = 0
        while len(texts) < request.n:
            first = not texts
            data = self._chat(request, name, request.n if first else 1, request.seed + len(texts), extra)
            choices = data.get("choices") if isinstance(data, dict) else None
            if not isinstance(choices, list) or not choices:
                raise ProviderError("server_error", f"{self.base} answered without choices: "
                                    f"{json.dumps(data)[:200]}")
            for choice in choices[: request.n - len(texts)]:
                message = choice.get("message") or {}
                texts.append(message.get("content") or "")
                reasons.append(choice.get("finish_reason"))
            usage = data.get("usage") or {}
            if prompt_tokens is None:
                prompt_tokens = usage.get("prompt_tokens")
            if completion_tokens is not None and usage.get("completion_tokens") is not None:
                completion_tokens += int(usage["completion_tokens"])
            else:
                completion_tokens = None
        return ProviderResult(texts=texts, finish_reasons=reasons, prompt_tokens=prompt_tokens,
                              completion_tokens=completion_tokens)
