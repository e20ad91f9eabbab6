"""``cra serve``: an engine on loopback with the registry's adapters, kept in step with it.

``Server.start`` builds the ``ServeSet`` (every slot's ``active`` and ``candidate``
version, each verified against its recorded sha256: a tampered version is never served),
starts the engine in its own process group, waits until ``/v1/models`` answers and
reports the endpoint. ``Server.poll`` re-reads the registry: when what should be served
changed (a new candidate, a rollback to an old version), vLLM loads and unloads adapters
at run time, the llama.cpp engines are restarted with the new set. A promote between the
two served aliases changes nothing on the server: the client asks for the other name.

The engine's output goes to ``var/serve/<engine>-<port>.log``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance.adapters.registry import GGUF_NAME, check_intact, current, version_dir
from appliance.config import Home, Settings
from appliance.db.core import Database
from appliance.errors import BadInput, CraError, Failed
from appliance.serving.engines import HOST, Engine, Launch, ServedAdapter, ServeSet, make_engine
from appliance.status import AdapterAlias, AdapterSlot, ServeEngine, values

SERVED_ALIASES = (AdapterAlias.ACTIVE, AdapterAlias.CANDIDATE)


def _abs(home: Home, value: str | None) -> str | None:
    return str(home.root / value) if value else None


def serve_set(db: Database, home: Home, *, slots: list[str] | None = None, base: str | None = None,
              aliases: tuple[str, ...] = SERVED_ALIASES) -> ServeSet:
    """The verified ``aliases`` versions of ``slots`` (default: all); ``AdapterTampered`` on a bad one."""
    found: dict[tuple[str, int], ServedAdapter] = {}
    for slot in slots or values(AdapterSlot):
        for alias in aliases:
            version = current(db, slot, alias)
            if version is None:
                continue
            key = (slot, version.version)
            if key in found:
                found[key] = ServedAdapter(**{**asdict(found[key]), "aliases": (*found[key].aliases, alias)})
                continue
            check_intact(home, version)
            folder = version_dir(home, version)
            found[key] = ServedAdapter(
                slot=slot, version=version.version, name=version.name, aliases=(alias,), rank=version.rank,
                peft_dir=str(folder), gguf=str(folder / GGUF_NAME) if GGUF_NAME in version.files else None,
                base_model=_abs(home, version.base_model) or "", base_gguf=_abs(home, version.base_gguf))
    adapters = tuple(found[k] for k in sorted(found))
    bases = sorted({(a.base_model, a.base_gguf or "") for a in adapters})
    if base is not None:
        chosen = str(Path(base).expanduser().resolve())
        base_model, base_gguf = (None, chosen) if chosen.endswith(".gguf") else (chosen, None)
        for model, gguf in bases:  # the other form of the same base, from the adapters' records
            if gguf == chosen or model == chosen:
                base_model, base_gguf = model, gguf or None
    elif bases:
        base_model, base_gguf = bases[0][0], bases[0][1] or None
    else:
        raise BadInput("no adapter version to serve and no base model named",
                       hint="train one (cra train SLOT --dataset ID), or pass --base MODEL to serve the base alone")
    return ServeSet(base_model=base_model, base_gguf=base_gguf, adapters=adapters)


@dataclass
class ServeEvent:
    """What ``cra serve`` prints: the server came up, changed, refused a change, or stopped."""

    kind: str                      # ready / restarted / updated / refused / unchanged
    endpoint: str
    engine: str
    base: str
    models: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def port_free(port: int) -> bool:
    """Nothing listens on ``port`` (connections of a stopped server in TIME_WAIT do not count:
    the engines bind with SO_REUSEADDR too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


class Server:
    """One engine process and the registry it follows."""

    def __init__(self, home: Home, db: Database, settings: Settings, *, engine: str | None = None,
                 port: int | None = None, slots: list[str] | None = None, base: str | None = None):
        self.home, self.db, self.settings = home, db, settings
        self.kind = engine or settings.serving.engine
        self.engine: Engine = make_engine(self.kind, settings.serving)
        self.port = port or settings.serving.port
        self.slots, self.base = slots, base
        self.folder = home.var / "serve"
        self.log_path = self.folder / f"{self.kind}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.current: ServeSet | None = None  # what the registry wants served
        self.loaded: ServeSet | None = None   # what the engine has (a superset on llama.cpp engines)
        self._refused = ""                    # the last refusal reported, so it is reported once

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def _event(self, kind: str, detail: str = "") -> ServeEvent:
        serve = self.current or ServeSet(None, None)
        wanted = {a.name: a for a in serve.adapters}
        loaded = self.loaded.adapters if self.loaded else ()
        models = [{"name": serve.base_name(), "base": True}] + [
            {"name": a.name, "slot": a.slot, "version": a.version,
             "aliases": list(wanted[a.name].aliases) if a.name in wanted else []}
            for a in sorted({**{x.name: x for x in loaded}, **wanted}.values(), key=lambda x: (x.slot, x.version))]
        return ServeEvent(kind=kind, endpoint=self.endpoint, engine=self.kind, base=serve.base_name(),
                          models=models, detail=detail)

    # -- process ----------------------------------------------------------------------

    def _check_bases(self, serve: ServeSet) -> None:
        if self.kind != ServeEngine.LLAMA_CPP_PYTHON and len(serve.bases()) > 1:
            listing = "; ".join(sorted(str(b[1] or b[0]) for b in serve.bases()))
            raise BadInput(f"{self.kind} serves one base model and these adapters use {len(serve.bases())}: {listing}",
                           hint="serve the slots of one base with --slot, one server per base on its own --port")

    def _launch(self, serve: ServeSet) -> None:
        if not port_free(self.port):
            raise BadInput(f"port {self.port} on {HOST} is in use", hint="pass --port, or stop what listens there")
        self.folder.mkdir(parents=True, exist_ok=True)
        launch: Launch = self.engine.launch(serve, self.port, self.settings.serving, self.folder)
        with self.log_path.open("ab") as log:
            # Its own process group: Ctrl-C reaches cra serve, which then stops the engine cleanly.
            self.proc = subprocess.Popen(launch.command, stdout=log, stderr=subprocess.STDOUT, env=launch.env,
                                         start_new_session=True)
        self.current = self.loaded = serve
        self._wait_ready()

    def _wait_ready(self) -> None:
        from appliance.llm.providers.openai_compat import OpenAICompatProvider

        assert self.proc is not None
        probe = OpenAICompatProvider(self.endpoint, "probe", check_models=False)
        deadline = time.monotonic() + self.settings.serving.startup_timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                raise Failed(f"the {self.kind} server exited with code {code} while starting: {self._tail()}",
                             path=self.log_path, hint=f"the whole log is in {self.log_path}")
            try:
                if probe.served_models(timeout=2) is not None:
                    return
            except CraError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise Failed(f"the {self.kind} server did not answer within "
                             f"{self.settings.serving.startup_timeout_s:g} s", path=self.log_path,
                             hint="raise [serving] startup_timeout_s, or read the log")
            time.sleep(0.3)

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> ServeEvent:
        self.engine.check()
        serve = serve_set(self.db, self.home, slots=self.slots, base=self.base)
        self._check_bases(serve)
        self._launch(serve)
        return self._event("ready")

    def poll(self) -> ServeEvent | None:
        """Follow the registry once; an event when something changed (or was refused)."""
        if self.proc is None or self.proc.poll() is not None:
            code = self.proc.returncode if self.proc else None
            raise Failed(f"the {self.kind} server stopped (exit code {code}): {self._tail()}", path=self.log_path)
        assert self.current is not None
        try:
            new = serve_set(self.db, self.home, slots=self.slots, base=self.base)
            self._check_bases(new)
        except CraError as exc:  # a tampered version, say: keep serving what is loaded
            if str(exc) == self._refused:
                return None
            self._refused = str(exc)
            return self._event("refused", str(exc))
        self._refused = ""
        if new == self.current:
            return None
        assert self.loaded is not None
        if self.engine.restart_for(self.loaded, new):
            self.stop()
            self._launch(new)
            return self._event("restarted")
        self.loaded = self.engine.update(self.loaded, new, self.port)
        self.current = new
        return self._event("updated")

    def serve_forever(self, on_event: Callable[[ServeEvent], None], *,
                      should_stop: Callable[[], bool] = lambda: False) -> None:
        """``start``, then ``poll`` every ``[serving] poll_s`` until ``should_stop`` or Ctrl-C; then stop."""
        try:
            on_event(self.start())
            while not should_stop():
                time.sleep(self.settings.serving.poll_s)
                event = self.poll()
                if event is not None:
                    on_event(event)
        finally:
            self.stop()
