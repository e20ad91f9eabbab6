"""The ``cra`` command line: parse arguments, call the library, print with rich.

One module per command group (``corpus``, ``harness``, ``triples``, ...), all hanging off
the root group in ``base``. This package is the only code that knows about the terminal.
Library errors (``CraError``) become one red line and an exit code: 0 done, 1 failed,
2 bad usage or bad input.
"""

from __future__ import annotations

import sys

import click
from rich.markup import escape

from appliance.cli import corpus, demo, doctor, harness, triples  # noqa: F401  (registers the commands)
from appliance.cli.base import cli, err_console
from appliance.errors import CraError

__all__ = ["cli", "main"]

def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map errors to exit codes (never a traceback for an expected error)."""
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
    except CraError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
