"""What every ``cra`` command shares: the root group, the ``App`` context, the consoles,
JSON output and progress reporting.

The ``appliance.cli`` package is the only code that knows about the terminal. Library errors (``CraError``)
become one red line and an exit code: 0 done, 1 failed, 2 bad usage or bad input.
Every command reads and checks ``cra.toml`` before it does anything (``CheckedCommand``),
so a bad setting is refused by whichever command meets it first, not only by the ones
that happen to use that table.
"""

from __future__ import annotations

import json
import time
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
            if self.home.import_stagings():  # a killed import: undo it before anything reads
                from appliance.packaging.bundle import recover_imports

                recover_imports(self.home, self._db, wait=False)
        return self._db


pass_app = click.make_pass_decorator(App)

CURRENT: dict[str, App] = {}
"""The running command's ``App``, for the error boundary (which runs after its context closed)."""


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


PROGRESS_LINE_INTERVAL_S = 5.0


class ProgressLines:
    """Progress as plain lines on stderr, for a log file or a pipe (no terminal, no bar).

    One line when a step starts, then at most one per ``interval`` seconds, and one when
    it completes: a piped ``cra harness validate`` shows it is alive without flooding a log.
    """

    def __init__(self, console: Console, interval: float = PROGRESS_LINE_INTERVAL_S):
        self.console = console
        self.interval = interval
        self.started: dict[str, float] = {}
        self.last: dict[str, tuple[float, int]] = {}

    def __call__(self, step: str, done: int, total: int) -> None:
        now = time.monotonic()
        first = step not in self.started
        self.started.setdefault(step, now)
        last_at, last_done = self.last.get(step, (0.0, -1))
        complete = bool(total) and done >= total
        if done == last_done and not first:
            return
        if not (first or (complete and last_done < total) or now - last_at >= self.interval):
            return
        self.last[step] = (now, done)
        of = f"{done}/{total}" if total else str(done)
        pct = f" ({100 * done // total}%)" if total else ""
        self.console.print(f"{step}: {of}{pct}, {now - self.started[step]:.0f}s",
                           highlight=False, markup=False, soft_wrap=True)


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """Progress fed by ``progress(step, done, total)`` callbacks from the library: a rich bar
    on a terminal, else ``ProgressLines``."""
    if not err_console.is_terminal:
        yield ProgressLines(err_console)
        return
    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err_console, transient=False,
    )
    tasks: dict[str, Any] = {}

    def update(step: str, done: int, total: int) -> None:
        if step not in tasks:
            tasks[step] = bar.add_task(step, total=total or None)
        bar.update(tasks[step], completed=done, total=total or None)

    with bar:
        yield update


class CheckedCommand(click.Command):
    """A command that reads and checks ``cra.toml`` before it runs (after ``--help``)."""

    def invoke(self, ctx: click.Context) -> Any:
        app = ctx.find_object(App)
        if app is not None:
            app.settings  # noqa: B018 - loading checks every table and key; errors exit 2
        return super().invoke(ctx)


class CheckedGroup(click.Group):
    """A group whose commands, and sub-groups' commands, are ``CheckedCommand``s."""

    command_class = CheckedCommand
    group_class = type  # sub-groups are CheckedGroups too


@click.group(cls=CheckedGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    CURRENT["app"] = app
    ctx.call_on_close(lambda: [f() for f in app.cleanup])

