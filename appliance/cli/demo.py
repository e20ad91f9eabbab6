"""``cra demo``: the main job end to end, with no network."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli.base import App, cli, console, progress_bar
from appliance.cli.corpus import print_funnel


@cli.command()
@click.option("--wheels", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Local wheel folder for the sample's dependencies (default: .cache/wheels under the "
                   "home, or under cra's checkout; scripts/bootstrap.sh fills it).")
@click.option("--llama-cpp", "llama_cpp", type=click.Path(exists=True, path_type=Path),
              help="llama.cpp's converters: a llama.cpp checkout or the llama-cpp-python sdist (default: "
                   "$CRA_LLAMA_CPP_SRC, else the sdist scripts/bootstrap.sh put in .cache/).")
@click.option("--package-only", is_flag=True, help="Stop after the import into the air-gapped home (the funnel).")
@click.pass_context
def demo(ctx: click.Context, wheels: Path | None, llama_cpp: Path | None, package_only: bool) -> None:
    """The main job, end to end with no network: package the bundled sample repo, export it as a
    USB bundle, import it into a fresh air-gapped home; there, validate its commits, build a small
    local model, run the pipeline, build triples, make a training plan, curate data, train a scope
    adapter and evaluate it on the later commits, then print the report's summary."""
    from appliance.demo import run_demo

    app: App = ctx.obj
    with progress_bar() as tick:
        result = run_demo(app.home, wheels=wheels, progress=tick, package_only=package_only, llama_cpp=llama_cpp)
    console.print(f"home:            {result.home}\nconnected home:  {result.connected_home}\n"
                  f"USB folder:      {result.usb}\nair-gapped home: {result.airgapped_home}",
                  highlight=False, soft_wrap=True)
    print_funnel(result.funnel)
    if not package_only:
        _loop_summary(result)
    console.print("next, on the air-gapped home:", highlight=False)
    for command in result.next_commands:
        console.print(f"  {command}", highlight=False, markup=False, soft_wrap=True)


def _loop_summary(result) -> None:
    from appliance.cli.evaluation import print_summary
    from appliance.db.core import Database
    from appliance.db.evaluation import get_evaluation

    valid = result.validated.get("valid", 0)
    console.print(f"validated: {valid} tasks ({', '.join(f'{k} {v}' for k, v in result.validated.items() if v)})",
                  highlight=False)
    for c in result.cycles:
        runs = sum(int(v.get("runs", 0)) for v in c.day.values())
        console.print(f"cycle {c.number}: {runs} pipeline runs, training plan {c.plan_id}, dataset {c.dataset_id}, "
                      f"scope adapter v{c.version}, evaluation {c.evaluation_id}: {c.decision}"
                      + (f" ({c.note})" if c.note else ""), highlight=False, soft_wrap=True)
    if result.evaluation_id is not None:
        with Database(result.airgapped_home / "var" / "cra.db") as db:
            print_summary(get_evaluation(db, result.evaluation_id))
    if result.report is not None:
        console.print(f"the HTML report: {result.report}", highlight=False, soft_wrap=True)
