"""``cra doctor``: what is installed, which optional parts work, where state lives."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from appliance.cli.base import App, cli, console, emit_json, pass_app


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Show what is installed, which optional parts work, and where state lives."""
    from appliance.doctor import report

    data = report(app.home, app.settings)
    if as_json:
        emit_json(data)
        return
    console.print(f"[bold]cra {data['cra']}[/]  python {data['python']}")
    console.print(f"home    {data['home']}\nconfig  {data['config']}")
    db = data["db"]
    assert isinstance(db, dict)
    state = f"schema v{db['schema_version']}" if db.get("exists") else "not created yet"
    console.print(f"db      {db['path']} ({state})")
    table = Table("part", "status", "detail", "install", title="tools and optional parts")
    for row in [*data["tools"], *data["optional"]]:  # type: ignore[misc]
        mark = "[green]ok[/]" if row["ok"] else "[yellow]missing[/]" if row["extra"] else "[red]warn[/]"
        table.add_row(row["name"], mark, escape(row["detail"]), escape(row["hint"]))
    console.print(table)
    view = data["sandbox"]
    assert isinstance(view, dict)
    console.print(f"[bold]what sandboxed code sees[/] (level {view['level']})")
    for line in view["symlinks"]:
        console.print(f"  link  {escape(line)}")
    for path in view["read_only"]:
        console.print(f"  ro    {escape(path)}")
    for path in view["read_write"]:
        console.print(f"  rw    {escape(path)}")
    hidden = ", ".join(f"{name} {'hidden' if ok else '[red]VISIBLE[/]'}" for name, ok in view["hidden"].items())
    console.print(f"  {hidden}")
