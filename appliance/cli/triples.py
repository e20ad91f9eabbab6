"""``cra triples ...``: SFT and DPO triples."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from appliance.cli.base import App, cli, console, emit_json, err_console, pass_app
from appliance.status import TaskStatus, values


@cli.group()
def triples() -> None:
    """SFT and DPO triples: build them from tasks and runs, count them, export them as JSONL."""


@triples.command("build")
@click.argument("name")
@click.option("--status", "statuses", multiple=True, default=("valid",), show_default=True,
              type=click.Choice(values(TaskStatus)), help="Task statuses to learn from (repeatable).")
@click.option("--plan-kinds", default="step", show_default=True, metavar="KINDS",
              help="Comma-separated plan kinds with a gold plan triple each: step, meta (the approach), "
              "test (the tests to add or change, from the commit's test patch).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def triples_build(app: App, name: str, statuses: tuple[str, ...], plan_kinds: str, as_json: bool) -> None:
    """Build NAME's triples: gold-derived ones (scope, precision, plan, execute) and gold plans from
    its tasks, and run-derived SFT (resolved attempts) and DPO pairs from its model runs.

    No model needed for the gold part: the commit is the teacher. Safe to rerun
    (duplicates are skipped)."""
    from harness.triples import GoldOptions, build_from_runs, build_gold

    kinds = tuple(k.strip() for k in plan_kinds.split(",") if k.strip())
    report = build_gold(app.db, app.home, name, statuses=statuses,
                        options=GoldOptions(plan_kinds=kinds)).to_dict()
    report["from_runs"] = build_from_runs(app.db, name)
    if as_json:
        emit_json(report)
        return
    runs = report["from_runs"]
    console.print(f"[green]{name}[/]: {report['tasks']} tasks -> {report['triples']} new gold triples "
                  f"({report['duplicates']} already stored), {report['plans']} gold plans; "
                  f"{runs['runs']} model runs -> {runs['sft']} SFT + {runs['dpo']} DPO ({runs['added']} new)")
    for e in report["errors"]:
        err_console.print(f"[yellow]{e.get('sha', '')[:10]}:[/] {escape(str(e.get('error', '')))}")


@triples.command("stats")
@click.option("--repo", help="Only this repo package.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def triples_stats(app: App, repo: str | None, as_json: bool) -> None:
    """Count the stored triples by stage and kind."""
    from harness.triples import stats

    data = stats(app.db, repo=repo)
    if as_json:
        emit_json(data)
        return
    table = Table("stage", "sft", "dpo", title=f"triples: {data['total']} "
                  f"(gold {data['by_origin'].get('gold', 0)}, run {data['by_origin'].get('run', 0)})")
    for stage, kinds in data["by_stage"].items():
        table.add_row(stage, str(kinds.get("sft", 0)), str(kinds.get("dpo", 0)))
    console.print(table)


@triples.command("export")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for <stage>.<kind>.jsonl files and manifest.json.")
@click.option("--format", "sft_format", type=click.Choice(["messages", "prompt_completion"]), default="messages",
              show_default=True, help="Shape of SFT rows (trl reads both).")
@click.option("--repo", help="Only this repo package.")
@click.option("--before", metavar="DATE", help="Only triples from commits authored before DATE (YYYY-MM-DD).")
@pass_app
def triples_export(app: App, out: Path, sft_format: str, repo: str | None, before: str | None) -> None:
    """Write the triples as JSONL that datasets.load_dataset("json", ...) and trl load."""
    from harness.triples import export
    from harness.validation import parse_since

    manifest = export(app.db, out, sft_format=sft_format, repo=repo, before_ts=parse_since(before, option="--before"))
    for name, f in manifest["files"].items():
        console.print(f"{out / name}: {f['rows']} rows")
    if not manifest["files"]:
        console.print("no triples to export: run 'cra triples build NAME' first")
