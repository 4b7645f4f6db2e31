"""The human-readable probe report: a before/after table per length, the position buckets of the
longest length, the verdict. `extend --probe` prints the same report."""

from __future__ import annotations

from ropeconv.probe.verdict import _f


def render(result: dict, console=None) -> None:
    from rich.table import Table

    if console is None:
        from ropeconv.cli.common import console as make_console

        console = make_console()
    against = result.get("against") is not None
    trained = result["trained_context"]
    runs = result["results"]

    table = Table(title=f"Perplexity (lower is better; L0 = {trained})", title_justify="left")
    table.add_column("length", justify="right")
    if against:
        for head in ("before", "after", "before, past L0", "after, past L0", "after, last ¼"):
            table.add_column(head, justify="right")
        for run in runs:
            b, a = run["against"], run["model"]
            table.add_row(str(run["length"]), _f(b["ppl"]), _f(a["ppl"]), _f(b["ppl_beyond"]), _f(a["ppl_beyond"]),
                          _f(a["ppl_last_quarter"]))
    else:
        for head in ("all", "inside L0", "past L0", "last ¼"):
            table.add_column(head, justify="right")
        for run in runs:
            m = run["model"]
            table.add_row(str(run["length"]), _f(m["ppl"]), _f(m["ppl_inside"]), _f(m["ppl_beyond"]),
                          _f(m["ppl_last_quarter"]))
    console.print(table)

    longest = runs[-1]
    buckets = Table(title=f"By position, {longest['length']} tokens", title_justify="left")
    buckets.add_column("positions", justify="right")
    buckets.add_column("where")
    if against:
        buckets.add_column("before", justify="right")
    buckets.add_column("after" if against else "perplexity", justify="right")
    before_rows = longest["against"]["buckets"] if against else [None] * len(longest["model"]["buckets"])
    for row, base in zip(longest["model"]["buckets"], before_rows):
        cells = [f"{row['start']}–{row['end']}", {"inside": "inside L0", "beyond": "past L0"}.get(row["region"], "mixed")]
        if against:
            cells.append(_f(base["ppl"]))
        cells.append(_f(row["ppl"]))
        buckets.add_row(*cells)
    console.print(buckets)

    passkey = result.get("passkey")
    if passkey:
        depths = ", ".join(f"{d:g}" for d in passkey["depths"])
        console.print(f"Passkey (depths {depths}): " + "; ".join(
            f"{p['length']}: {p['accuracy']:.0%}" for p in passkey["per_length"]))

    text = result["text"]
    console.print(f"[dim]text: {_escape(text['name'])}, sha256 {text['sha256'][:12]}…; device {result['device']}, "
                  f"{result['dtype']}; {result['seconds']:.0f} s[/]")
    for warning in result.get("warnings", []):
        console.print(f"[yellow]warning:[/] {_escape(warning)}")
    if result.get("hint"):
        console.print(f"[dim]{_escape(result['hint'])}[/]")
    verdict = result["verdict"]
    for check in verdict["checks"]:
        mark = "[green]✓[/]" if check["passed"] else "[red]✗[/]"
        console.print(f"{mark} {_escape(check['detail'])}")
    style = {"pass": "bold green", "fail": "bold red"}.get(verdict["status"], "bold yellow")
    console.print(f"[{style}]verdict: {_escape(verdict['summary'])}[/]")
    if result.get("saved"):
        console.print(f"[dim]saved {_escape(result['saved'])}[/]")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(str(text))
