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
@click.pass_context
def demo(ctx: click.Context, wheels: Path | None) -> None:
    """The main job, end to end with no network: package the bundled sample repo, export it
    as a USB bundle, import it into a fresh air-gapped home and print its funnel."""
    from appliance.demo import run_demo

    app: App = ctx.obj
    with progress_bar() as tick:
        result = run_demo(app.home, wheels=wheels, progress=tick)
    console.print(f"home:            {result.home}\nconnected home:  {result.connected_home}\n"
                  f"USB folder:      {result.usb}\nair-gapped home: {result.airgapped_home}",
                  highlight=False, soft_wrap=True)
    print_funnel(result.funnel)
    console.print("next, on the air-gapped home:", highlight=False)
    for command in result.next_commands:
        console.print(f"  {command}", highlight=False, markup=False, soft_wrap=True)
