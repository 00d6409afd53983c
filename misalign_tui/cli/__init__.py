"""The command line: bare ``misalign-tui`` opens the app; every subcommand is headless.

Each command group lives in its own module here and registers itself on ``cli``.
"""

from __future__ import annotations

import errno
import importlib
import pkgutil
import sqlite3
import sys

import click

from misalign_tui.cli.context import Context
from misalign_tui.core.errors import Cancelled, UserError
from misalign_tui.core.text import printable


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), envvar="MISALIGN_TUI_HOME",
              help="Workspace folder holding db/ and models/ (default: $MISALIGN_TUI_HOME, a db/ or models/ "
                   "in the current folder, else the user data folder).")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="misalign-tui")
@click.pass_context
def cli(click_ctx: click.Context, home: str | None, debug: bool) -> None:
    """Profile alignment trade-offs (safety, values, culture) of local GGUF models."""
    click_ctx.obj = Context(home, debug)
    if click_ctx.invoked_subcommand is None:
        from misalign_tui.tui.app import run_app

        run_app(click_ctx.obj)


# Every module in this package (but context) is a command group that registers itself on import.
for _module in pkgutil.iter_modules(__path__):
    if _module.name != "context":
        importlib.import_module(f"{__name__}.{_module.name}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2; no traceback without --debug."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="misalign-tui", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted; finished work is kept — run the same command again to resume", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted; finished work is kept — run the same command again to resume", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # a group without its subcommand: the help
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # One line, like every other user error: what is wrong, and where the options are listed.
        where = f" (misalign-tui {exc.ctx.command_path.split(' ', 1)[-1]} --help lists the options)" \
            if exc.ctx is not None and " " in exc.ctx.command_path else " (misalign-tui --help)"
        click.echo(f"error: {printable(exc.format_message()).rstrip('.')}{where}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Cancelled:
        click.echo("cancelled; finished work is kept — run the same command again to resume", err=True)
        sys.exit(130)
    except UserError as exc:
        if debug:
            raise
        click.echo(f"error: {printable(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except sqlite3.DatabaseError as exc:
        if debug:
            raise
        click.echo(f"error: database: {printable(str(exc))}", err=True)
        sys.exit(2)
    except OSError as exc:
        if debug:
            raise
        if exc.errno == errno.ENOSPC:
            click.echo(f"error: {exc.filename or 'disk'}: the disk is full; free space and rerun "
                       "(finished work is kept)", err=True)
        else:
            click.echo(printable(f"error: {exc.filename or ''}: {exc.strerror or exc}"), err=True)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback reaches the user
        if debug:
            raise
        click.echo(printable(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)"),
                   err=True)
        sys.exit(1)
