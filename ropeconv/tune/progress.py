"""What a running tune tells its caller, from the first second: the step, trial k/N, the best so far
and an ETA covering everything left (the trials, then the final comparison pass at the target length).

The estimate comes, as the probe's does (ropeconv/probe/progress.py), from a timed warm-up scaled by
each window's arithmetic (`window_cost`): the warm-up is the unscaled model on the short window, which
the search needs anyway. Each finished trial then replaces the prediction with measured times.
The library never prints: `Tracker` calls `progress(Progress)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from ropeconv.probe.progress import window_cost


@dataclass(frozen=True)
class Progress:
    """One progress event."""

    step: str  # "load", "reference", "search", "comparison", "write"
    label: str  # what runs now, one line
    trial: int | None  # the trial running now, 1-based within the study (k of k/N); None outside a trial
    finished: int  # complete + pruned trials in the study
    budget: int | None
    best_ppl: float | None  # perplexity past L0 of the best feasible trial so far
    last_seconds: float | None  # the last finished trial's time
    elapsed: float  # seconds since tune started
    eta: float | None  # seconds left for everything (trials, final comparison, writing); None before the warm-up


@dataclass
class Plan:
    """What is left to run, for the estimate."""

    budget: int | None
    time_limit: float | None
    windows_per_trial: tuple[int, ...]  # the short window, the rungs, the target window
    final_window: int | None  # the unscaled model at the target (None for a worker)


class Tracker:
    """Keeps the estimate and sends `Progress` events."""

    def __init__(self, plan: Plan, send: Callable[[Progress], None] | None):
        self.plan, self.send = plan, send
        self.started = time.perf_counter()
        self.search_started: float | None = None
        self.seconds_per_flop: float | None = None
        self.costs: tuple[float, float] = (0.0, 0.0)
        self.trial_seconds: list[float] = []
        self.finished, self.best_ppl = 0, None
        self.last_seconds: float | None = None

    def cost(self, length: int) -> float:
        return window_cost(length, *self.costs)

    def warmed_up(self, costs: tuple[float, float], tokens: int, seconds: float) -> None:
        """The timed warm-up: `seconds` for `tokens` on a model of these per-token `costs`."""
        self.costs = costs
        self.seconds_per_flop = seconds / max(self.cost(tokens), 1.0)

    def eta(self) -> float | None:
        if self.seconds_per_flop is None:
            return None
        predicted = self.seconds_per_flop * sum(self.cost(n) for n in self.plan.windows_per_trial)
        per_trial = sum(self.trial_seconds) / len(self.trial_seconds) if self.trial_seconds else predicted
        left = None
        if self.plan.budget is not None:
            left = max(self.plan.budget - self.finished, 0) * per_trial
        if self.plan.time_limit is not None:
            since = time.perf_counter() - (self.search_started or time.perf_counter())
            limit_left = max(self.plan.time_limit - since, 0.0)
            left = limit_left if left is None else min(left, limit_left)
        final = self.seconds_per_flop * self.cost(self.plan.final_window) if self.plan.final_window else 0.0
        return (left or 0.0) + final

    def step(self, step: str, label: str, trial: int | None = None) -> None:
        if self.send is not None:
            self.send(Progress(step, label, trial, self.finished, self.plan.budget, self.best_ppl, self.last_seconds,
                               round(time.perf_counter() - self.started, 3), self.eta()))

    def trial_started(self, finished: int) -> None:
        if self.search_started is None:
            self.search_started = time.perf_counter()
        self.finished = finished
        k = finished + 1
        self.step("search", f"trial {k}/{self.plan.budget if self.plan.budget is not None else '?'}", trial=k)

    def trial_finished(self, finished: int, seconds: float, best_ppl: float | None,
                       target_seconds: float | None) -> None:
        self.finished, self.best_ppl, self.last_seconds = finished, best_ppl, seconds
        self.trial_seconds.append(seconds)
        if target_seconds and self.plan.final_window and self.costs != (0.0, 0.0):
            # the final comparison is one more target-length window: price it by the measured ones
            self.seconds_per_flop = target_seconds / self.cost(self.plan.final_window)
        self.step("search", f"trial {finished}/{self.plan.budget if self.plan.budget is not None else '?'} done")
