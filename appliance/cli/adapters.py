"""``cra adapters ...``: the registry of trained versions, their aliases, and their audit."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from appliance.cli.base import App, cli, console, emit_json, err_console, pass_app
from appliance.errors import AdapterTampered
from appliance.status import AdapterSlot, values

SLOTS = click.Choice(values(AdapterSlot))


@cli.group()
def adapters() -> None:
    """Trained adapter versions: list, show, history, promote, rollback and verify them."""


def _fmt(value: object, spec: str = ".4f") -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"


@adapters.command("list")
@click.argument("slot", type=SLOTS, required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def adapters_list(app: App, slot: str | None, as_json: bool) -> None:
    """List the versions of SLOT (or of every slot) with their aliases and training figures."""
    from appliance.adapters.registry import overview, versions
    from appliance.db.adapters import aliases

    found = versions(app.db, slot)
    pointers = aliases(app.db)
    if as_json:
        emit_json({"slots": overview(app.db), "versions": [
            {**v.to_dict(), "aliases": sorted(a for (s, a), n in pointers.items() if s == v.slot and n == v.version)}
            for v in found]})
        return
    table = Table("version", "aliases", "method", "rank", "dataset", "steps", "loss", "valid loss", "tok/s",
                  "created", title="adapter versions" + (f" of {slot}" if slot else ""))
    for v in found:
        marks = ", ".join(a for (s, a), n in sorted(pointers.items()) if s == v.slot and n == v.version)
        m = v.metrics
        table.add_row(v.name, marks, v.method, str(v.rank), str(v.dataset_id or "-"), str(m.get("steps", "-")),
                      _fmt(m.get("train_loss")), _fmt(m.get("eval", {}).get("eval_loss")),
                      _fmt(m.get("tokens_per_s"), ",.0f"), (v.created_at or "")[:19])
    console.print(table if found else "no adapter versions yet: cra train SLOT --dataset ID")


@adapters.command("show")
@click.argument("slot", type=SLOTS)
@click.argument("version", required=False, default="latest")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def adapters_show(app: App, slot: str, version: str, as_json: bool) -> None:
    """Show one version of SLOT whole (VERSION: a number, active, candidate or latest)."""
    from appliance.adapters.registry import find

    v = find(app.db, slot, version)
    if as_json:
        emit_json(v.to_dict())
        return
    m = v.metrics
    console.print(f"[bold]{v.name}[/]  {v.method}, rank {v.rank}, {v.path}  ({v.created_at})")
    console.print(f"base     {escape(v.base_model)}  sha256 {v.base_sha256}")
    if v.base_gguf:
        console.print(f"gguf     {escape(v.base_gguf)}")
    console.print(f"dataset  {v.dataset_id}  sha256 {v.dataset_hash}")
    console.print(f"recipe   sha256 {v.recipe_sha256}")
    console.print(f"training {m.get('steps')} steps on {m.get('device')} ({m.get('backend')}), loss "
                  f"{_fmt(m.get('train_loss'))}, valid loss {_fmt(m.get('eval', {}).get('eval_loss'))}, "
                  f"{_fmt(m.get('tokens_per_s'), ',.0f')} tok/s, {_fmt(m.get('wall_s'), '.0f')} s")
    curve = m.get("loss_curve") or []
    if curve:
        console.print("loss     " + "  ".join(f"{int(s)}:{loss:.3f}" for s, loss in curve[-12:]))
    table = Table("file", "sha256")
    for name, digest in sorted(v.files.items()):
        table.add_row(escape(name), digest)
    console.print(table)


@adapters.command("history")
@click.argument("slot", type=SLOTS, required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def adapters_history(app: App, slot: str | None, as_json: bool) -> None:
    """The audit of SLOT (or of every slot): every register, promote and rollback, oldest first."""
    from appliance.adapters.registry import history

    events = history(app.db, slot)
    if as_json:
        emit_json([e.to_dict() for e in events])
        return
    table = Table("when", "slot", "action", "alias", "from", "to", "why", "report")
    for e in events:
        table.add_row(e.created_at[:19], e.slot, e.action, e.alias,
                      f"v{e.from_version}" if e.from_version else "-", f"v{e.to_version}" if e.to_version else "-",
                      escape(e.reason), escape(e.report or ""))
    console.print(table if events else "nothing happened yet")


def _moved(event: object, as_json: bool) -> None:
    from appliance.db.adapters import AdapterEvent

    assert isinstance(event, AdapterEvent)
    if as_json:
        emit_json(event.to_dict())
        return
    before = f"v{event.from_version}" if event.from_version else "base"
    after = f"v{event.to_version}" if event.to_version else "base (no adapter)"
    console.print(f"[green]{event.slot}[/]: active {before} -> {after} ({event.action})")


@adapters.command("promote")
@click.argument("slot", type=SLOTS)
@click.argument("version", required=False)
@click.option("--reason", default="", help="Why, for the audit row.")
@click.option("--report", help="The evaluation report that justified it (kept in the audit row).")
@click.option("--json", "as_json", is_flag=True, help="Print the audit row as JSON.")
@pass_app
def adapters_promote(app: App, slot: str, version: str | None, reason: str, report: str | None,
                     as_json: bool) -> None:
    """Make VERSION (default: the candidate) SLOT's active version: one transaction with its audit
    row. A version whose files changed since training is refused."""
    from appliance.adapters.registry import promote

    _moved(promote(app.db, app.home, slot, version, reason=reason, report=report), as_json)


@adapters.command("rollback")
@click.argument("slot", type=SLOTS)
@click.option("--to", "to", metavar="VERSION", help="Go back to this version, or 'base' for none (default: the one "
              "active before; the base model when the current one was the first).")
@click.option("--reason", default="", help="Why, for the audit row.")
@click.option("--report", help="The evaluation report that showed the regression.")
@click.option("--json", "as_json", is_flag=True, help="Print the audit row as JSON.")
@pass_app
def adapters_rollback(app: App, slot: str, to: str | None, reason: str, report: str | None, as_json: bool) -> None:
    """Point SLOT's active alias back at the version active before (or --to VERSION; the base model
    when the current one was the first): a database update, never retraining; no file is deleted."""
    from appliance.adapters.registry import rollback

    _moved(rollback(app.db, app.home, slot, to=to, reason=reason, report=report), as_json)


@adapters.command("verify")
@click.argument("slot", type=SLOTS, required=False)
@click.argument("version", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def adapters_verify(app: App, slot: str | None, version: str | None, as_json: bool) -> None:
    """Re-hash the files of every version (or of SLOT, or of one VERSION) against the sha256
    recorded when it was trained. Exit 2 when any differs: such a version is refused everywhere."""
    from appliance.adapters.registry import find, verify, versions

    chosen = [find(app.db, slot, version)] if slot and version else versions(app.db, slot)
    reports = [verify(app.home, v) for v in chosen]
    if as_json:
        emit_json([r.to_dict() for r in reports])
    else:
        for r in reports:
            mark = "[green]ok[/]" if r.ok else "[red]TAMPERED[/]"
            console.print(f"{mark}  {r.slot}-v{r.version}  {r.path}  {escape(r.describe())}")
        if not reports:
            err_console.print("no adapter versions to verify")
    bad = [r for r in reports if not r.ok]
    if bad:
        raise AdapterTampered(f"{len(bad)} of {len(reports)} adapter versions do not match their recorded sha256: "
                              + ", ".join(f"{r.slot}-v{r.version}" for r in bad),
                              hint="restore their files or roll back; cra refuses to load them")
