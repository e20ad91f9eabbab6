"""``cra train-plan``, ``cra curate-data`` and ``cra datasets ...``: what to train next and the
datasets that do it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from appliance.cli.base import App, cli, console, emit_json, err_console, pass_app
from appliance.status import AdapterSlot, ImportFormat, values


def _fmt(m: dict[str, Any]) -> str:
    if m.get("value") is None:
        return "-"
    value = f"{m['value']:.3f}"
    if m.get("lo") is not None:
        value += f" [{m['lo']:.3f}, {m['hi']:.3f}]"
    return f"{value} n={m['n']}"


@cli.command("train-plan")
@click.option("--since", metavar="DATE", help="Only runs started on or after DATE (YYYY-MM-DD).")
@click.option("--until", metavar="DATE", help="Only runs started before DATE.")
@click.option("--repo", help="Only this repo package's runs and data.")
@click.option("--domain", help="Only the repos of this domain (a corpus/catalog.toml category).")
@click.option("--model", help="Only this model's runs.")
@click.option("--adapter", help="Only runs with this adapter ('' for the base model).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the plan to FILE (JSON).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@pass_app
def train_plan(app: App, since: str | None, until: str | None, repo: str | None, domain: str | None,
               model: str | None, adapter: str | None, out: Path | None, as_json: bool) -> None:
    """Rank the pipeline's stages by weakness, with evidence from the logs, and say per adapter
    slot how much SFT and DPO data there is and whether it is enough. Stored once per content."""
    from appliance.training.plan import make_plan
    from harness.validation import parse_since

    for value in (since, until):
        parse_since(value)  # a clear error for a bad date
    result = make_plan(app.db, app.settings.training, out=out, since=since, until=until, repo=repo,
                       domain=domain, model=model, adapter=adapter)
    if as_json:
        emit_json({"id": result.id, "content_hash": result.row.content_hash, "created": result.created,
                   **result.plan})
        return
    plan = result.plan
    stages = Table("rank", "stage", "slot", "quality", "clearly weaker than", "vs others",
                   title=f"training plan {result.id}: stages, weakest first")
    for s in plan["stages"]:
        gap = "" if s["gap_to_others"] is None else f"{s['gap_to_others']:+.3f}"
        stages.add_row(str(s["rank"]), s["stage"], s["slot"], f"{s['quality']['name'].split(':')[1]} "
                       f"{_fmt(s['quality'])}" if s["evidence"] == "measured" else "no evidence",
                       ", ".join(s["weaker_than"]), gap)
    console.print(stages)
    measures = Table("stage", "measure", "value [95% interval] n", title="measures")
    for s in plan["stages"]:
        for name, m in s["measures"].items():
            measures.add_row(s["stage"], name, _fmt(m))
    console.print(measures)
    failures = Table("stage", "attempts", "runs", "signature", "example runs", title="largest failure groups")
    for s in plan["stages"]:
        for g in s["failures"]:
            failures.add_row(s["stage"], str(g["attempts"]), str(g["runs"]), escape(g["signature"]),
                             ", ".join(map(str, g["example_runs"])))
    if failures.row_count:
        console.print(failures)
    slots = Table("priority", "slot", "SFT rows (min)", "DPO rows (min)", "sources", "build", "why",
                  title="training data per adapter slot")
    for s in plan["slots"]:
        mix = {k: s["sft"]["by_source"][k] + s["dpo"]["by_source"][k] for k in s["sft"]["by_source"]}
        slots.add_row(str(s["priority"]), s["slot"], f"{s['sft']['rows']} ({s['sft']['minimum']})",
                      f"{s['dpo']['rows']} ({s['dpo']['minimum']})",
                      ", ".join(f"{k} {v}" for k, v in mix.items() if v), ", ".join(s["build"]) or "-", s["reason"])
    console.print(slots)
    console.print(f"[green]plan {result.id}[/] ({'new' if result.created else 'unchanged'}, "
                  f"{result.row.content_hash[:12]}): build it with 'cra curate-data --plan {result.id}'")


@cli.command("curate-data")
@click.option("--plan", "plan_ref", required=True, metavar="ID|FILE", help="A plan from 'cra train-plan'.")
@click.option("--slot", type=click.Choice(values(AdapterSlot)), help="Only this adapter slot.")
@click.option("--cutoff", metavar="DATE",
              help="Only commits authored before DATE (default: [training] cutoff in cra.toml).")
@click.option("--replay", type=float, help="Share of rows replayed from earlier datasets (0.10-0.20; default 0.15).")
@click.option("--recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Measure token lengths with this recipe's base model tokenizer and max_length, and build "
                   "its slot only. Default: each slot's recipe (CRA_HOME/adapters/<slot>.toml, else cra's), "
                   "when its base model folder is here.")
@click.option("--tokenizer", type=click.Path(exists=True, path_type=Path),
              help="Instead of a recipe: a local tokenizer folder; rows longer than --max-tokens are dropped and counted.")
@click.option("--max-tokens", type=int, help="With --tokenizer: the maximum sequence length, in tokens.")
@click.option("--force", is_flag=True, help="Build a dataset the self-training guardrail refuses.")
@click.option("--json", "as_json", is_flag=True, help="Print the datasets as JSON.")
@pass_app
def curate_data(app: App, plan_ref: str, slot: str | None, cutoff: str | None, replay: float | None,
                recipe: Path | None, tokenizer: Path | None, max_tokens: int | None, force: bool,
                as_json: bool) -> None:
    """Build the SFT/DPO datasets a training plan asks for: cut at a date, deduplicated, balanced
    across domains, with replay of earlier datasets, stored under var/datasets/ and recorded."""
    from appliance.errors import BadInput
    from appliance.training.curate import curate_from_plan
    from harness.validation import parse_since

    when = cutoff or app.settings.training.cutoff
    if not when:
        raise BadInput("curate-data needs a cutoff: training rows must predate the evaluation holdout",
                       hint="pass --cutoff YYYY-MM-DD or set [training] cutoff in cra.toml")
    cutoff_ts = parse_since(when)
    assert cutoff_ts is not None
    results = curate_from_plan(app.db, app.home, app.settings.training, plan_ref, slot=slot, cutoff_ts=cutoff_ts,
                               replay_share=replay, tokenizer=str(tokenizer) if tokenizer else None,
                               max_tokens=max_tokens, force=force, recipe=recipe)
    if as_json:
        emit_json([r.to_dict() for r in results])
        return
    for r in results:
        ds = r.dataset
        what = "built" if r.created else "unchanged"
        console.print(f"[green]{what}[/] dataset {ds.id}: {ds.slot} {ds.kind}, {ds.rows_train} train + "
                      f"{ds.rows_valid} valid rows -> {ds.path}")
        for note in ds.notes:
            err_console.print(f"[yellow]note:[/] {escape(note)}")
        length = (ds.params.get("recipe") or {}).get("note")
        if length:
            err_console.print(f"[dim]token lengths {escape(length)}[/]")


@cli.group()
def datasets() -> None:
    """Curated training datasets and imported external ones."""


@datasets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def datasets_list(app: App, as_json: bool) -> None:
    """List the curated datasets and the imports."""
    from appliance.db.training import list_datasets, list_imports

    curated, imported = list_datasets(app.db), list_imports(app.db)
    if as_json:
        emit_json({"datasets": [d.to_dict() for d in curated], "imports": [i.to_dict() for i in imported]})
        return
    table = Table("id", "slot", "kind", "train", "valid", "cutoff", "sources", "plan", "path", title="datasets")
    from datetime import UTC, datetime

    for d in curated:
        table.add_row(str(d.id), d.slot, d.kind, str(d.rows_train), str(d.rows_valid),
                      datetime.fromtimestamp(d.cutoff_ts, UTC).date().isoformat(),
                      ", ".join(f"{k} {v}" for k, v in d.source_mix.items() if v), str(d.plan_id or "-"), d.path)
    console.print(table if curated else "no datasets yet: 'cra train-plan', then 'cra curate-data --plan ID'")
    if imported:
        imports = Table("id", "name", "format", "slot", "rows", "licence", "file", title="imports")
        for i in imported:
            imports.add_row(str(i.id), i.name, i.format, i.slot, str(i.rows), i.license, i.source_file)
        console.print(imports)


@datasets.command("show")
@click.argument("dataset_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def datasets_show(app: App, dataset_id: int, as_json: bool) -> None:
    """A dataset's provenance, mixes and its attrition per filter (a funnel)."""
    from appliance.db.training import get_dataset
    from appliance.training.curate import dataset_funnel

    ds = get_dataset(app.db, dataset_id)
    funnel = dataset_funnel(ds)
    if as_json:
        emit_json({**ds.to_dict(), "funnel": funnel})
        return
    table = Table("step", "entered", "removed", "left", title=f"dataset {ds.id} ({ds.slot} {ds.kind}): funnel")
    for s in funnel["steps"]:
        table.add_row(s["step"], str(s["entered"]), str(s["removed"]), str(s["left"]))
    replay = funnel["replay"]
    table.add_row("[bold]+ replay[/]", "", "", f"+{replay.get('added', 0)} (of {replay.get('wanted', 0)} wanted)")
    table.add_row("[bold]rows[/]", "", "", f"[bold]{funnel['rows']}[/] ({funnel['train']} train, "
                  f"{funnel['valid']} valid)")
    console.print(table)
    mixes = Table("mix", "rows", title="where the rows come from")
    for k, v in ds.source_mix.items():
        mixes.add_row(f"source {k}", str(v))
    for k, v in ds.domain_mix.items():
        mixes.add_row(f"domain {k}", f"{v} ({v / max(1, funnel['rows']):.0%})")
    console.print(mixes)
    for note in ds.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"{ds.path} (sha256 {ds.content_hash[:12]}), cutoff_ts {ds.cutoff_ts}")


@datasets.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(values(ImportFormat)), required=True,
              help="The rows' shape (commitpackft rows become execute-stage search/replace examples).")
@click.option("--license", "license_", required=True, help="The dataset's licence, e.g. Apache-2.0.")
@click.option("--slot", type=click.Choice(values(AdapterSlot)), default="execute-code", show_default=True,
              help="The adapter slot whose SFT data it becomes.")
@click.option("--name", help="A name for the import (default: the file's).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def datasets_import(app: App, file: Path, fmt: str, license_: str, slot: str, name: str | None,
                    as_json: bool) -> None:
    """Import external JSONL (CommitPackFT, OpenCodeInstruct, SRI Tuning, ...) from FILE, e.g. from
    a USB stick. All of it or nothing: a malformed line is refused with its number."""
    from appliance.training.imports import import_dataset

    result = import_dataset(app.db, file, fmt=fmt, license=license_, slot=slot, name=name)
    if as_json:
        emit_json(result.to_dict())
        return
    d = result.dataset
    what = "imported" if result.created else "already imported"
    skipped = f", skipped {d.skipped}" if d.skipped else ""
    console.print(f"[green]{what}[/] {d.name}: {d.rows} {d.slot} SFT rows ({d.format}, {d.license}){skipped}")
