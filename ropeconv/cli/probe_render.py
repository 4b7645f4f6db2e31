"""The probe for people: progress while it runs (the time estimate first, then steps with an ETA) and
the report after (a before/after table per length, the position buckets of the longest length, the
verdict). `probe` and `extend --probe` use both. Tables and prose wrap at word boundaries at any
terminal width."""

from __future__ import annotations

import sys

from ropeconv.cli.common import _escape, one_line
from ropeconv.cli.common import console as make_console
from ropeconv.probe.progress import Estimate, ProbeReporter, ProbeStep, duration, estimate_line
from ropeconv.probe.verdict import _f


def wrapping_console(stderr: bool = False):
    """A console that wraps long lines at spaces (the shared one leaves wrapping to the terminal,
    which cuts words)."""
    console = make_console(stderr=stderr)
    console.soft_wrap = False
    return console


class RichProbeReporter(ProbeReporter):
    """The estimate and one-line notes on stderr; on a terminal also one bar over the whole run:
    step i/N, percentage, elapsed and remaining time (the remaining time follows the measured pace)."""

    def __init__(self, enabled: bool = True, console=None):
        self.enabled = enabled
        self.console = console or wrapping_console(stderr=True)
        self.bars = enabled and (console is not None or sys.stderr.isatty())
        self._progress = None
        self._task = None
        self._step: ProbeStep | None = None
        self._per_tick = 0.0
        self._step_start = 0.0

    def estimate(self, estimate: Estimate) -> None:
        if not self.enabled:
            return
        self.console.print(one_line(estimate_line(estimate)), markup=False)
        if estimate.hint:
            self.console.print(f"[yellow]warning:[/] this probe will take about {duration(estimate.seconds)}; "
                               f"{_escape(estimate.hint)}")
        if self.bars:
            from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=20),
                                      TaskProgressColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                                      TimeRemainingColumn(), console=self.console, transient=True)
            total = sum(step["seconds"] for step in estimate.steps) or 1.0
            self._progress.start()
            self._task = self._progress.add_task("starting", total=total)

    def begin(self, step: ProbeStep) -> None:
        self._step = step
        if self._progress is None:
            if self.enabled:
                self.note(f"[{step.index}/{step.count}] {step.label} · {step.length} tokens "
                          f"(about {duration(step.estimated_seconds)})")
            return
        task = self._progress.tasks[0]
        self._step_start = task.completed
        self._per_tick = step.estimated_seconds / max(step.ticks, 1)
        # the bar's description is rich markup: the label (a folder or repo name) is escaped
        self._progress.update(self._task, description=_escape(f"[{step.index}/{step.count}] {step.label} · "
                                                              f"{step.length} tokens"))

    def advance(self, ticks: int = 1) -> None:
        if self._progress is not None and self._step is not None:
            self._progress.advance(self._task, ticks * self._per_tick)

    def end(self, step: ProbeStep, line: str) -> None:
        if self._progress is not None:  # the step's whole share, whatever the ticks added up to
            self._progress.update(self._task, completed=self._step_start + step.estimated_seconds)
        self._step = None
        self.note(line)
        if self._progress is not None and step.index == step.count:
            self._progress.stop()
            self._progress = None

    def note(self, line: str) -> None:
        if self.enabled:  # labels come from model folders and the Hub: shown escaped, on one line
            self.console.print(one_line(line), markup=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def render(result: dict, console=None) -> None:
    from rich.table import Table

    console = console or wrapping_console()
    console.soft_wrap = False  # rich wraps at spaces; the terminal would cut words
    against = result.get("against") is not None
    trained = result["trained_context"]
    runs = result["results"]

    table = Table(title=f"Perplexity (lower is better; L0 = {trained})", title_justify="left")
    table.add_column("length", justify="right", no_wrap=True)
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
    buckets.add_column("positions", justify="right", no_wrap=True)
    buckets.add_column("where", no_wrap=True)
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
    reason = f": {result['dtype_reason']}" if result.get("dtype_reason") else ""
    console.print(f"[dim]text: {_escape(text['name'])}, sha256 {text['sha256'][:12]}…; device {result['device']}, "
                  f"{result['dtype']}{_escape(reason)}; {duration(result['seconds'])}[/]")
    if result.get("llama_cpp"):
        console.print(one_line(llama_cpp_line(result["llama_cpp"], against)), markup=False)
    for warning in result.get("warnings", []):
        console.print(f"[yellow]warning:[/] {_escape(warning)}")
    if result.get("hint"):
        console.print(f"[dim]{_escape(result['hint'])}[/]")
    verdict = result["verdict"]
    for check in verdict["checks"]:
        mark = "[green]✓[/]" if check["passed"] else "[red]✗[/]"
        console.print(f"{mark} {_escape(check['detail'])}")
    for check in verdict.get("source_checks", []):
        word = "also passes" if check["passed"] else "fails"
        console.print(f"[dim]before, the source alone {word}: {_escape(check['detail'])}[/]")
    style = {"pass": "bold green", "fail": "bold red"}.get(verdict["status"], "bold yellow")
    console.print(f"[{style}]verdict: {_escape(verdict['summary'])}[/]")
    full = result.get("full_probe")
    if full:
        lengths = ", ".join(str(n) for n in full["lengths"])
        models = "both models" if full["models"] == 2 else "the model"
        console.print(f"[dim]this was the quick probe; the full one (lengths {lengths}, {models}) would take "
                      f"about {duration(full['estimated_seconds'])} here: ropeconv probe MODEL"
                      f"{' --against BASE' if full['models'] == 2 else ''}[/]")
    if result.get("saved"):
        console.print(f"[dim]saved {_escape(result['saved'])}[/]")


def llama_cpp_line(info: dict, against: bool) -> str:
    """One line: which llama.cpp ran the probe and the RoPE arguments it reported for each model."""
    def args(rope: dict) -> str:
        scaling = rope.get("runtime_scaling") or rope.get("scaling")
        parts = [f"scaling {scaling}", f"freq_base {_g(rope.get('freq_base'))}",
                 f"freq_scale {_g(rope.get('freq_scale'))}"]
        if scaling == "yarn":
            parts += [f"n_ctx_orig_yarn {rope.get('n_ctx_orig_yarn')}", f"ext_factor {_g(rope.get('ext_factor'))}"]
        return ", ".join(parts)

    ropes = info.get("rope", {})
    names = (("after", "model"), ("before", "against")) if against else (("", "model"),)
    shown = "; ".join(f"{word + ': ' if word else ''}{args(ropes[role])}" for word, role in names if role in ropes)
    return f"llama.cpp RoPE as run — {shown} ({info.get('build')})"


def _g(value) -> str:
    return "?" if value is None else f"{value:g}" if isinstance(value, (int, float)) else str(value)
