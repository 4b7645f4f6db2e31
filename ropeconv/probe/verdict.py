"""Pass or fail: stated thresholds applied to a probe's measurements. Pure Python.

Checks, each a perplexity ratio against a threshold:

- past L0 (every probed length beyond the trained context L0): the worst position bucket past L0
  may be at most `max_beyond_ratio` × the perplexity of the second half of the trained window
  (positions L0/2 … L0) of the same run. A working extension stays level past L0; a model running
  past its window climbs. The reference is half a window rather than the single last bucket
  because code and prose vary a lot from one bucket to the next: SmolLM2 inside its own window has
  neighbouring 1k-token buckets at 2.3 and 5.0.
- past L0 against BASE (with --against): the same worst bucket may be at most `max_beyond_ratio` ×
  BASE's perplexity on the second half of its trained window: past L0 the model must do about as
  well as the original does inside it. This catches conversions that are bad everywhere (untuned
  linear interpolation), which the level check alone cannot.
- short context (with --against, lengths ≤ L0): MODEL's perplexity at most `max_short_ratio` ×
  BASE's. Static YaRN costs some quality on short inputs by design (SmolLM2 ×4: +12 % at 4k);
  a wrong θ, a doubled factor or untuned linear cost far more (linear ×4: ×8.9).

Default thresholds, from SmolLM2-135M on the default text (12k and 16k tokens): good conversions
(YaRN ×4, dynamic ×4) reach at most ×1.46 (own reference) and ×1.68 (BASE's); broken ones reach
×4.7 (unscaled at 1.5 × L0), ×143 (unscaled at 2 × L0), ×15 (linear ×4, against BASE). So
`max_beyond_ratio` = 2.0; `max_short_ratio` = 1.25.

Passkey accuracy is judged only when `min_passkey_accuracy` is set (a 135M model retrieves poorly
even inside its window, so there is no default).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ropeconv.probe.options import ProbeOptionError


@dataclass(frozen=True)
class Thresholds:
    max_short_ratio: float = 1.25
    max_beyond_ratio: float = 2.0
    min_passkey_accuracy: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_options(cls, max_short_ratio: float | None = None, max_beyond_ratio: float | None = None,
                     min_passkey_accuracy: float | None = None) -> "Thresholds":
        base = cls()
        short = base.max_short_ratio if max_short_ratio is None else float(max_short_ratio)
        beyond = base.max_beyond_ratio if max_beyond_ratio is None else float(max_beyond_ratio)
        if not short >= 1.0 or not beyond >= 1.0:
            raise ProbeOptionError("max_short_ratio" if not short >= 1.0 else "max_beyond_ratio",
                                   "perplexity-ratio thresholds must be numbers ≥ 1",
                                   "e.g. {name:max_short_ratio} 1.25 {name:max_beyond_ratio} 1.5")
        if min_passkey_accuracy is not None and not 0.0 <= float(min_passkey_accuracy) <= 1.0:
            raise ProbeOptionError("min_passkey_accuracy", "{name} must be between 0 and 1", "e.g. {name} 0.8")
        return cls(short, beyond, None if min_passkey_accuracy is None else float(min_passkey_accuracy))


def judge(runs: list[dict], trained: int, thresholds: Thresholds, passkey: dict | None = None) -> dict:
    """`runs`: one entry per length with `model` (and maybe `against`) summaries from
    measure.summarize. Returns {status: pass|fail|inconclusive, passed, checks, summary}."""
    checks = []
    for run in runs:
        length, model, against = run["length"], run["model"], run.get("against")
        if length <= trained and against is not None:
            checks.append(short_context_check(length, model, against, thresholds.max_short_ratio))
        if length > trained:
            checks.append(beyond_check(length, model, model, thresholds.max_beyond_ratio))
            if against is not None:
                checks.append(beyond_check(length, model, against, thresholds.max_beyond_ratio, against=True))
    if passkey is not None and thresholds.min_passkey_accuracy is not None:
        checks.append(passkey_check(passkey, thresholds.min_passkey_accuracy))
    failed = [c for c in checks if not c["passed"]]
    if failed:
        status = "fail"
    elif checks:
        status = "pass"
    else:
        status = "inconclusive"
    return {"status": status, "passed": status != "fail", "checks": checks,
            "summary": _summary(status, checks, failed, trained)}


def source_checks(runs: list[dict], trained: int, thresholds: Thresholds) -> list[dict]:
    """The past-L0 level check applied to BASE (the --against model) on its own: not part of the
    verdict, but it shows what the conversion fixed — an unscaled source fails where its extension
    passes (a check that would pass either way tells nothing)."""
    return [beyond_check(run["length"], run["against"], run["against"], thresholds.max_beyond_ratio)
            for run in runs if run["length"] > trained and run.get("against") is not None]


def short_context_check(length: int, model: dict, against: dict, limit: float) -> dict:
    ratio = _ratio(model["ppl"], against["ppl"])
    return {"name": "short_context", "length": length, "passed": ratio <= limit, "value": ratio, "limit": limit,
            "detail": f"at {length} tokens perplexity {_f(model['ppl'])} vs {_f(against['ppl'])} before "
                      f"(×{ratio:.3g}, limit ×{limit:g})"}


def beyond_check(length: int, model: dict, reference: dict, limit: float, against: bool = False) -> dict:
    """The worst bucket past L0 against the second half of the trained window (of `reference`)."""
    name = "past_trained_context_vs_base" if against else "past_trained_context"
    beyond = [b for b in model["buckets"] if b["region"] == "beyond"]
    base_ppl = reference.get("ppl_inside_second_half")
    if not beyond or base_ppl is None:  # cannot happen with measure.summarize; kept for hand-made input
        return {"name": name, "length": length, "passed": True, "value": None, "limit": limit,
                "detail": f"at {length} tokens: nothing past the trained context to judge"}
    worst = max(beyond, key=lambda b: b["mean_nll"])
    ratio = _ratio(worst["ppl"], base_ppl)
    whose = "BASE's" if against else "its own"
    return {"name": name, "length": length, "passed": ratio <= limit, "value": ratio, "limit": limit,
            "worst_bucket": [worst["start"], worst["end"]],
            "detail": f"at {length} tokens the worst bucket past L0 (positions {worst['start']}–{worst['end']}) "
                      f"has perplexity {_f(worst['ppl'])} vs {_f(base_ppl)} in {whose} second half of the "
                      f"trained window (×{ratio:.3g}, limit ×{limit:g})"}


def passkey_check(passkey: dict, limit: float) -> dict:
    accuracy = passkey["accuracy"]
    return {"name": "passkey", "passed": accuracy >= limit, "value": accuracy, "limit": limit,
            "detail": f"passkey accuracy {accuracy:.0%} (minimum {limit:.0%})"}


def _ratio(value: float | None, reference: float | None) -> float:
    if value is None or reference is None:
        return float("inf")
    if reference <= 0:
        return float("inf")
    return value / reference


def _f(value: float | None) -> str:
    if value is None:
        return "—"
    if value == float("inf"):
        return "∞"
    if value < 1000:
        return f"{value:.3g}"
    return f"{value:.0f}" if value < 1e6 else f"{value:.2e}"


def _summary(status: str, checks: list[dict], failed: list[dict], trained: int) -> str:
    if status == "inconclusive":
        return (f"nothing to judge: no length past the trained context ({trained}) and no --against model "
                "to compare short-context perplexity with")
    if status == "pass":
        return f"pass: {len(checks)} check(s) within their thresholds"
    return "fail: " + "; ".join(c["detail"] for c in failed)
