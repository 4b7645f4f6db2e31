"""`ropeconv batch`: run the conversions the recipes (TOML files in recipes/) describe."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer

from ropeconv.cli.common import DEBUG_OPTION, JSON_OPTION, _escape, console, one_line, run

HELP = (
    "Build, probe and push the conversions described by recipe files (TOML; default: recipes/), "
    "skipping every conversion whose source revision, recipe and ropeconv version are unchanged since "
    "its last successful build. All recipes are validated before anything is downloaded.\n\n"
    "Exit codes: 0 all built or skipped; 1 a probe verdict failed, or a probe could not run on an output "
    "already built (not pushed); 2 an invalid recipe or input (nothing was run); 3 a Hub error; 4 internal "
    "error. With several failures, the largest code."
)


def register(app: typer.Typer) -> None:
    app.command("batch", help=HELP)(batch_command)


def batch_command(
    paths: Optional[List[str]] = typer.Argument(None, help="Recipe files or folders (default: recipes/)."),
    only: Optional[List[str]] = typer.Option(None, "--only", help="Run only this conversion (repeat it, or "
                                             "separate names with commas)."),
    shard: str = typer.Option(None, "--shard", help="Run shard I of N (e.g. 2/4; from 1): the names, sorted, "
                              "are dealt round-robin, so every conversion is in exactly one shard."),
    list_: bool = typer.Option(False, "--list", help="List the selected conversions and exit; with --json, a "
                               "GitHub Actions matrix: {\"include\": [{name, shard, source, …}]}."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Explain what each conversion would do; no network, "
                                 "nothing written."),
    continue_on_error: bool = typer.Option(False, "--continue-on-error", help="Go on after a failed conversion "
                                           "(the exit code still reports it)."),
    state: Path = typer.Option(None, "--state", help="State file recording the last successful builds "
                               "(default: .ropeconv-state.json in the recipes folder)."),
    report: Path = typer.Option(None, "--report", help="Also write the JSON report to this file (written even "
                                "when the run fails)."),
    output_dir: Path = typer.Option(Path("ropeconv-out"), "--output-dir", help="Where outputs go when a recipe "
                                    "names no output: <output dir>/<name>."),
    no_probe: bool = typer.Option(False, "--no-probe", help="Skip the probes (e.g. on a runner without a GPU); "
                                  "a later run with the probe rebuilds and probes."),
    no_push: bool = typer.Option(False, "--no-push", help="Build (and probe) without pushing; the state file "
                                 "decides the skips."),
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
) -> None:
    chosen_paths = list(paths or ["recipes"])

    def body() -> dict:
        from ropeconv import batch
        from ropeconv.errors import RopeconvError
        from ropeconv.recipes import RecipeError

        try:
            if list_:
                return batch.list_conversions(chosen_paths, only=only, shard=shard)
            if as_json:
                from huggingface_hub.utils import disable_progress_bars

                disable_progress_bars()
            result = batch.run_batch(chosen_paths, only=only, shard=shard, dry_run=dry_run,
                                     continue_on_error=continue_on_error, state=state, output_dir=output_dir,
                                     probe=not no_probe, push=not no_push, reporter=reporter(as_json))
        except RopeconvError as exc:
            if report is not None:
                batch.write_report(report, batch.error_document(exc))
            if isinstance(exc, RecipeError) and len(exc.problems) > 1:
                fail_with_problems(exc, as_json)
            raise
        if report is not None:
            batch.write_report(report, result)
        return result

    def render(result: dict) -> None:
        if list_:
            render_list(result)
        else:
            render_report(result)

    run(body, as_json=as_json, debug=debug, render=render,
        exit_code=lambda result: 0 if list_ else int(result.get("exit_code") or 0))


def fail_with_problems(exc, as_json: bool) -> None:
    """Invalid recipes: a header line, then one line per problem (each `file:line: what — fix`, its
    control characters shown escaped, so no recipe text can forge a line of its own); exit 2."""
    import json
    import sys

    from ropeconv.cli.common import one_line

    header = f"{len(exc.problems)} problems in the recipes (nothing was run):"
    if as_json:
        sys.stdout.write(json.dumps({"error": header, "exit_code": exc.exit_code, **exc.to_dict()}) + "\n")
    err = console(stderr=True)
    err.print(f"[bold red]error:[/] {header}")
    for problem in exc.problems:
        err.print(f"  {one_line(problem.text())}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def reporter(as_json: bool):
    """The run's terminal output: step lines and progress bars on stderr; nothing with --json."""
    from ropeconv.batch import Reporter

    if as_json:
        return Reporter()
    from ropeconv.cli.common import progress
    from ropeconv.cli.probe import probe_progress

    @contextmanager
    def probing():
        shown = probe_progress(enabled=True)
        try:
            yield shown
        finally:
            shown.close()

    err = console(stderr=True)
    return Reporter(log=lambda line: err.print(one_line(line), markup=False),
                    writing=lambda description: progress(description, enabled=True), probing=probing)


STATUS_STYLE = {"built": "green", "skipped": "dim", "would skip": "dim", "would build": "cyan",
                "would check": "cyan", "failed": "red", "error": "red", "not run": "yellow"}


def render_list(result: dict) -> None:
    from rich.table import Table

    rows = result["include"]
    table = Table(title=f"{len(rows)} conversion(s)", title_justify="left")
    for column in ("name", "shard", "recipe", "source", "conversion", "probe", "push to"):
        table.add_column(column, overflow="fold")
    for row in rows:
        scale = f"×{row['factor']:g}" if row.get("factor") else f"→ {row.get('target_context')}"
        # cells are rich markup: recipe text (a source, a path) is shown escaped, on one line
        table.add_row(_escape(row["name"]), _escape(row["shard"]), _escape(f"{row['file']}:{row['line']}"),
                      _escape(row["source"]), _escape(f"{row['method']} {scale}"), "yes" if row["probe"] else "—",
                      _escape((row.get("push_to") or "—") + (" (PR)" if row.get("create_pr") else "")))
    console().print(table)


def render_report(result: dict) -> None:
    from rich.table import Table

    out = console()
    rows = result["conversions"]
    if result["dry_run"]:
        for row in rows:
            out.print(f"[bold]{_escape(row['name'])}[/] ({_escape(row['file'])}:{row['line']}): "
                      f"[{STATUS_STYLE.get(row['status'], 'white')}]{row['status']}[/]")
            for line in row["explain"]:
                out.print(f"  {one_line(line)}", markup=False)
            for warning in row["warnings"]:
                out.print(f"  [yellow]warning:[/] {_escape(warning)}")
        if rows:
            out.print()
    title = "dry run — nothing was downloaded or written" if result["dry_run"] else "ropeconv batch"
    if not rows:
        out.print(f"{title}: no conversion selected ({result['total']} in the recipes"
                  f"{', shard ' + result['shard'] if result.get('shard') else ''})")
        return
    table = Table(title=title, title_justify="left")
    for column in ("conversion", "result", "source", "method", "probe", "push", "why"):
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = describe_outcome(row, result["dry_run"])
        style = STATUS_STYLE.get(row["status"], "white")
        table.add_row(_escape(row["name"]), f"[{style}]{row['status']}[/]", _escape(row["source"]),
                      _escape(row["scale"]), _escape(cells["probe"]), _escape(cells["push"]), _escape(cells["why"]))
    out.print(table)
    counts = ", ".join(f"{n} {status}" for status, n in result["counts"].items())
    out.print(one_line(f"{result['selected']} of {result['total']} conversion(s): {counts} "
                       f"({result['seconds']:.1f} s; state: {result['state_file']})"), markup=False)
    for warning in result.get("warnings") or []:
        out.print(f"[yellow]warning:[/] {_escape(warning)}")


def describe_outcome(outcome: dict, dry_run: bool = False) -> dict[str, str]:
    """Short cells for the summary table."""
    if dry_run:
        return {"probe": "planned" if outcome.get("probe_planned") else "—", "push": outcome.get("push_to") or "—",
                "why": outcome.get("short_reason") or ""}
    probe = outcome.get("probe") or {}
    push = outcome.get("push") or {}
    return {"probe": probe.get("status") or "—", "push": push.get("url") or push.get("status") or "—",
            "why": outcome.get("reason") or ""}
