"""What every command shares: the --json/--debug options, error handling and output."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Callable

import typer

from ropeconv.errors import EXIT_INTERNAL, RopeconvError

JSON_OPTION = typer.Option(False, "--json", help="Print one machine-readable JSON document on stdout.")
DEBUG_OPTION = typer.Option(False, "--debug", help="Show the full traceback on errors.")
# Hub push options, shared by `push` and `extend --push-to`
PRIVATE_OPTION = typer.Option(False, "--private", help="Create the repo private (an existing repo keeps its visibility).")
REVISION_OPTION = typer.Option(None, "--revision", help="Branch to push to (created from main when missing).")
CREATE_PR_OPTION = typer.Option(False, "--create-pr", help="Open a pull request against main instead of committing.")
COMMIT_MESSAGE_OPTION = typer.Option(None, "--commit-message", help="Commit title (default: describes the conversion).")
TOKEN_OPTION = typer.Option(None, "--token", help="Hub token (default: HF_TOKEN, then the stored login). Never printed; "
                            "prefer HF_TOKEN, as options show up in the process list.")


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def run(body: Callable[[], Any], *, as_json: bool, debug: bool, render: Callable[[Any], None] | None = None,
        exit_code: Callable[[Any], int] | None = None) -> None:
    """Run a command body; print its result (JSON or rich); turn errors into one line + exit code.

    `body` returns a JSON-able result. `render(result)` prints it for people. `exit_code(result)`
    chooses a non-zero exit for results that are failures (a failed verdict, check errors).
    """
    try:
        result = body()
    except RopeconvError as exc:
        _fail(exc.line(), exc.exit_code, as_json, debug)
    except KeyboardInterrupt:
        _fail("interrupted", 130, as_json, debug)
    except Exception as exc:  # a bug: still one line unless --debug
        if isinstance(exc, (typer.Exit, typer.Abort, SystemExit)):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} — rerun with --debug and report it",
              EXIT_INTERNAL, as_json, debug)
    else:
        if as_json:
            sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
        elif render is not None:
            render(result)
        code = exit_code(result) if exit_code else 0
        if code:
            raise typer.Exit(code)


def _fail(message: str, code: int, as_json: bool, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exc()
    if as_json:
        sys.stdout.write(json.dumps({"error": message, "exit_code": code}) + "\n")
    console(stderr=True).print(f"[bold red]error:[/] {_escape(message)}")
    raise typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@contextmanager
def progress(description: str, total: float | None = None, *, enabled: bool = True):
    """A rich progress bar on stderr; yields `advance(n)`. Silent when disabled (e.g. --json)."""
    if not enabled:
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
