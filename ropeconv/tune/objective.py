"""Measuring one candidate: the probe's own loss (`probe.measure.token_losses`, one forward pass
over the first L tokens, chunked float32 loss) and its own summary (`measure.summarize`), on a
model loaded once and re-pointed per candidate by `swap.apply`. A tuned result and a later
`ropeconv probe` of the written output therefore measure the same thing on the same tokens.

Per candidate:
1. the short window (first `short_length` ≤ L0 tokens, the probe's 4k): perplexity over the
   unscaled model's on the same tokens (computed once) is the short-context cost;
2. when `rungs` are given (pruning), windows of those lengths past L0: the mean loss past L0 is
   reported to the caller, which may stop the candidate there (Optuna's pruner);
3. the target window: the mean loss (nats) over positions ≥ L0 is the objective.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from ropeconv.methods import Basis, unscaled
from ropeconv.probe import measure
from ropeconv.tune import swap
from ropeconv.tune.space import Candidate


@dataclass
class Window:
    """One measured window: the probe's summary plus the per-bucket curve kept for the plot."""

    length: int
    ppl: float | None
    ppl_inside: float | None
    ppl_beyond: float | None
    mean_nll_beyond: float | None
    buckets: list[tuple[int, int, float | None]]
    seconds: float

    @classmethod
    def from_losses(cls, losses, trained: int, buckets: int, seconds: float) -> "Window":
        summary = measure.summarize(losses, trained, buckets)
        beyond = [b for b in summary["buckets"] if b["start"] >= trained]
        tokens = sum(b["tokens"] for b in beyond)
        nll = sum(b["mean_nll"] * b["tokens"] for b in beyond) / tokens if tokens else None
        return cls(summary["positions"] + 1, summary["ppl"], summary["ppl_inside"], summary["ppl_beyond"], nll,
                   [(b["start"], b["end"], b["ppl"]) for b in summary["buckets"]], round(seconds, 3))


@dataclass
class Measurement:
    short: Window
    short_ratio: float  # short-window perplexity over the unscaled model's
    long: Window | None = None  # None when stopped early (constraint or pruner)
    rungs: list[Window] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return round(self.short.seconds + sum(r.seconds for r in self.rungs) + (self.long.seconds if self.long else 0), 3)


class Evaluator:
    """One loaded model and one tokenized text; measures candidates by swapping the rotary values."""

    def __init__(self, model, ids: list[int], basis: Basis, short_length: int, *, buckets: int = 16,
                 chunk: int = measure.DEFAULT_CHUNK):
        self.model, self.ids, self.basis = model, ids, basis
        self.short_length, self.buckets, self.chunk = short_length, buckets, chunk
        self.original = swap.save(model)
        self._base_short: Window | None = None

    @property
    def target(self) -> int:
        return len(self.ids)

    def window(self, inv_freq: list[float], attention: float, length: int) -> Window:
        swap.apply(self.model, inv_freq, attention)
        started = time.perf_counter()
        losses = measure.token_losses(self.model, self.ids[:length], chunk=self.chunk)
        return Window.from_losses(losses, self.basis.original_context, self.buckets, time.perf_counter() - started)

    def unscaled(self, length: int) -> Window:
        inv, attention = unscaled(self.basis)
        return self.window(inv, attention, length)

    @property
    def base_short(self) -> Window:
        """The unscaled model on the short window: the reference of the short-context cost."""
        if self._base_short is None:
            self._base_short = self.unscaled(self.short_length)
        return self._base_short

    def measure(self, candidate: Candidate, *, max_short_ratio: float | None = None, rungs: tuple[int, ...] = (),
                on_rung: Callable[[int, float], bool] | None = None) -> Measurement:
        """Short window first; stop there when its cost exceeds `max_short_ratio`; then the rungs
        (`on_rung(length, mean_nll_past_L0)` returning True stops); then the target window."""
        reference = self.base_short
        short = self.window(*candidate.rope(self.basis, self.short_length), self.short_length)
        ratio = _ratio(short.ppl, reference.ppl)
        result = Measurement(short, ratio)
        if max_short_ratio is not None and ratio > max_short_ratio:
            return result
        for length in rungs:
            rung = self.window(*candidate.rope(self.basis, length), length)
            result.rungs.append(rung)
            if on_rung is not None and rung.mean_nll_beyond is not None and on_rung(length, rung.mean_nll_beyond):
                return result
        result.long = self.window(*candidate.rope(self.basis, self.target), self.target)
        return result

    def close(self) -> None:
        swap.restore(self.original)


def _ratio(value: float | None, reference: float | None) -> float:
    if value is None or reference is None or reference <= 0:
        return float("inf")
    return value / reference
