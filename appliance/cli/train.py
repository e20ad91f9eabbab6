"""``cra train SLOT --dataset ID``: one LoRA adapter, registered as the slot's candidate."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from appliance.cli.base import App, cli, console, emit_json, err_console, pass_app
from appliance.status import AdapterSlot, values


@contextmanager
def training_bar(slot: str) -> Iterator[Callable[[Any], None]]:
    """A rich bar with the step, the loss and tokens per second, fed by the trainer's reports."""
    bar = Progress(TextColumn(f"[bold]{slot}[/]"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} tok/s"),
                   TimeElapsedColumn(), console=err_console, disable=not err_console.is_terminal)
    task = bar.add_task("train", total=None, loss="-", speed="-")

    def update(report: Any) -> None:
        bar.update(task, completed=report.step, total=report.total or None,
                   loss=f"{report.loss:.4f}" if report.loss is not None else "-",
                   speed=f"{report.tokens_per_s:,.0f}" if report.tokens_per_s else "-")

    with bar:
        yield update


@cli.command("train")
@click.argument("slot", type=click.Choice(values(AdapterSlot)))
@click.option("--dataset", "dataset_id", type=int, required=True, metavar="ID",
              help="The curated dataset to train on (cra curate-data prints its id).")
@click.option("--recipe", type=click.Path(dir_okay=False, path_type=Path),
              help="A recipe file instead of adapters/<slot>.toml.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run of this recipe and dataset "
              "from its last checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def train_cmd(app: App, slot: str, dataset_id: int, recipe: Path | None, resume: bool, as_json: bool) -> None:
    """Train SLOT's LoRA adapter on a curated dataset, from the frozen base model.

    peft + trl on the CPU (or anywhere without CUDA); on CUDA unsloth QLoRA when installed,
    else peft + bitsandbytes; several GPUs through accelerate with DeepSpeed ZeRO-2. The
    result is adapters/SLOT/vN (PEFT, a GGUF copy, metadata.json with every file's sha256),
    registered as the slot's candidate. Ctrl-C saves a checkpoint: rerun with --resume."""
    from appliance.training.trainer import train

    with training_bar(slot) as report:
        result = train(app.home, app.db, slot, dataset_id, settings=app.settings, recipe_file=recipe,
                       resume=resume, progress=report)
    if as_json:
        emit_json(result.to_dict())
        return
    o = result.outcome
    loss = f"loss {o.train_loss:.4f}" if o.train_loss is not None else "no loss"
    if "eval_loss" in o.eval:
        loss += f" (valid {o.eval['eval_loss']:.4f})"
    speed = f"{o.tokens_per_s:,.0f} tok/s" if o.tokens_per_s else "-"
    resumed = f", resumed at step {o.resumed_from_step}" if o.resumed_from_step else ""
    console.print(f"[green]{result.version.name}[/] trained ({o.steps} steps{resumed}, {loss}, {speed}, "
                  f"{result.wall_s:.0f} s on {o.device} with {o.backend}) -> {result.version.path}, now the "
                  f"{slot} candidate")
    console.print(f"promote it with: cra adapters promote {slot}")
