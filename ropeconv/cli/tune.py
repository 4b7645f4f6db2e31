"""`ropeconv tune`: search a method's parameters by measured perplexity and write the winner."""

from __future__ import annotations

from pathlib import Path

import typer

from ropeconv.cli.common import (COMMIT_MESSAGE_OPTION, CREATE_PR_OPTION, DEBUG_OPTION, JSON_OPTION, PRIVATE_OPTION,
                                 PUSH_TO_OPTION, REVISION_OPTION, TOKEN_OPTION, console, escape_text, one_line,
                                 print_serve_commands, push_output, run, serve_lines, unique)
from ropeconv.errors import RopeconvError

HELP = (
    "Find the training-free scaling that measures best on this model: an Optuna search over one "
    "method's parameters (yarn: factor, betas, attention factor; ntk: θ; longrope: per-pair factors), "
    "minimising perplexity past L0 at the target length while perplexity on a 4k window stays within "
    "--max-short-ratio of the unscaled model's. The winner is written like `extend` writes it, with "
    "tune.json (every trial) and tune.png. The study lives in SQLite beside the output: run the same "
    "command again to resume, or with --worker (same --storage) from a second process to share it."
)
TEXT_HELP = "UTF-8 calibration text (default: the probe's Python standard-library text)."


def register(app: typer.Typer) -> None:
    app.command("tune", help=HELP, no_args_is_help=True)(tune_command)


def tune_command(
    model: str = typer.Argument(..., help="Unscaled model folder or Hub repo id (org/name\\[@revision])."),
    target_context: str = typer.Option(..., "--target-context", help="Context to tune for, in tokens, e.g. 16k or 32768."),
    method: str = typer.Option("yarn", "--method", "-m", help="yarn, ntk or longrope."),
    budget: int = typer.Option(None, "--budget", help="Finished trials in the study (default 20; counts "
                               "trials of earlier runs and other workers)."),
    time_limit: str = typer.Option(None, "--time", help="Stop starting trials after this long, e.g. 30m, 2h."),
    text: Path = typer.Option(None, "--text", help=TEXT_HELP),
    dataset: str = typer.Option(None, "--dataset", help="Hugging Face dataset NAME[:config[:split]] as calibration text."),
    output: Path = typer.Option(None, "--output", "-o", help="Output folder (default: <source>-tuned-<method>-<target> "
                                "beside the source)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty output folder. The study's "
                               "stored trials are kept: the search continues from them up to --budget (a larger "
                               "--budget adds trials); for a fresh search pass another --storage or --seed."),
    max_short_ratio: float = typer.Option(None, "--max-short-ratio", help="Bound on perplexity at 4k tokens over the "
                                          "unscaled model's (default: the probe's 1.25)."),
    short_length: int = typer.Option(None, "--short-length", help="Tokens of the short-context window "
                                     "(default: the probe's 4096, or L0 when shorter)."),
    pareto: bool = typer.Option(False, "--pareto", help="Two objectives (past-L0 loss, short-context ratio) with "
                                "NSGA-II; the Pareto front is reported."),
    prune: bool = typer.Option(False, "--prune", help="Also measure a window half-way to the target and stop "
                               "candidates worse than the median there."),
    portable: bool = typer.Option(False, "--portable", help="Search only what every engine reads (yarn: the factor; "
                                  "longrope: no attention factor)."),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe, random or cmaes (pip install cmaes)."),
    seed: int = typer.Option(0, "--seed", help="Sampler seed, 0 to 2^32-1: the same seed gives the same search."),
    storage: str = typer.Option(None, "--storage", help="Optuna storage URL (default: sqlite:///<output>.optuna.db "
                                "beside the output; never inside the source or the output), e.g. "
                                "postgresql://USER:PASSWORD@HOST:PORT/DB (pip install \"ropeconv\\[tune]\")."),
    worker: bool = typer.Option(False, "--worker", help="Only evaluate trials of the study (same arguments and "
                                "--storage as the main run); write no model."),
    original_context: int = typer.Option(None, "--original-context", help="Override L0, the trained context."),
    device: str = typer.Option("auto", "--device", help="auto, cuda, mps or cpu."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (the probe's choice), bfloat16, float16 or float32."),
    push_to: str = PUSH_TO_OPTION,
    private: bool = PRIVATE_OPTION,
    revision: str = REVISION_OPTION,
    create_pr: bool = CREATE_PR_OPTION,
    commit_message: str = COMMIT_MESSAGE_OPTION,
    token: str = TOKEN_OPTION,
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
) -> None:
    def body() -> dict:
        from ropeconv.tune import TuneSettings, run_tune

        settings = TuneSettings(target_context=target_context, method=method, budget=budget, time_limit=time_limit,
                                seed=seed, sampler=sampler, pareto=pareto, prune=prune, portable=portable,
                                max_short_ratio=max_short_ratio, short_length=short_length, storage=storage, worker=worker, device=device,
                                dtype=dtype)
        if push_to and worker:
            raise RopeconvError("--push-to has nothing to push from a --worker (it writes no model)",
                                "pass --push-to to the main run")
        if push_to:  # refuse a push that cannot happen now, not after the search
            from ropeconv import hub

            hub.check_push_possible(push_to, token=token, revision=revision, create_pr=create_pr)
        with _Display(enabled=not as_json) as display:
            result = run_tune(model, settings, text=text, dataset=dataset, original_context=original_context,
                              output=output, force=force, progress=display.progress, note=display.note)
        if push_to:  # the card carries the search: tune.json's table and tune.png
            result["push"] = push_output(result["output"], push_to, as_json=as_json, private=private,
                                         revision=revision, create_pr=create_pr, commit_message=commit_message,
                                         token=token, source=result["model"])
        return result

    run(body, as_json=as_json, debug=debug, render=render_tune)


class _Display:
    """From the first second: the step, trial k/N, the best perplexity so far and the time left for
    everything (a rich bar on a terminal, plain lines otherwise; nothing with --json)."""

    def __init__(self, enabled: bool, out=None):
        self.enabled = enabled
        self.out = out  # a rich Console (default: stderr's)
        self.bar = None
        self.task = None

    def __enter__(self):
        self.out = self.out or console(stderr=True)
        if self.enabled and self.out.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            from rich.table import Column

            # the status folds onto a second line on a narrow terminal: never cut
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=16), TimeElapsedColumn(),
                                TextColumn("{task.fields[status]}", markup=False, table_column=Column(overflow="fold")),
                                console=self.out, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("tune", total=None, status="")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False

    def note(self, line: str) -> None:
        if self.enabled and self.bar is None:
            self.out.print(one_line(line), markup=False, highlight=False, soft_wrap=True)

    def progress(self, p) -> None:
        if not self.enabled:
            return
        status = status_line(p)
        if self.bar is not None:  # the step on its own column: never cut to fit the status
            self.bar.update(self.task, description=one_line(p.step), total=p.budget, completed=p.finished,
                            status=status)
        elif p.step == "search":
            self.out.print(status, markup=False, highlight=False, soft_wrap=True)


def status_line(p) -> str:
    """`trial 3/20 · best past-L0 ppl 12.3 · ~4m10s left` (what the display shows for one event)."""
    parts = [one_line(p.label)]
    if p.step == "search" and p.trial is None and p.finished:
        parts = [f"trial {p.finished}/{p.budget if p.budget is not None else '?'} done"]
    parts.append(f"best past-L0 ppl {p.best_ppl:.4g}" if p.best_ppl is not None else "best —")
    parts.append(f"~{_duration(p.eta)} left" if p.eta is not None else "estimating time left…")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def render_tune(result: dict) -> None:
    out = console()
    trials = result["trials"]
    finished = [t for t in trials if t["state"] in ("complete", "pruned")]
    out.print(f"{one_line(result['model'].get('repo_id') or result['model'].get('path'))}: {result['method']} for "
              f"{result['target_context']} tokens (L0 {result['original_context']}), {len(finished)} trials "
              f"({result['study']['finished_here']} here), {result['search_seconds']:.0f} s", markup=False)
    if result.get("worker"):
        best = result.get("best")
        out.print(f"worker done; best so far: trial {best['number']} past-L0 ppl {best['past_ppl']:.4g}" if best
                  else "worker done; no feasible trial yet", markup=False)
        return
    default, best, base = result.get("default"), result["best"], result.get("base")
    short_len = result["short_context"]["length"]
    rows = [("unscaled", base.get("past_ppl") if base else None, 1.0)]
    if default:
        rows.append((f"{result['method']} defaults", default.get("past_ppl"), default.get("short_ratio")))
    rows.append(("tuned", best["past_ppl"], best["short_ratio"]))
    out.print(f"{'':18} {'ppl past L0':>12} {f'ppl @{short_len} vs base':>18}", markup=False)
    for label, past, ratio in rows:
        out.print(f"{label:18} {_fmt(past):>12} {('×' + format(ratio, '.4f')) if ratio else '—':>18}", markup=False)
    winner = best["candidate"]
    out.print(f"winner: factor {winner['factor']:.6g} (served context {winner['served_context']}) "
              f"{_params(winner['params'])}", markup=False)
    _print_engine_notes(out, result)
    out.print(f"wrote {one_line(result['output'])} (+ tune.json{', tune.png' if result.get('plot') else ''})", markup=False)
    if result.get("push"):
        out.print(f"pushed: {one_line(result['push'].get('url'))}", markup=False)


def _print_engine_notes(out, result: dict) -> None:
    """The warnings, engine rules and serve commands extend prints for the same config (the same renderers)."""
    for warning in unique(result.get("warnings") or []):
        out.print(f"[yellow]warning:[/] {escape_text(warning)}", highlight=False)
    for rule in result.get("engine_rules") or []:  # verified engine rules (ropeconv.engines.RULES)
        out.print(f"[yellow]warning:[/] {escape_text(rule['versions'])}: {escape_text(rule['computes'])} — "
                  f"{escape_text(rule['fix'])}", highlight=False)
    print_serve_commands(out, serve_lines(result.get("launch") or []))


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.4g}"


def _params(params: dict) -> str:
    parts = []
    for key, value in params.items():
        if isinstance(value, list):
            parts.append(f"{key} [{min(value):.3g}…{max(value):.3g}]")
        else:
            parts.append(f"{key} {value:.4g}")
    return ", ".join(parts)
