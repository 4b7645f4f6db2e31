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

    run(body, as_json=as_json, debug=debug, render=render_methods)


# Below this width five columns of prose are too narrow: one block per method instead.
TABLE_MIN_WIDTH = 140


def render_methods(rows: list[dict], out=None) -> None:
    """Prose wraps at spaces at any width: a five-column table on wide terminals, else one block of
    label/text rows per method."""
    from rich.table import Table

    out = out or console()
    out.soft_wrap = False
    labels = (("what it does", "summary"), ("training", "training"), ("short context", "short_context_cost"),
              ("engines", "engines"))
    if out.width >= TABLE_MIN_WIDTH:
        table = Table(show_lines=True)
        table.add_column("method", no_wrap=True)
        for label, _ in labels:
            table.add_column(label)
        for r in rows:
            name = r["name"] if r["convertible"] else f"{r['name']}\n(not convertible)"
            table.add_row(name, *(r[key] for _, key in labels))
        out.print(table)
        return
    for r in rows:
        title = r["name"] + ("" if r["convertible"] else " (not convertible)")
        table = Table(title=title, title_justify="left", title_style="bold", show_header=False, box=None,
                      padding=(0, 1, 0, 2))
        table.add_column(no_wrap=True, style="dim")
        table.add_column()
        for label, key in labels:
            table.add_row(label, r[key])
        out.print(table)
        out.print()
