"""`ropeconv check`: portability findings for a model's RoPE config, an engine table, and --fix."""

from __future__ import annotations

from pathlib import Path

import typer

from ropeconv.cli.common import DEBUG_OPTION, JSON_OPTION, console, run

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
    from rich.markup import escape
    from rich.padding import Padding
    from rich.table import Table

    out = console()
    where = result["source"].get("repo_id") or result["source"]["path"]
    rope = result.get("rope") or {}
    head = f"[bold]{escape(where)}[/] ({escape(str(result.get('model_type') or '?'))}"
    if rope.get("rope_type"):
        head += (f", {rope['rope_type']}, θ {rope['rope_theta']:g}, L0 {rope['original_context']}, "
                 f"gives {rope['served_context']} tokens")
    out.print(head + ")", soft_wrap=False)
    _print_findings(out, result["findings"])
    if show_engines and result.get("engines"):
        # notes go below the table, one wrapped paragraph each: in a column they would be cut mid-word
        # at 80 columns
        table = Table(title="what each engine does with it", title_justify="left")
        table.add_column("engine", no_wrap=True)
        table.add_column("context", no_wrap=True, justify="right")
        table.add_column("inv_freq")
        table.add_column("attention factor")
        notes = []
        for row in result["engines"]:
            inv_style, att_style = (("green" if status == "as intended" else "yellow"
                                     if status.startswith("as intended") else "red")
                                    for status in (row["inv_freq"], row["attention_factor"]))
            table.add_row(row["name"], str(row["context"] if row["context"] is not None else "—"),
                          f"[{inv_style}]{escape(row['inv_freq'])}[/]",
                          f"[{att_style}]{escape(row['attention_factor'])}[/]")
            notes.extend(f"{row['name']}: {note}" for note in row["notes"])
        out.print(table)
        for note in notes:
            out.print(Padding(escape(note), (0, 0, 0, 2), expand=False), soft_wrap=False)
    if result.get("launch"):
        out.print("[bold]to serve the full context[/]")
        for line in result["launch"]:
            command = f"{escape(line['engine'])}: {escape(line['command'])}"
            out.print(Padding(command, (0, 0, 0, 2), expand=False), soft_wrap=False)
            out.print(Padding(f"[dim]{escape(line['why'])}[/]", (0, 0, 0, 4), expand=False), soft_wrap=False)
    c = result["counts"]
    out.print(f"{c['error']} error(s), {c['warning']} warning(s), {c['info']} info")
    if result.get("fix"):
        fx = result["fix"]
        out.print(f"[bold]fixed[/] ({', '.join(fx['applied'])}) → {escape(fx['output'])}")
        after = fx["after"]["counts"]
        out.print(f"after the fixes: {after['error']} error(s), {after['warning']} warning(s), {after['info']} info")
        for f in fx["not_fixed"]:
            out.print(f"  [yellow]not fixed automatically:[/] {escape(f['check'])} — {escape(f['fix'])}")


def _print_findings(out, findings: list[dict]) -> None:
    from rich.markup import escape
    from rich.padding import Padding

    if not findings:
        out.print("[green]no findings[/]")
        return
    for f in findings:
        sev = f["severity"]
        out.print(f"[{STYLE[sev]}]{sev:<7}[/] [bold]{escape(f['check'])}[/] {escape(f['key'])}")
        # indented paragraphs: wrapped lines keep the indent and break between words
        out.print(Padding(escape(f["problem"]), (0, 0, 0, 8), expand=False), soft_wrap=False)
        if f["engines"]:
            engines_line = f"engines: {escape(', '.join(f['engines']))}"
            out.print(Padding(engines_line, (0, 0, 0, 8), expand=False), soft_wrap=False)
        out.print(Padding(f"fix: {escape(f['fix'])}" + (" [dim](--fix applies it)[/]" if f["auto_fix"] else ""),
                          (0, 0, 0, 8), expand=False), soft_wrap=False)
