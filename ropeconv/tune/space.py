"""What `tune` searches, per method: each trial's parameters become a `Candidate`, the exact
arguments `ropeconv extend` takes (method, factor, method parameters), so the winner is written by
the same writer and every candidate is a config the engines read.

- yarn: the served context in [target, 2·target] tokens (factor = context / L0 ≥ s = target / L0, and
  factor × L0 a whole number of tokens, as `extend` requires),
  beta_fast, beta_slow and the attention factor (the defaults 32 / 1 / 0.1·ln s + 1 were fitted to
  LLaMA-7B-class models). `portable` searches the factor alone: an explicit attention factor is
  ignored by SGLang, TGI and exllamav2, and llama.cpp reads non-default betas only for
  some architectures.
- ntk: θ', searched as the served context N ≥ target, s' = N / L0, θ' = θ·s'^(d/(d−2)) (what
  `extend --method ntk` writes, with max_position_embeddings = N).
- longrope: per-pair rescale factors, LongRoPE-style: long factors monotone non-decreasing from the
  highest frequency to the lowest (a running maximum over KNOTS knot values, linearly interpolated
  across pairs), seeded with the factors of PI, NTK and YaRN at s; short factors all 1.0, so prompts
  up to L0 run unscaled in engines that switch (transformers, vLLM, SGLang); the attention factor.

Optuna is imported by the caller (the trial object); this module itself is pure Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ropeconv.errors import RopeconvError
from ropeconv.methods import YARN_BETA_FAST, YARN_BETA_SLOW, Basis, base_inv_freq, compute, ntk_theta, yarn_get_mscale

TUNABLE = ("yarn", "ntk", "longrope")
KNOTS = 8  # longrope: knot values per factor curve (monotone across d/2 pairs)
LONGROPE_MAX_FACTOR = 2.0  # × s: the largest per-pair factor searched (LongRoPE's own exceed s)


@dataclass(frozen=True)
class Candidate:
    """One point of the search: exactly what `ropeconv.api.extend` is called with (`target_context`
    = the served context, a whole number of tokens, so that factor × L0 is one too)."""

    method: str
    served_context: int
    original_context: int
    params: dict = field(default_factory=dict)

    @property
    def factor(self) -> float:
        return self.served_context / self.original_context

    def rope(self, basis: Basis, seq_len: int) -> tuple[list[float], float]:
        """(inv_freq, attention factor) a model with this config uses for a window of `seq_len` tokens
        (longrope switches to the long factors past L0, as transformers, vLLM and SGLang do)."""
        return compute(self.method, basis, {"factor": self.factor, **self.params}, seq_len)

    def to_dict(self) -> dict:
        return {"method": self.method, "served_context": self.served_context, "factor": self.factor,
                "params": self.params}


@dataclass(frozen=True)
class Space:
    method: str
    basis: Basis
    target: int
    portable: bool = False

    @property
    def scale(self) -> float:
        return self.target / self.basis.original_context

    def suggest(self, trial: Any) -> Candidate:
        """Ask an Optuna trial for one candidate."""
        s, L0, target = self.scale, self.basis.original_context, self.target
        if self.method == "yarn":
            served = trial.suggest_int("context", target, 2 * target, log=True)
            if self.portable:
                return Candidate("yarn", served, L0)
            params = {"beta_fast": trial.suggest_float("beta_fast", 8.0, 128.0, log=True),
                      "beta_slow": trial.suggest_float("beta_slow", 0.25, 4.0, log=True),
                      "attention_factor": trial.suggest_float("attention_factor", 1.0, 1.0 + 0.2 * math.log(2 * s))}
            defaults = {"beta_fast": YARN_BETA_FAST, "beta_slow": YARN_BETA_SLOW,
                        "attention_factor": yarn_get_mscale(served / L0)}
            # a value equal to the default is not written: an explicit attention factor draws engine warnings
            params = {k: v for k, v in params.items() if not math.isclose(v, defaults[k], rel_tol=1e-12)}
            return Candidate("yarn", served, L0, params)
        if self.method == "ntk":
            return Candidate("ntk", trial.suggest_int("context", target, 4 * target, log=True), L0)
        if self.method == "longrope":
            top = math.log(LONGROPE_MAX_FACTOR * s)
            knots, floor = [], 0.0
            for k in range(KNOTS):
                floor = max(floor, trial.suggest_float(f"log_long_{k}", 0.0, top))  # running max: monotone
                knots.append(floor)
            params = {"short_factor": [1.0] * self.pairs, "long_factor": self._curve(knots)}
            if not self.portable:
                params["attention_factor"] = trial.suggest_float("attention_factor", 1.0, 1.0 + 0.2 * math.log(2 * s))
            return Candidate("longrope", target, L0, params)
        raise untunable(self.method)

    @property
    def pairs(self) -> int:
        return self.basis.dim // 2

    def _curve(self, knots: list[float]) -> list[float]:
        """KNOTS log-factors at evenly spaced pairs → d/2 factors (piecewise linear in log space)."""
        out = []
        for j in range(self.pairs):
            x = j * (KNOTS - 1) / max(self.pairs - 1, 1)
            k = min(int(x), KNOTS - 2)
            t = x - k
            out.append(round(math.exp((1 - t) * knots[k] + t * knots[k + 1]), 6))
        return out

    def default(self) -> tuple[dict, Candidate]:
        """The method's defaults at s, as trial parameters (enqueued first, so the search starts from
        them and its best is never worse than the default on the calibration text)."""
        s = self.scale
        if self.method == "yarn":
            params = {"context": self.target}
            if not self.portable:
                params.update(beta_fast=YARN_BETA_FAST, beta_slow=YARN_BETA_SLOW, attention_factor=yarn_get_mscale(s))
            return params, self._from(params)
        if self.method == "ntk":
            params = {"context": self.target}
            return params, self._from(params)
        return self.seeds()[-1]

    def seeds(self) -> list[tuple[dict, Candidate]]:
        """Trial parameters to enqueue before searching: the method's defaults; for longrope the
        per-pair factors of PI (all s), NTK and YaRN at s, as knot values (default last)."""
        if self.method != "longrope":
            return [self.default()]
        s, base = self.scale, base_inv_freq(self.basis.theta, self.basis.dim)
        ntk = base_inv_freq(ntk_theta(self.basis.theta, self.basis.dim, s), self.basis.dim)
        yarn, _ = compute("yarn", self.basis, {"factor": s})
        top = math.log(LONGROPE_MAX_FACTOR * s)
        out = []
        for curve in ([s] * self.pairs, [b / n for b, n in zip(base, ntk)], [b / y for b, y in zip(base, yarn)]):
            knots, floor = {}, 0.0
            for k in range(KNOTS):
                j = round(k * (self.pairs - 1) / (KNOTS - 1))
                floor = min(max(floor, math.log(max(curve[j], 1.0))), top)
                knots[f"log_long_{k}"] = floor
            if not self.portable:
                knots["attention_factor"] = math.sqrt(1 + math.log(s) / math.log(self.basis.original_context))
            out.append((knots, self._from(knots)))
        return out

    def _from(self, values: dict) -> Candidate:
        """The candidate a trial with these parameter values gives (for enqueued and stored trials)."""
        return self.suggest(_Fixed(values))


class _Fixed:
    """A stand-in for an Optuna trial that answers with fixed values (re-building a stored trial's
    candidate without Optuna)."""

    def __init__(self, values: dict):
        self.values = values

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return float(self.values[name])

    def suggest_int(self, name: str, low: int, high: int, log: bool = False) -> int:
        return int(self.values[name])


def candidate_from_params(space: Space, values: dict) -> Candidate:
    return space._from(values)


def untunable(method: str) -> RopeconvError:
    return RopeconvError(f"--method {method} cannot be tuned",
                         f"tune searches {', '.join(TUNABLE)} (linear and llama3 have nothing a perplexity search "
                         "improves without training; dynamic changes with the prompt length)")


def check_method(method: str) -> None:
    if method not in TUNABLE:
        raise untunable(method)
