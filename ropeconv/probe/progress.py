"""What a running probe tells its caller: the time estimate before the long work, then each step.

The library never draws: `run_probe` calls a `ProbeReporter`. The base class is silent (library use,
`--json`); `TextReporter` writes plain one-line notes to stderr; the CLI passes its own reporter
that draws a progress bar with steps and an ETA (ropeconv/cli/probe_render.py).

The estimate comes from a timed warm-up (one short window through the first model loaded) scaled by
each planned window's arithmetic: the decoder's matrix products grow with the window, attention with
its square (`window_cost`). After each measured window the scale is corrected from the time it took.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field

# Above this the CLI warns before starting and says how to shorten the run.
LONG_ESTIMATE_SECONDS = 600.0


@dataclass(frozen=True)
class ProbeStep:
    """One measurement: one model over one window."""

    index: int  # 1-based
    count: int
    role: str  # "against" or "model"
    label: str  # e.g. "before: SmolLM2-135M-Instruct"
    length: int
    ticks: int  # advance() calls token_losses makes for it (layers + loss chunks)
    estimated_seconds: float


@dataclass
class Estimate:
    """The probe's expected duration, from a timed warm-up, before the long work starts."""

    seconds: float  # every planned measurement and model load
    warmup_tokens: int
    warmup_seconds: float
    load_seconds: float  # loading the first model (the estimate counts one more load per extra model)
    steps: list[dict] = field(default_factory=list)  # {role, length, seconds} per planned measurement
    hint: str | None = None  # how to shorten a long run

    def to_dict(self) -> dict:
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def window_cost(length: int, linear_flops_per_token: float, attention_flops_per_token_sq: float) -> float:
    """Floating-point operations of one forward pass over `length` tokens: the matrix products
    (∝ length) and causal attention (∝ length²)."""
    return length * linear_flops_per_token + length * length * attention_flops_per_token_sq


def shorten_hint(quick_seconds: float | None, gpu: bool = True) -> str:
    """How to make a long probe shorter. The time goes into the longest window (shorter lengths come
    from the same pass), so fewer lengths alone do not help: `--quick` stops at 1.5 × L0. `gpu`: whether
    --device cuda applies (not to a GGUF, which runs on llama.cpp's CPU)."""
    parts = []
    if quick_seconds is not None:
        parts.append(f"--quick (4k and 1.5 × L0 in one pass per model: about {duration(quick_seconds)} here)")
    if gpu or not parts:
        parts.append("a GPU (--device cuda)" if gpu else "fewer tokens past L0 (--lengths)")
    return "to shorten it: " + ", or ".join(parts)


def _k(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 05 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes} min {rest:02d} s" if minutes < 10 else f"{minutes} min"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min"


class ProbeReporter:
    """Silent by default; subclasses show progress. Calls come in this order: `estimate` once (after
    the warm-up), then per step `begin`, `advance`… and `end`; `note` any time; `close` last, also
    when the probe fails."""

    def estimate(self, estimate: Estimate) -> None:
        pass

    def begin(self, step: ProbeStep) -> None:
        pass

    def advance(self, ticks: int = 1) -> None:
        pass

    def end(self, step: ProbeStep, line: str) -> None:
        pass

    def note(self, line: str) -> None:
        pass

    def close(self) -> None:
        """The probe is over (finished or failed): stop drawing."""


class TextReporter(ProbeReporter):
    """Plain lines on stderr (library callers that pass progress=True)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr

    def estimate(self, estimate: Estimate) -> None:
        self.note(estimate_line(estimate))
        if estimate.hint:
            self.note(estimate.hint)

    def begin(self, step: ProbeStep) -> None:
        self.note(f"[{step.index}/{step.count}] {step.label} · {step.length} tokens "
                  f"(about {duration(step.estimated_seconds)})")

    def end(self, step: ProbeStep, line: str) -> None:
        self.note(line)

    def note(self, line: str) -> None:
        from ropeconv.text import one_line

        print(one_line(line), file=self.stream, flush=True)  # labels hold paths and names from model files


def estimate_line(estimate: Estimate) -> str:
    count = len(estimate.steps)
    return (f"estimated time: about {duration(estimate.seconds)} for {count} measurement"
            f"{'s' if count != 1 else ''} (from a {estimate.warmup_tokens}-token warm-up in "
            f"{estimate.warmup_seconds:.1f} s)")
