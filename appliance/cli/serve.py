"""``cra serve``: an inference engine on loopback with the registry's adapters."""

from __future__ import annotations

import json
import signal
from typing import Any

import click
from rich.markup import escape

from appliance.cli.base import App, cli, console, pass_app
from appliance.status import AdapterSlot, ServeEngine, values


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@cli.command("serve")
@click.option("--engine", type=click.Choice(values(ServeEngine)),
              help="vllm (CUDA), llama-server or llama-cpp-python (default: [serving] engine, llama-cpp-python).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port on 127.0.0.1 (default: [serving] port, 8000).")
@click.option("--slot", "slots", multiple=True, type=click.Choice(values(AdapterSlot)),
              help="Serve only these slots (repeatable; default: all).")
@click.option("--base", metavar="MODEL", help="The base model (a GGUF file, or a HF folder for vLLM); "
              "default: the one the adapters were trained on.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per event (ready, updated, ...).")
@pass_app
def serve(app: App, engine: str | None, port: int | None, slots: tuple[str, ...], base: str | None,
          as_json: bool) -> None:
    """Start an OpenAI-compatible engine on loopback with every slot's active and candidate adapter
    versions, print its endpoint, and follow the registry: promotes and rollbacks take effect
    without restarting vLLM (llama.cpp engines restart when a version they lack is needed).
    Runs until Ctrl-C."""
    from appliance.serving.server import ServeEvent, Server

    server = Server(app.home, app.db, app.settings, engine=engine, port=port, slots=list(slots) or None, base=base)

    def show(event: ServeEvent) -> None:
        if as_json:
            click.echo(json.dumps(event.to_dict()), nl=True)
            return
        if event.kind == "refused":
            console.print(f"[yellow]not applied:[/] {escape(event.detail)}")
            return
        names = ", ".join(f"{m['name']} ({'/'.join(m['aliases']) or 'loaded'})" for m in event.models if not m.get("base"))
        console.print(f"[green]{event.kind}[/]: {event.engine} at {event.endpoint}, base {event.base!r}"
                      + (f", adapters {names}" if names else ", no adapters"))
        if event.kind == "ready":
            console.print(f"use it: cra harness run NAME --endpoint {event.endpoint} --model {event.base} "
                          "--adapters active   (Ctrl-C stops the server)")

    _stop_on_sigterm()
    try:
        server.serve_forever(show)
    except KeyboardInterrupt:
        if not as_json:
            console.print("stopped")
