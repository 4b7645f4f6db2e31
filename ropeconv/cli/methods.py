"""`ropeconv methods`: the scaling methods, what each costs and who honours it."""

from __future__ import annotations

import typer

from ropeconv.cli.common import DEBUG_OPTION, JSON_OPTION, console, run


def register(app: typer.Typer) -> None:
    app.command("methods", help="List the scaling methods: training needed, short-context cost, engine support.")(
        methods_command)


def methods_command(as_json: bool = JSON_OPTION, debug: bool = DEBUG_OPTION) -> None:
    def body() -> list[dict]:
        from ropeconv.methods import METHODS

        return [{"name": m.name, "convertible": m.convertible, "summary": m.summary, "training": m.training,
                 "short_context_cost": m.short_context, "engines": m.engines,
                 "parameters": {k: v for k, v in m.params.items()}} for m in METHODS.values()]

    def render(rows: list[dict]) -> None:
        from rich.table import Table

        table = Table(show_lines=True)
        for col in ("method", "what it does", "training", "short context", "engines"):
            table.add_column(col)
        for r in rows:
            name = r["name"] if r["convertible"] else f"{r['name']}\n(not convertible)"
            table.add_row(name, r["summary"], r["training"], r["short_context_cost"], r["engines"])
        console().print(table)

    run(body, as_json=as_json, debug=debug, render=render)
