"""`ropeconv check`: portability findings for a model's RoPE config, an engine table, and --fix."""

from __future__ import annotations

from pathlib import Path

import typer

from ropeconv.cli.common import (DEBUG_OPTION, JSON_OPTION, console, escape_text, print_serve_commands, run,
                                 serve_lines, unique)

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def register(app: typer.Typer) -> None:
    app.command("check", help="Check a model's RoPE config for engine portability (exit 1 on errors, for CI).",
                no_args_is_help=True)(check_command)


def check_command(
    model: str = typer.Argument(..., help="Model folder, Hub repo id (org/name\\[@revision]) or .gguf file."),
    fix: bool = typer.Option(False, "--fix", help="Write a copy with every automatic fix applied (needs -o)."),
    output: Path = typer.Option(None, "--output", "-o", help="Output folder for --fix (the source is never modified)."),
    force: bool = typer.Option(False, "--force", help="With --fix: replace an existing non-empty output folder."),
    original_context: int = typer.Option(None, "--original-context", help="Override L0, the trained context."),
    engines: bool = typer.Option(True, "--engines/--no-engines", help="Show the per-engine table."),
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
) -> None:
    def body() -> dict:
        from ropeconv.check import run_check

        return run_check(model, original_context=original_context, fix=fix, output=output, force=force)

    run(body, as_json=as_json, debug=debug, render=lambda r: render_check(r, show_engines=engines),
        exit_code=lambda r: r["exit_code"])


def render_check(result: dict, show_engines: bool = True) -> None:
    """Every value shown can come from the model's files or the Hub (model_type, rope_type, keys, paths):
    all of it goes through `escape_text`."""
    from rich.padding import Padding

    out = console()
    where = result["source"].get("repo_id") or result["source"]["path"]
    rope = result.get("rope") or {}
    # the path on its own line, then an indented paragraph: no wrapped line starts with a model's text
    out.print(f"[bold]{escape_text(where)}[/]", highlight=False)
    about = str(result.get("model_type") or "?")
    if rope.get("rope_type"):
        about += (f", {rope['rope_type']}, θ {_number(rope['rope_theta'])}, L0 {rope['original_context']}, "
                  f"gives {rope['served_context']} tokens")
    out.print(Padding(escape_text(about), (0, 0, 0, 2), expand=False), soft_wrap=False, highlight=False)
    _print_findings(out, result["findings"])
    if show_engines and result.get("engines"):
        _print_engines(out, result["engines"])
    if show_engines:
        print_serve_commands(out, serve_lines(result.get("launch") or []))
    c = result["counts"]
    out.print(f"{c['error']} error(s), {c['warning']} warning(s), {c['info']} info")
    if result.get("fix"):
        fx = result["fix"]
        out.print(f"[bold]fixed[/] ({escape_text(', '.join(fx['applied']))}) → {escape_text(fx['output'])}")
        after = fx["after"]["counts"]
        out.print(f"after the fixes: {after['error']} error(s), {after['warning']} warning(s), {after['info']} info")
        for f in fx["not_fixed"]:
            out.print(f"  [yellow]not fixed automatically:[/] {escape_text(f['check'])} — {escape_text(f['fix'])}")


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _print_engines(out, rows: list[dict]) -> None:
    """The engine table; notes go below it, one wrapped paragraph each (in a column they would be cut
    mid-word at 80 columns), a note several engines share said once for all of them."""
    from rich.padding import Padding
    from rich.table import Table

    table = Table(title="what each engine does with it", title_justify="left")
    table.add_column("engine", no_wrap=True)
    table.add_column("context", no_wrap=True, justify="right")
    table.add_column("inv_freq")
    table.add_column("attention factor")
    notes: dict[str, list[str]] = {}
    for row in rows:
        inv_style, att_style = (("green" if status == "as intended" else "yellow"
                                 if status.startswith("as intended") else "red")
                                for status in (row["inv_freq"], row["attention_factor"]))
        table.add_row(escape_text(row["name"]), str(row["context"] if row["context"] is not None else "—"),
                      f"[{inv_style}]{escape_text(row['inv_freq'])}[/]",
                      f"[{att_style}]{escape_text(row['attention_factor'])}[/]")
        for note in row["notes"]:
            notes.setdefault(note, []).append(row["name"])
    out.print(table)
    for note, names in notes.items():
        out.print(Padding(escape_text(f"{', '.join(unique(names))}: {note}"), (0, 0, 0, 2), expand=False),
                  soft_wrap=False)


def _print_findings(out, findings: list[dict]) -> None:
    from rich.padding import Padding

    if not findings:
        out.print("[green]no findings[/]")
        return
    seen = set()
    for f in findings:
        said = (f["check"], f["key"], f["problem"])
        if said in seen:  # two layers reporting the same problem on the same key: once is enough
            continue
        seen.add(said)
        sev = f["severity"]
        out.print(f"[{STYLE.get(sev, 'bold')}]{escape_text(f'{sev:<7}')}[/] [bold]{escape_text(f['check'])}[/] "
                  f"{escape_text(f['key'])}")
        # indented paragraphs: wrapped lines keep the indent and break between words
        out.print(Padding(escape_text(f["problem"]), (0, 0, 0, 8), expand=False), soft_wrap=False)
        if f["engines"]:
            engines_line = f"engines: {escape_text(', '.join(f['engines']))}"
            out.print(Padding(engines_line, (0, 0, 0, 8), expand=False), soft_wrap=False)
        out.print(Padding(f"fix: {escape_text(f['fix'])}" + (" [dim](--fix applies it)[/]" if f["auto_fix"] else ""),
                          (0, 0, 0, 8), expand=False), soft_wrap=False)
