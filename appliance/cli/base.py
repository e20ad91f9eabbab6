"""What every ``cra`` command shares: the root group, the ``App`` context, the consoles,
JSON output and progress bars.

The ``appliance.cli`` package is the only code that knows about the terminal. Library errors (``CraError``)
become one red line and an exit code: 0 done, 1 failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from appliance.config import Home, Settings, load_settings

console = Console()
err_console = Console(stderr=True)


@dataclass
class App:
    """What every command needs, opened lazily so ``--help`` never touches the DB."""

    home: Home
    _settings: Settings | None = None
    _db: Any = None
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.home)
        return self._settings

    @property
    def db(self) -> Any:
        if self._db is None:
            from appliance.db.core import Database

            self._db = Database(self.home.db_path)
            self.cleanup.append(self._db.close)
        return self._db


pass_app = click.make_pass_decorator(App)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar fed by ``progress(step, done, total)`` callbacks from the library."""
    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err_console, transient=False,
        disable=not err_console.is_terminal,
    )
    tasks: dict[str, Any] = {}

    def update(step: str, done: int, total: int) -> None:
        if step not in tasks:
            tasks[step] = bar.add_task(step, total=total or None)
        bar.update(tasks[step], completed=done, total=total or None)

    with bar:
        yield update


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), envvar="CRA_HOME",
    help="State folder (corpus/, packages/, manifests/, adapters/, var/). Default: $CRA_HOME or the current directory.",
)
@click.version_option(package_name="cra", prog_name="cra", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """cra: mine real git history into coding tasks, run a local agent on them, and train
    adapters from what it did. Runs offline; only `cra corpus add` uses the network."""
    app = App(Home.from_env(home))
    ctx.obj = app
    ctx.call_on_close(lambda: [f() for f in app.cleanup])

