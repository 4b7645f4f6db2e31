"""`ropeconv extend`: rewrite a checkpoint's RoPE for a longer context."""

from __future__ import annotations

from pathlib import Path

import typer

from ropeconv.cli.common import (COMMIT_MESSAGE_OPTION, CREATE_PR_OPTION, DEBUG_OPTION, JSON_OPTION, PRIVATE_OPTION,
                                 PUSH_TO_OPTION, REVISION_OPTION, TOKEN_OPTION, console, escape_text, one_line,
                                 print_serve_commands, progress, push_output, run, serve_lines, unique)
from ropeconv.cli.params import MethodOptions, with_method_options
from ropeconv.errors import EXIT_FAILED, RopeconvError

BUFFERS_HELP = (
    "Stored rotary buffers (inv_freq, cos/sin caches) found in the weights: "
    "[b]rewrite[/] (default) writes the new method's values, for TGI and remote code that read them; "
    "[b]drop[/] removes them, as transformers ≥ 4.32 would save (it ignores them anyway); "
    "[b]keep[/] leaves them as they are, only right when nothing reads them."
)


def register(app: typer.Typer) -> None:
    app.command("extend", help="Rewrite a model's RoPE config (and stored buffers) for a longer context.",
                no_args_is_help=True)(extend_command)


@with_method_options
def extend_command(
    model: str = typer.Argument(..., help="Model folder, Hub repo id (org/name\\[@revision]) or .gguf file."),
    method: str = typer.Option(..., "--method", "-m", help="linear, ntk, dynamic, yarn, llama3 or longrope (see `ropeconv methods`)."),
    factor: str = typer.Option(None, "--factor", "-f", help="Scale factor S: the new context is L0 × S."),
    target_context: str = typer.Option(None, "--target-context", help="Target context N in tokens (S = N / L0), e.g. 32768 or 32k."),
    original_context: str = typer.Option(None, "--original-context", help="Override L0, the context the model was trained at."),
    output: Path = typer.Option(None, "--output", "-o", help="Output folder, or .gguf file for a GGUF source (default: <source>-<method>-x<factor> beside the source)."),
    buffers: str = typer.Option("rewrite", "--buffers", help=BUFFERS_HELP),
    copy: bool = typer.Option(False, "--copy", help="Copy unchanged weight files instead of hard-linking them."),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty output folder."),
    rebase: bool = typer.Option(False, "--rebase", help="Replace an existing scaling (computed from the unscaled base) instead of refusing."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the config diff and buffer changes; write nothing."),
    probe: bool = typer.Option(False, "--probe", help="Probe the output against its source (perplexity past L0 and short-context retention)."),
    push_to: str = PUSH_TO_OPTION,
    private: bool = PRIVATE_OPTION,
    revision: str = REVISION_OPTION,
    create_pr: bool = CREATE_PR_OPTION,
    commit_message: str = COMMIT_MESSAGE_OPTION,
    token: str = TOKEN_OPTION,
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
    method_opts: MethodOptions = None,
) -> None:
    def body() -> dict:
        from ropeconv import api
        from ropeconv.request import ConversionRequest

        request = ConversionRequest.build(method, factor=factor, target_context=target_context,
                                          original_context=original_context, params=method_opts.to_params(),
                                          output=output, buffers=buffers, copy=copy, force=force, rebase=rebase,
                                          dry_run=dry_run)
        with progress("writing output", enabled=not as_json and not dry_run) as advance:
            report = api.extend(model, request, advance=advance)
        if not dry_run and probe:
            from ropeconv.cli.probe import probe_progress
            from ropeconv.probe import run_probe

            try:
                report["probe"] = run_probe(report["output"], against=report["source"]["path"], quick=True,
                                            progress=probe_progress(enabled=not as_json))
            except RopeconvError as exc:  # the output exists: exit 2 ("nothing written") would be untrue
                raise RopeconvError(f"wrote {report['output']}, but its probe could not run: {exc.problem}",
                                    exc.fix, exit_code=EXIT_FAILED) from None
        if not dry_run and push_to:
            report["push"] = push_output(report["output"], push_to, as_json=as_json, private=private,
                                         revision=revision, create_pr=create_pr, commit_message=commit_message,
                                         token=token, source=report["source"])
        return report

    run(body, as_json=as_json, debug=debug, render=render_extend, exit_code=_exit_code)


def _exit_code(report: dict) -> int:
    verdict = (report.get("probe") or {}).get("verdict") or {}
    return 1 if verdict.get("status") == "fail" else 0


def render_extend(report: dict) -> None:
    """Every value shown can come from the model's files (model_type, a GGUF's tensor names, warnings that
    quote them) or a path: all of it goes through `escape_text` (markup on) or `one_line` (markup off)."""
    from rich.table import Table

    out = console()
    before, after = report["before"], report["after"]
    title = (f"dry run: would write {report['output']}" + (" (exists: needs --force)" if report.get("output_exists") else "")
             if report["dry_run"] else f"wrote {report['output']}")
    # the title holds a path: a line of its own, never wrapped (a table title wraps at the table's width)
    out.print(escape_text(f"{report['method']} ×{report['factor']:g} — {title}"), soft_wrap=True)
    table = Table()
    table.add_column("")
    table.add_column("before")
    table.add_column("after")
    for label, key in [("rope_type", "rope_type"), ("rope_theta", "rope_theta"),
                       ("max_position_embeddings", "max_position_embeddings"),
                       ("trained context L0", "original_context"), ("served context", "served_context"),
                       ("attention factor", "attention_factor")]:
        table.add_row(label, escape_text(_fmt(before.get(key))), escape_text(_fmt(after.get(key))))
    out.print(table)
    if report["dry_run"] or "metadata_changes" in report:  # GGUF: always show the metadata written
        for line in report["config_diff"]:
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
            out.print(one_line(line), style=style, markup=False)
    _print_files(out, report)
    for w in unique(report["warnings"]):
        out.print(f"[yellow]warning:[/] {escape_text(w)}", highlight=False)
    for rule in report.get("engine_rules", []):  # verified engine rules (ropeconv.engines.RULES)
        out.print(f"[yellow]warning:[/] {escape_text(rule['versions'])}: {escape_text(rule['computes'])} — "
                  f"{escape_text(rule['fix'])}", highlight=False)
    if not report["dry_run"]:
        print_serve_commands(out, serve_lines(report.get("launch", [])))
    if report.get("probe"):
        from ropeconv.cli.probe import render_probe

        render_probe(report["probe"])
    if report.get("push"):
        out.print(f"pushed: {one_line(report['push'].get('url'))}", markup=False)


def _print_files(out, report: dict) -> None:
    """What was written beside the config: buffers, the tokenizer cap, GGUF tensors, linked files."""
    buffers = report["buffers"]
    if buffers["found"] or buffers["pickled_shards"]:
        verb = {"rewrite": "rewrote" if not report["dry_run"] else "would rewrite",
                "drop": "dropped" if not report["dry_run"] else "would drop", "keep": "kept"}[buffers["mode"]]
        out.print(f"buffers: {verb} {len(buffers['changed']) or len(buffers['found'])} stored rotary tensors")
    if report.get("tokenizer_model_max_length"):
        out.print(f"tokenizer_config.json: model_max_length → {escape_text(report['tokenizer_model_max_length'])}")
    if report.get("tokenizer_class"):
        out.print(f"tokenizer_config.json: tokenizer_class → {escape_text(report['tokenizer_class'])} "
                  "(the name transformers 4.x readers, llama.cpp's converter among them, load)")
    if report.get("tensors"):
        t = report["tensors"]
        out.print(one_line(f"tensors: {t['copied']} copied byte for byte ({t['bytes_copied'] / 2**20:.0f} MiB)"
                           + (f", added {', '.join(t['added'])}" if t["added"] else "")
                           + (f", removed {', '.join(t['removed'])}" if t["removed"] else "")), markup=False)
    if "files" in report:
        f = report["files"]
        rewritten = len(f["rewritten"]) + len(f.get("written_json", []))
        out.print(f"files: {f['linked']} hard-linked, {f['copied']} copied, {rewritten} rewritten")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    return "—" if value is None else str(value)
