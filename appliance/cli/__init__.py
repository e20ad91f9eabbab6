"""The ``cra`` command line: parse arguments, call the library, print with rich.

One module per command group (``corpus``, ``harness``, ``triples``, ...), all hanging off
the root group in ``base``. This package is the only code that knows about the terminal.
Library errors (``CraError``) become one red line and an exit code: 0 done, 1 failed,
2 bad usage or bad input. Anything else is a bug of cra: as pypa/build does
(``build.__main__._handle_build_error``), its traceback is printed dimmed, kept in a log
file, and followed by one line saying it is a cra bug and where that log is.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.markup import escape
from rich.text import Text

from appliance.cli import (  # noqa: F401  (registers the commands)
    adapters,
    corpus,
    demo,
    doctor,
    evaluation,
    harness,
    serve,
    train,
    training,
    triples,
)
from appliance.cli.base import CURRENT, cli, err_console
from appliance.config import Home
from appliance.errors import CraError, Interrupted

__all__ = ["cli", "main"]

BUG_EXIT = 1


def crash_log(text: str, home: Home | None = None) -> Path:
    """Write a traceback to ``var/logs/crash-<UTC time>-<pid>.log`` (or the temp folder when
    the home is not writable); returns the file."""
    from appliance.atomic import write_atomic

    name = f"crash-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}.log"
    home = home or Home.from_env()
    for folder in (home.logs, Path(tempfile.gettempdir())):
        try:
            write_atomic(folder / name, text)
            return folder / name
        except OSError:
            continue
    raise OSError("no writable folder for the crash log")


def _bug(exc: BaseException, argv: list[str] | None) -> int:
    tb = "".join(traceback.format_exception(exc))
    err_console.print(Text(tb.rstrip(), style="dim"), soft_wrap=True)
    app = CURRENT.get("app")
    head = f"cra {' '.join(argv if argv is not None else sys.argv[1:])}\n"
    try:
        where = f"the traceback is in {crash_log(head + tb, app.home if app else None)}"
    except OSError:
        where = "the traceback is above"
    err_console.print(
        f"[red]error:[/] this is a cra bug, not your input ({escape(type(exc).__name__)}: "
        f"{escape(str(exc)[:200])}); {escape(where)}: please report it with that log",
        highlight=False, soft_wrap=True,
    )
    return BUG_EXIT


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map errors to exit codes (never a bare traceback)."""
    try:
        cli.main(args=argv, prog_name="cra", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except click.Abort:
        err_console.print("[red]aborted[/]")
        return 130
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]: finished work is saved; run the same command again to resume")
        return 130
    except Interrupted as exc:  # stopped at a resumable point: not a failure
        err_console.print(f"[yellow]interrupted:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except CraError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the boundary: a bug, reported as one
        return _bug(exc, argv)
    return 0
