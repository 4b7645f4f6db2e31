"""The `ropeconv` command: a thin typer layer over the library API.

Each command lives in its own module with a `register(app)` function. Command modules import
only light things at the top (typer, rich, ropeconv's pure modules): torch and transformers are
imported inside the functions that need them, so `--help` and `inspect` stay fast.
"""

from __future__ import annotations

import importlib

import typer

from ropeconv import __version__

EPILOG = (
    "Exit codes: 0 success; 1 a probe verdict failed or check found errors; "
    "2 bad input (nothing written); 3 Hub error; 4 internal error (rerun with --debug)."
)

app = typer.Typer(
    name="ropeconv",
    help="Give RoPE language models a longer context window, correctly, for every engine.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Command modules, in the order `--help` lists them. A module that is not there yet is skipped,
# so features can land one at a time.
COMMAND_MODULES = ["extend", "inspect", "methods", "check", "probe", "push", "batch"]


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
