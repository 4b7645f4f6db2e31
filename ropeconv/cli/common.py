"""What every command shares: the --json/--debug options, error handling and output."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Callable

import typer

from ropeconv.errors import EXIT_INTERNAL, RopeconvError
from ropeconv.request import RequestError, cli_flag

JSON_OPTION = typer.Option(False, "--json", help="Print one machine-readable JSON document on stdout.")
DEBUG_OPTION = typer.Option(False, "--debug", help="Show the full traceback on errors.")
# Hub push options, shared by `push`, `extend --push-to` and `tune --push-to`
PRIVATE_OPTION = typer.Option(False, "--private", help="Create the repo private (an existing repo keeps its visibility).")
REVISION_OPTION = typer.Option(None, "--revision", help="Branch to push to (created from main when missing).")
CREATE_PR_OPTION = typer.Option(False, "--create-pr", help="Open a pull request against main instead of committing.")
COMMIT_MESSAGE_OPTION = typer.Option(None, "--commit-message", help="Commit title (default: describes the conversion).")
PUSH_TO_OPTION = typer.Option(None, "--push-to", help="Push the output to this Hub repo (with a model card).")
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
        if isinstance(exc, RequestError):  # worded with the command line's spelling: --factor, not factor
            exc = exc.worded(cli_flag)
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
    from ropeconv.redact import redact

    message = redact(message)  # an error from any layer never shows a token or a URL's password
    if debug:
        import traceback

        traceback.print_exc()
    if as_json:
        sys.stdout.write(json.dumps({"error": one_line(message), "exit_code": code}) + "\n")
    console(stderr=True).print(f"[bold red]error:[/] {_escape(message)}")
    raise typer.Exit(code)


def escape_text(text: str) -> str:
    """THE escaping rule for untrusted text (from a model's files, the Hub, a path) printed with rich
    markup on: one line (control characters shown escaped) and rich markup escaped."""
    from rich.markup import escape

    return escape(one_line(text))


_escape = escape_text  # the older private name (ropeconv/cli/__init__.py uses it)

SERVE_HEADING = "serve it:"
REQUIRED_MARK = "required for the full context"


def serve_lines(launch: list[dict]):
    """The serve lines of a report's JSON "launch" section, as `ropeconv.launch.LaunchLine`s."""
    from ropeconv.launch import SERVE, LaunchLine

    return [LaunchLine(**line) for line in launch if line["kind"] == SERVE]


def print_labelled(out, label: str, text: str) -> None:
    """`label` (markup) then `text` (escaped markup) wrapped under itself — a hanging indent, so no wrapped
    line starts with text a model's files supplied (a value holding "error: …" cannot begin a line)."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 1, 0, 0))
    grid.add_column(no_wrap=True)
    grid.add_column()
    grid.add_row(label, text)
    out.print(grid)


def unique(texts) -> list:
    """`texts` without repeats, in order (a warning said by two layers is printed once)."""
    return list(dict.fromkeys(texts))


def print_serve_commands(out, lines) -> None:
    """The "serve it:" block: per `ropeconv.launch.LaunchLine`, the engine — with why, where the line is
    `needed` for the full context — then the command on a line of its own, never wrapped by rich (soft
    wrap, no cropping), so a command wider than the terminal still copies whole. Every piece is escaped:
    commands carry paths, and `why` can quote a model's values."""
    from rich.padding import Padding

    if not lines:
        return
    out.print(f"[bold]{SERVE_HEADING}[/]", highlight=False)
    for line in lines:
        label = f"[bold]{escape_text(line.engine)}[/]"
        if line.needed:
            label += f" — {REQUIRED_MARK}: {escape_text(line.why)}"
        out.print(Padding(label, (0, 0, 0, 2), expand=False), soft_wrap=False, highlight=False)
        # the command itself: plain text, no markup, no wrapping, no cropping
        out.print("    " + one_line(line.command), markup=False, highlight=False, soft_wrap=True, crop=False,
                  overflow="ignore")


def one_line(text: str) -> str:
    """`text` on one line: newlines and other control characters (from a path, a value or a server
    message) are shown escaped, so nothing a user or file supplies can forge a second `error:` line."""
    from ropeconv import text as untrusted

    return untrusted.one_line(text)


def usage_error_line(exc, args: list[str] | None = None) -> str:
    """A click usage error (unknown option, bad value, missing argument) as one line with the fix."""
    from ropeconv.cli.click_compat import click_exceptions as _click

    click = _click()
    message = " ".join(exc.format_message().split())  # click puts its did-you-mean on a second line
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "ropeconv"
    message = message.replace("(Possible options:", "(did you mean one of:").rstrip(".")
    message = message.replace(". (did you mean", " (did you mean")
    if isinstance(exc, click.UsageError):
        return f"{message[:1].lower() + message[1:]} — see `{where} --help`"
    return message


@contextmanager
def progress(description: str, total: float | None = None, *, enabled: bool = True):
    """A rich progress bar on stderr; yields `advance(n)`. Silent when disabled (e.g. --json) and when
    stderr is not a terminal: rich then prints an empty line as the bar stops, so an error that follows
    would be two lines."""
    err = console(stderr=True)
    if not enabled or not err.is_terminal:
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def push_output(folder: str, repo_id: str, *, as_json: bool, **options) -> dict:
    """`--push-to` after a command wrote its output: the folder goes to the Hub with its model card."""
    from ropeconv import hub

    if as_json:  # one JSON document on stdout, no client progress bars on stderr
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    return hub.push_folder(folder, repo_id, **options)
