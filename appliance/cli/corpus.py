"""``cra corpus ...``: repo packages on both sides of the air gap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from appliance.cli.base import App, cli, console, emit_json, err_console, pass_app, progress_bar


@cli.group()
def corpus() -> None:
    """Repo packages: add (connected side), export to USB, import (air-gapped side)."""


@corpus.command("add")
@click.argument("source", required=False)
@click.option("--name", help="Name of the repo package (default: from SOURCE).")
@click.option("--test-cmd", help="Command that runs the tests (default: python -m pytest).")
@click.option("--python", "python", metavar="X.Y", help="Python version of the air-gapped box (default: this one).")
@click.option("--from-catalog", "catalog_name", metavar="NAME", help="Take URL and hints from corpus/catalog.toml.")
@click.option("--find-links", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A local wheel folder to use (repeatable).")
@click.option("--no-index", is_flag=True, help="Use only --find-links folders, never a package index.")
@click.option("--branch", "branches", multiple=True, metavar="NAME",
              help="A maintenance branch to walk by first parent too, e.g. 2.x-line (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def corpus_add(
    app: App, source: str | None, name: str | None, test_cmd: str | None, python: str | None,
    catalog_name: str | None, find_links: tuple[Path, ...], no_index: bool, branches: tuple[str, ...],
    as_json: bool,
) -> None:
    """Turn SOURCE (a git URL or local path) into a repo package.

    Clones with full history into corpus/NAME/repo, mines and filters every commit on the
    default branch (and on each --branch), locks the dependencies of every dependency era
    with the packages of its own time, downloads their wheels into packages/NAME/ and
    proves them installable offline, then writes manifests/NAME.json and registers
    everything in the database. An era that cannot be locked is recorded with its reason;
    the rest is packaged. Needs the network unless --no-index.
    """
    from appliance.packaging.corpus import add_repo

    if catalog_name:
        from appliance.packaging.catalog import find_entry

        entry = find_entry(catalog_name)
        source = source or entry.url
        name = name or entry.name
        test_cmd = test_cmd or getattr(entry, "test_cmd", None)
    if not source:
        raise click.UsageError("give SOURCE or --from-catalog NAME")
    settings = app.settings
    if find_links:
        settings.packaging.find_links = [str(p.resolve()) for p in find_links] + settings.packaging.find_links
    if no_index:
        settings.packaging.no_index = True
    with progress_bar() as tick:
        result = add_repo(app.home, app.db, settings, source, name=name, test_cmd=test_cmd, python=python,
                          branches=branches, progress=tick)
    if as_json:
        emit_json({
            "name": result.name, "commits": result.commits, "kept": result.kept, "wheels": result.wheels,
            "manifest": str(result.manifest), "branches": result.branches, "timings": result.timings,
            "eras": [{"key": e.key[:12], "status": e.status, "commits": len(e.commits), "error": e.error,
                      "python": e.python, "locked_as_of": e.locked_as_of, "lock_tool": e.lock_tool,
                      "notes": e.notes} for e in result.eras],
        })
        return
    console.print(
        f"[green]added[/] {result.name}: {result.commits} commits, {result.kept} kept, "
        f"{len(result.eras)} dependency eras, {result.wheels} wheels -> {result.manifest}"
    )
    as_of = [e for e in result.eras if e.locked_as_of]
    if result.eras:
        console.print(f"{len(as_of)} of {len(result.eras)} eras locked with the packages of their own time")
    for era in result.unresolvable:
        err_console.print(f"[yellow]era {era.key[:12]} ({len(era.commits)} commits) unresolvable:[/] {escape(era.error or '')}")


@corpus.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def corpus_list(app: App, as_json: bool) -> None:
    """List the repo packages in the database."""
    from appliance.db.corpus import list_repos

    rows = list_repos(app.db)
    if as_json:
        emit_json(rows)
        return
    table = Table("name", "commits", "kept", "eras", "python", "source", "head", "origin")
    for r in rows:
        table.add_row(r["name"], str(r["commits"]), str(r["kept"]), str(r["eras"]), r["python_version"],
                      r["source"], r["head_sha"][:10], r["origin_url"])
    console.print(table if rows else "no repo packages yet: add one with 'cra corpus add SOURCE'")


@corpus.command("funnel")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def corpus_funnel(app: App, name: str, as_json: bool) -> None:
    """Show how many commits each filter stage rejected, and why."""
    from appliance.db.corpus import funnel

    data = funnel(app.db, name)
    if as_json:
        emit_json(data)
        return
    print_funnel(data)


def print_funnel(data: dict[str, Any]) -> None:
    table = Table("stage", "entered", "rejected", "left", title=f"{data['repo']}: commit funnel")
    for s in data["stages"]:
        table.add_row(s["stage"], str(s["entered"]), str(s["rejected"]), str(s["left"]))
    table.add_row("[bold]kept[/]", "", "", f"[bold]{data['kept']}[/] ({data['kept_pct']}%)")
    console.print(table)
    if data["reasons"]:
        reasons = Table("stage", "reason", "commits", title="rejection reasons")
        for r in data["reasons"]:
            reasons.add_row(r["stage"], r["reason"], str(r["n"]))
        console.print(reasons)


@corpus.command("export")
@click.argument("names", nargs=-1, required=True)
@click.option("--to", "dest", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Destination folder, e.g. the USB stick's mount point.")
@click.option("--with-appliance", is_flag=True,
              help="Also write a wheelhouse that installs cra itself (with its llama extra) offline.")
@pass_app
def corpus_export(app: App, names: tuple[str, ...], dest: Path, with_appliance: bool) -> None:
    """Write repo packages to DEST: git bundle, wheels, locks, manifest and SHA256SUMS."""
    from appliance.db.corpus import get_repo
    from appliance.packaging.bundle import export_appliance, export_package

    for name in names:
        get_repo(app.db, name)  # a clear error before any file is written
    with progress_bar() as tick:
        for name in names:
            result = export_package(app.home, name, dest, progress=lambda d, t, n=name: tick(n, d, t))
            console.print(f"[green]exported[/] {name} -> {result.path} ({result.written} written, {result.skipped} unchanged)")
        if with_appliance:
            path = export_appliance(dest)
            console.print(f"[green]appliance wheelhouse[/] -> {path}")


@corpus.command("import")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@pass_app
def corpus_import(app: App, src: Path) -> None:
    """Verify and import repo packages from SRC (a package folder or a USB root). Never uses the network."""
    from appliance.packaging.bundle import import_package

    with progress_bar() as tick:
        result = import_package(app.home, src, app.db, progress=lambda done, total: tick("verify", done, total))
    for p in result.packages:
        what = "unchanged" if p.status == "unchanged" else "replaced" if p.replaced else "imported"
        console.print(f"[green]{what}[/] {p.name}: {p.kept} kept + {p.rejected} rejected commits, "
                      f"{p.eras} eras, {p.wheels} wheels (HEAD {p.head_sha[:10]})")


@corpus.command("catalog")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def corpus_catalog(as_json: bool) -> None:
    """Show the repos of corpus/catalog.toml (url, domain, roles, tier)."""
    from dataclasses import asdict

    from appliance.packaging.catalog import load_catalog

    entries = load_catalog()
    if as_json:
        emit_json([asdict(e) for e in entries])
        return
    table = Table("name", "tier", "roles", "domain", "url", title="corpus catalog")
    for e in entries:
        table.add_row(e.name, e.tier, "".join(e.roles), e.domain, e.url)
    console.print(table)


