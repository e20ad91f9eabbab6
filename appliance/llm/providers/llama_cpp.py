"""The embedded default: a GGUF model run in this process by llama-cpp-python.

Models are loaded once per (model, adapter) and kept for the process: loading a real
model takes seconds to minutes, a pipeline run makes thousands of calls. A LoRA adapter
is a GGUF file too (``convert_lora_to_gguf.py``) given by path; llama.cpp applies it at
load time, which is why the adapter is part of the cache key.

JSON-schema constrained output goes through ``response_format={"type": "json_object",
"schema": ...}``, which llama-cpp-python turns into a grammar: the model cannot write a
file name the schema does not list. ``n`` samples are ``n`` calls with seeds ``seed``,
``seed + 1`` ... so a sample is reproducible alone.

The timeout is checked between tokens (a ``Llama`` subclass wraps the public
``generate`` generator); the prompt's own evaluation cannot be interrupted, so a
timeout fires at the first token after the deadline. ``llama_cpp`` is imported lazily:
without the ``llama`` extra only this provider is unavailable.
"""

from __future__ import annotations

import atexit
import threading
import time
from pathlib import Path
from typing import Any

from appliance.errors import BadInput, MissingExtra
from appliance.llm.client import ProviderError, ProviderResult, Request

GGUF_MAGIC = b"GGUF"

_CACHE: dict[tuple[str, str, int, int], Any] = {}
_CACHE_LOCK = threading.Lock()
_ATEXIT = False


def check_gguf(path: str | Path, *, what: str = "model") -> Path:
    """``path`` as an existing GGUF file, or ``BadInput`` naming it and the fix."""
    p = Path(path).expanduser()
    if not p.exists():
        raise BadInput(f"the {what} file does not exist", path=p,
                       hint="cra never downloads models: give the path of a local .gguf file")
    if not p.is_file():
        raise BadInput(f"the {what} path is not a file", path=p, hint="give the path of a .gguf file")
    with p.open("rb") as fh:
        head = fh.read(4)
    if head != GGUF_MAGIC:
        raise BadInput(
            f"the {what} file is not GGUF (it starts with {head!r})", path=p,
            hint="convert it with llama.cpp's convert_hf_to_gguf.py (a LoRA with convert_lora_to_gguf.py)",
        )
    return p.resolve()


class _DeadlineExceeded(Exception):
    """Raised between two tokens once the request's deadline has passed."""


_LLAMA_CLASS: Any = None


def _llama_class() -> Any:
    global _LLAMA_CLASS
    if _LLAMA_CLASS is not None:
        return _LLAMA_CLASS
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise MissingExtra("the llama_cpp provider", "llama", detail=str(exc)) from exc

    class DeadlineLlama(Llama):  # type: ignore[misc, valid-type]
        """``Llama`` whose token generator gives up once ``cra_deadline`` has passed."""

        cra_deadline: float | None = None

        def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Any:
            for token in super().generate(tokens, *args, **kwargs):
                if self.cra_deadline is not None and time.monotonic() > self.cra_deadline:
                    raise _DeadlineExceeded()
                yield token

    _LLAMA_CLASS = DeadlineLlama
    return _LLAMA_CLASS


def load_model(model: Path, adapter: Path | None, *, n_ctx: int, n_threads: int) -> Any:
    """The loaded model for (model, adapter), from the process cache when it is there."""
    global _ATEXIT
    key = (str(model), str(adapter or ""), n_ctx, n_threads)
    with _CACHE_LOCK:
        llm = _CACHE.get(key)
        if llm is None:
            cls = _llama_class()
            kwargs: dict[str, Any] = {"model_path": str(model), "n_ctx": n_ctx, "verbose": False}
            if adapter is not None:
                kwargs["lora_path"] = str(adapter)
            if n_threads:
                kwargs["n_threads"] = n_threads
            try:
                llm = cls(**kwargs)
            except ValueError as exc:  # llama.cpp could not read the file
                raise BadInput(f"llama.cpp cannot load it: {exc}", path=adapter or model,
                               hint="is it a model (or LoRA) in a GGUF version this llama.cpp reads?") from exc
            llm.cra_lock = threading.Lock()  # a llama.cpp context serves one request at a time
            if not _ATEXIT:
                _ATEXIT = True
                # Free models while llama_cpp is still importable: freed later, during
                # interpreter teardown, llama-cpp-python's finalisers raise TypeErrors.
                atexit.register(clear_cache)
            _CACHE[key] = llm
        return llm


def clear_cache() -> None:
    """Free every loaded model (tests; a long-lived process switching models)."""
    with _CACHE_LOCK:
        for llm in _CACHE.values():
            close = getattr(llm, "close", None)
            if close is not None:
                close()
        _CACHE.clear()


def cached_models() -> list[tuple[str, str]]:
    with _CACHE_LOCK:
        return [(k[0], k[1]) for k in _CACHE]


class LlamaCppProvider:
    """In-process llama.cpp on a GGUF file."""

    name = "llama_cpp"

    def __init__(self, model: str | Path, *, n_ctx: int = 4096, n_threads: int = 0):
        self.model_path = check_gguf(model, what="model")
        self.model = str(self.model_path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        _llama_class()  # a missing extra is reported now, not at the first call

    def close(self) -> None:
        """Models stay cached for the process; ``clear_cache()`` frees them."""

    def _adapter(self, request: Request) -> Path | None:
        """The adapter GGUF of a routed version (checked against this base), or the legacy path."""
        target = request.target
        if target is None:
            return check_gguf(request.adapter, what="adapter") if request.adapter else None
        if not target.gguf:
            raise BadInput(f"{target.label} has no GGUF copy, which in-process llama.cpp needs",
                           hint="train it again with [training] gguf = true, or serve it with vLLM")
        if target.base_gguf and Path(target.base_gguf).expanduser().resolve() != self.model_path:
            raise BadInput(f"{target.label} was trained for the base {target.base_gguf}, not {self.model}",
                           hint="pass that base model with --model (a LoRA only fits its own base)")
        return check_gguf(target.gguf, what="adapter")

    def generate(self, request: Request) -> ProviderResult:
        adapter = self._adapter(request)
        llm = load_model(self.model_path, adapter, n_ctx=self.n_ctx, n_threads=self.n_threads)
        deadline = time.monotonic() + request.timeout_s if request.timeout_s > 0 else None
        kwargs: dict[str, Any] = {"temperature": request.temperature, "max_tokens": request.max_tokens}
        if request.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        with llm.cra_lock:
            return self._samples(llm, request, deadline, kwargs)

    def _samples(self, llm: Any, request: Request, deadline: float | None,
                 kwargs: dict[str, Any]) -> ProviderResult:
        texts: list[str] = []
        reasons: list[str | None] = []
        prompt_tokens: int | None = None
        completion_tokens = 0
        for i in range(request.n):
            llm.cra_deadline = deadline
            try:
                out = llm.create_chat_completion(request.messages, seed=(request.seed + i) % 2**31, **kwargs)
            except _DeadlineExceeded:
                raise ProviderError(
                    "timeout", f"no answer within {request.timeout_s:g} s "
                    f"({len(texts)} of {request.n} samples done)") from None
            except ValueError as exc:
                if "context window" in str(exc):  # the prompt does not fit n_ctx
                    raise ProviderError("bad_request", f"{exc} (raise [llm] n_ctx)", retryable=False) from exc
                raise
            finally:
                llm.cra_deadline = None
            choice = out["choices"][0]
            texts.append(choice["message"].get("content") or "")
            reasons.append(choice.get("finish_reason"))
            usage = out.get("usage") or {}
            if prompt_tokens is None:
                prompt_tokens = usage.get("prompt_tokens")
            completion_tokens += int(usage.get("completion_tokens") or 0)
        return ProviderResult(texts=texts, finish_reasons=reasons, prompt_tokens=prompt_tokens,
                              completion_tokens=completion_tokens)
