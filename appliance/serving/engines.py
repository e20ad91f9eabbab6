"""The serving engines and how each one is told which adapters to load.

A ``ServeSet`` is what the registry says should be served: the base model and the
``active`` and ``candidate`` version of every slot (verified), each under its versioned
name (``plan-v3``). Serving both aliases means a promote from candidate to active needs
no restart on any engine: the client just asks for the other name.

* ``llama-cpp-python`` (the CPU default): its server's config file lists several
  models, each with a ``model_alias``; an adapter is the base GGUF plus ``lora_path``.
  The server loads one model at a time and swaps on demand. A version it was not started
  with needs a restart (the supervisor does it).
* ``llama-server``: ``--lora FILE`` per adapter with ``--lora-init-without-apply`` (no
  adapter applies unless a request's ``lora`` list names it); a new version needs a restart.
* ``vllm`` (CUDA): ``--enable-lora --lora-modules name=path ... --max-lora-rank R``, and
  with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` versions are loaded and unloaded at run time
  (``/v1/load_lora_adapter``, ``/v1/unload_lora_adapter``): no restart, ever.

Every engine listens on 127.0.0.1 only, runs with the hub and usage reporting switched
off, and never downloads a model.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from appliance.config import ServingConfig
from appliance.errors import BadInput, Failed, MissingExtra
from appliance.offline import offline_env
from appliance.status import ServeEngine

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServedAdapter:
    """One version as a server loads it. Paths are absolute."""

    slot: str
    version: int
    name: str                      # plan-v3
    aliases: tuple[str, ...]       # ("active",), ("candidate",) or both
    rank: int
    peft_dir: str
    gguf: str | None
    base_model: str                # HF folder (vLLM)
    base_gguf: str | None          # GGUF (llama.cpp engines)


@dataclass(frozen=True)
class ServeSet:
    """What to serve: the base (both forms, as far as known) and the adapters."""

    base_model: str | None
    base_gguf: str | None
    adapters: tuple[ServedAdapter, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(a.name for a in self.adapters)

    def bases(self) -> set[tuple[str | None, str | None]]:
        """The distinct (HF folder, GGUF) bases the adapters were trained on."""
        return {(a.base_model, a.base_gguf) for a in self.adapters}

    def base_name(self) -> str:
        """The served name of the base model: its file or folder name."""
        chosen = self.base_gguf or self.base_model or "base"
        return Path(chosen).name.removesuffix(".gguf")


@dataclass
class Launch:
    """How to start an engine: the command, its environment, and files written for it."""

    command: list[str]
    env: dict[str, str]
    files: list[Path] = field(default_factory=list)


class Engine:
    """One kind of server, started with a set and told about changes.

    ``restart_for(loaded, wanted)``: whether serving ``wanted`` needs a restart of a server
    that has ``loaded``. By default only a missing version or another base does: versions
    loaded but no longer aliased stay (harmless, and a rollback to them is instant).
    ``update`` applies ``wanted`` without a restart and returns what is loaded then.
    """

    kind: str = ""

    def check(self) -> None:
        """``MissingExtra``/``Failed`` naming what to install, before anything starts."""

    def launch(self, serve: ServeSet, port: int, config: ServingConfig, folder: Path) -> Launch:
        raise NotImplementedError

    def restart_for(self, loaded: ServeSet, wanted: ServeSet) -> bool:
        return ((loaded.base_model, loaded.base_gguf) != (wanted.base_model, wanted.base_gguf)
                or not wanted.names <= loaded.names)

    def update(self, loaded: ServeSet, wanted: ServeSet, port: int) -> ServeSet:
        return loaded


class LlamaCppPythonEngine(Engine):
    kind = ServeEngine.LLAMA_CPP_PYTHON

    def check(self) -> None:
        for module in ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
            if importlib.util.find_spec(module) is None:
                raise MissingExtra("cra serve --engine llama-cpp-python", "llama", detail=f"{module} is missing")

    def launch(self, serve: ServeSet, port: int, config: ServingConfig, folder: Path) -> Launch:
        if serve.base_gguf is None:
            raise BadInput("llama-cpp-python serves GGUF models and the base has no GGUF file",
                           hint="set [model] gguf in the recipe (convert the base once with convert_hf_to_gguf.py)")
        models = [{"model": serve.base_gguf, "model_alias": serve.base_name(), "n_ctx": config.n_ctx,
                   "verbose": False}]
        for _, other in sorted(b for b in serve.bases() if b[1] and b[1] != serve.base_gguf):
            models.append({"model": other, "model_alias": Path(other).name.removesuffix(".gguf"),
                           "n_ctx": config.n_ctx, "verbose": False})
        for a in serve.adapters:
            if a.gguf is None:
                raise BadInput(f"{a.name} has no GGUF copy; llama.cpp engines need one",
                               hint="train it with [training] gguf = true, or serve with --engine vllm")
            models.append({"model": a.base_gguf or serve.base_gguf, "model_alias": a.name, "lora_path": a.gguf,
                           "n_ctx": config.n_ctx, "verbose": False})
        path = folder / f"llama-cpp-python-{port}.json"
        path.write_text(json.dumps({"host": HOST, "port": port, "models": models}, indent=1), encoding="utf-8")
        return Launch([sys.executable, "-m", "llama_cpp.server", "--config_file", str(path), *config.extra_args],
                      offline_env(), [path])


class LlamaServerEngine(Engine):
    kind = ServeEngine.LLAMA_SERVER

    def __init__(self, config: ServingConfig):
        self.binary = config.llama_server

    def check(self) -> None:
        if shutil.which(self.binary) is None:
            raise Failed(f"the llama-server binary {self.binary!r} is not on this machine",
                         hint="build llama.cpp (cmake --build build --target llama-server) and set "
                              "[serving] llama_server to its path, or use --engine llama-cpp-python")

    def launch(self, serve: ServeSet, port: int, config: ServingConfig, folder: Path) -> Launch:
        if serve.base_gguf is None:
            raise BadInput("llama-server serves GGUF models and the base has no GGUF file",
                           hint="set [model] gguf in the recipe")
        command = [shutil.which(self.binary) or self.binary, "-m", serve.base_gguf, "--host", HOST,
                   "--port", str(port), "-c", str(config.n_ctx), "--alias", serve.base_name(),
                   "--lora-init-without-apply"]
        for a in serve.adapters:
            if a.gguf is None:
                raise BadInput(f"{a.name} has no GGUF copy; llama-server needs one")
            command += ["--lora", a.gguf]
        return Launch(command + config.extra_args, offline_env())


class VllmEngine(Engine):
    kind = ServeEngine.VLLM

    def check(self) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise MissingExtra("cra serve --engine vllm", "gpu", detail="vllm is not installed")
        import torch

        if not torch.cuda.is_available():
            raise Failed("vLLM needs a CUDA GPU and this machine has none",
                         hint="use --engine llama-cpp-python (the CPU default) here")

    def launch(self, serve: ServeSet, port: int, config: ServingConfig, folder: Path) -> Launch:
        if serve.base_model is None:
            raise BadInput("vLLM serves the Hugging Face base model folder and none is known",
                           hint="pass --base FOLDER")
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", serve.base_model,
                   "--served-model-name", serve.base_name(), "--host", HOST, "--port", str(port),
                   "--enable-lora", "--max-lora-rank", str(config.max_lora_rank),
                   "--max-loras", str(max(1, len(serve.adapters)))]
        if serve.adapters:
            command += ["--lora-modules", *(f"{a.name}={a.peft_dir}" for a in serve.adapters)]
        env = offline_env()
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"  # /v1/load_lora_adapter: promotes without restart
        return Launch(command + config.extra_args, env)

    def restart_for(self, loaded: ServeSet, wanted: ServeSet) -> bool:
        return (loaded.base_model, loaded.base_gguf) != (wanted.base_model, wanted.base_gguf)  # LoRAs load live

    def update(self, loaded: ServeSet, wanted: ServeSet, port: int) -> ServeSet:
        """Load the versions ``wanted`` lacks and unload the rest (GPU memory holds --max-loras)."""
        base = f"http://{HOST}:{port}/v1"
        for a in loaded.adapters:
            if a.name not in wanted.names:
                _post(base + "/unload_lora_adapter", {"lora_name": a.name})
        for a in wanted.adapters:
            if a.name not in loaded.names:
                _post(base + "/load_lora_adapter", {"lora_name": a.name, "lora_path": a.peft_dir})
        return wanted


def _post(url: str, body: dict[str, str], timeout: float = 120.0) -> str:
    """POST JSON to a loopback engine; its answer (vLLM answers these with plain text)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise Failed(f"{url} refused {body.get('lora_name')}: HTTP {exc.code} "
                     f"{exc.read().decode('utf-8', 'replace')[:300]}") from None
    except OSError as exc:
        raise Failed(f"cannot reach {url}: {exc}") from None


def make_engine(kind: str, config: ServingConfig) -> Engine:
    if kind == ServeEngine.LLAMA_CPP_PYTHON:
        return LlamaCppPythonEngine()
    if kind == ServeEngine.LLAMA_SERVER:
        return LlamaServerEngine(config)
    if kind == ServeEngine.VLLM:
        return VllmEngine()
    raise BadInput(f"unknown serving engine {kind!r}", hint="vllm, llama-server or llama-cpp-python")
