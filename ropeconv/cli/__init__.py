"""The `ropeconv` command: a thin typer layer over the library API.

Each command lives in its own module with a `register(app)` function. Command modules import
only light things at the top (typer, rich, ropeconv's pure modules): torch and transformers are
imported inside the functions that need them, so `--help` and `inspect` stay fast.
"""

from __future__ import annotations

import importlib

import typer
from typer.core import TyperGroup

from ropeconv import __version__
from ropeconv.cli.click_compat import click_exceptions
from ropeconv.errors import EXIT_BAD_INPUT

EPILOG = (
    "Exit codes: 0 success; 1 a probe verdict failed or check found errors; "
    "2 bad input (nothing written); 3 Hub error; 4 internal error (rerun with --debug)."
)



class _OneLineErrors(TyperGroup):
    """The command group: a usage error (unknown option, a value of the wrong type, a missing argument)
    is one `error:` line and exit 2, like every other bad input — not click's usage box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        import sys

        click = click_exceptions()
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.NoArgsIsHelpError as exc:  # `ropeconv` or a command alone: its help
            click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
            sys.exit(0)
        except click.ClickException as exc:
            from ropeconv.cli.common import _escape, console, one_line, usage_error_line

            line = usage_error_line(exc, argv)
            if "--json" in argv:
                import json

                sys.stdout.write(json.dumps({"error": one_line(line), "exit_code": EXIT_BAD_INPUT}) + "\n")
            console(stderr=True).print(f"[bold red]error:[/] {_escape(line)}")
            sys.exit(EXIT_BAD_INPUT)
        except typer.Abort:
            from ropeconv.cli.common import console

            console(stderr=True).print("[bold red]error:[/] interrupted")
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="ropeconv",
    cls=_OneLineErrors,
    help="Give RoPE language models a longer context window, correctly, for every engine.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Command modules, in the order `--help` lists them. A module that is not there yet is skipped,
# so features can land one at a time.
COMMAND_MODULES = ["extend", "inspect", "methods", "check", "probe", "tune", "finetune", "push", "batch"]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ropeconv {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Give RoPE language models a longer context window, correctly, for every engine."""


for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"ropeconv.cli.{_name}")
    except ModuleNotFoundError as exc:  # a command not written yet
        if exc.name != f"ropeconv.cli.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    app()
