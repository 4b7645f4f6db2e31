"""Planning a conversion, format-free: `plan(spec, request, earlier) → RopePlan`.

The one place that decides where a conversion scales from (θ, L0), the factor and served context,
the method's parameters as fitted to this model, the resulting frequencies, and the warnings. The
format adapters (`ropeconv.formats.hf`, `ropeconv.formats.gguf`) turn a RopePlan into writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ropeconv.errors import RopeconvError
from ropeconv.methods import PARAMS, Basis, compute, ntk_theta
from ropeconv.numbers import MAX_TOKENS
from ropeconv.record import Base
from ropeconv.request import ConversionRequest, RequestError
from ropeconv.spec import RopeSpec


@dataclass(frozen=True)
class RopePlan:
    """A conversion, resolved for one model: what every format writes, in its own way."""

    method: str
    factor: float
    params: dict  # the method's parameters as written (numbers as floats, defaults filled)
    base_theta: float  # the unscaled θ the conversion scales from
    theta: float  # the θ to write (NTK's enlarged θ for ntk, else base_theta)
    rotary_dim: int
    original_context: int  # L0 the conversion scales from
    served_context: int  # L0 × factor, in whole tokens
    inv_freq: list[float]
    attention_factor: float
    rebase: bool  # an earlier scaling is replaced
    warnings: list[str] = field(default_factory=list)


def plan(spec: RopeSpec, request: ConversionRequest, earlier: Base | None = None) -> RopePlan:
    """Resolve `request` against a model's current RoPE (`spec`) and an earlier ropeconv base."""
    method = request.method
    check_family(spec, method)
    theta, L0, notes = scaling_start(spec, rebase=request.rebase, earlier=earlier,
                                     original_context=request.original_context)
    factor, served = resolve_scale(L0, request)
    params = fit_params(request.params, spec.rotary_dim)
    inv_freq, attention = compute(method, Basis(theta, spec.rotary_dim, L0), {"factor": factor, **params})
    return RopePlan(method=method, factor=factor, params=params, base_theta=theta,
                    theta=ntk_theta(theta, spec.rotary_dim, factor) if method == "ntk" else theta,
                    rotary_dim=spec.rotary_dim, original_context=L0, served_context=served, inv_freq=inv_freq,
                    attention_factor=attention, rebase=bool(notes),
                    warnings=[*spec.warnings, *notes, *suspicious(spec, request, factor)])


# Beyond this factor no training-free method has been shown to hold (YaRN's paper goes to ×32 with
# fine-tuning); a larger one is allowed but said out loud.
LARGE_FACTOR = 32.0


def suspicious(spec: RopeSpec, request: ConversionRequest, factor: float) -> list[str]:
    """Warnings for values that are allowed but probably a mistake."""
    out = []
    if request.original_context and request.original_context > 2 * spec.max_position_embeddings:
        out.append(f"--original-context {request.original_context} is {request.original_context / spec.max_position_embeddings:.3g}× "
                   f"config.json's max_position_embeddings ({spec.max_position_embeddings}): a model is rarely trained "
                   "longer than it advertises — check the value")
    if factor > LARGE_FACTOR:
        out.append(f"factor ×{factor:g} is beyond ×{LARGE_FACTOR:g}, past what training-free scaling has been shown "
                   "to hold: probe the output (`ropeconv probe`) before relying on it")
    return out


def check_family(spec: RopeSpec, method: str) -> None:
    fam = spec.family
    if fam is not None and fam.methods is not None and method not in fam.methods:
        allowed = ", ".join(fam.methods) if fam.methods else "none"
        raise RopeconvError(f"{spec.model_type} cannot take {method}: {fam.methods_reason}",
                            f"methods it accepts: {allowed}")


def scaling_start(before: RopeSpec, *, rebase: bool, earlier: Base | None,
                  original_context: int | None) -> tuple[float, int, list[str]]:
    """(θ, L0) a conversion scales from, and a note. Two scalings are never stacked silently: an
    already-scaled model is refused unless `rebase`, which scales from the unscaled base instead.

    `earlier` is the base an earlier ropeconv conversion recorded: it makes an NTK-rescaled θ count
    as scaled and is what `rebase` returns to.
    """
    if not (before.is_scaled or earlier):
        return before.theta, before.original_context, []
    current = (f"{before.rope_type} ×{before.factor:g}" if before.is_scaled and before.factor
               else before.rope_type if before.is_scaled
               else f"{earlier.method} by ropeconv (θ {earlier.rope_theta:g} → {before.theta:g})")
    if not rebase:
        raise RequestError("rebase", f"the model is already scaled ({current}, serving {before.served_context()} "
                           "tokens); stacking a second scaling would apply the factor twice",
                           "{on} to replace it, computed from the unscaled base")
    note = [f"--rebase: replacing {current}; computed from the unscaled base"]
    if earlier is not None:
        return earlier.rope_theta, int(original_context or earlier.original_context or before.original_context), note
    return before.theta, before.original_context, note


def resolve_scale(L0: int, request: ConversionRequest) -> tuple[float, int]:
    """(factor, served context in whole tokens) from the request's factor or target over L0."""
    if request.target_context is not None:
        if request.target_context <= L0:
            raise RequestError("target_context", f"{{name}} {request.target_context} is not longer than the "
                               f"trained context {L0}", "give a longer target, or the original context if L0 is wrong")
        return request.target_context / L0, request.target_context
    factor = request.factor
    served = L0 * factor
    if round(served) <= L0:
        raise RequestError("factor", f"{{name}} {factor!r} × trained context {L0} adds no whole token",
                           "give a factor such as 2, 4 or 8")
    if served > MAX_TOKENS:
        raise RequestError("factor", f"{{name}} {factor:g} × trained context {L0} = {served:.0f} tokens is more "
                           f"than any engine can serve (at most {MAX_TOKENS})", "give a smaller factor")
    if abs(served - round(served)) > 1e-6:
        raise RequestError("factor", f"{{name}} {factor:g} × trained context {L0} = {served:g} is not a whole "
                           "number of tokens, so max_position_embeddings / L0 cannot equal the factor",
                           f"give a target context instead (e.g. {round(served)})")
    return factor, int(round(served))


def fit_params(params, rotary_dim: int) -> dict:
    """The request's method parameters checked against this model (LongRoPE lists hold d/2 numbers)."""
    out = dict(params)
    for name, value in out.items():
        if PARAMS[name].kind == "factors" and len(value) != rotary_dim // 2:
            raise RequestError(name, f"{name} has {len(value)} numbers but this model has {rotary_dim // 2} "
                               "rotary dimension pairs", f"give exactly {rotary_dim // 2} numbers (rotary dims / 2)")
    return out


def conversion_summary(rope: RopePlan, before: RopeSpec, after: RopeSpec) -> dict:
    """The part of an extend report every format shares."""
    return {"method": rope.method, "factor": rope.factor, "params": rope.params,
            "served_context": rope.served_context, "attention_factor": rope.attention_factor,
            "before": before.to_dict(), "after": after.to_dict()}


def conversion_view(dims: list[dict], base_inv: list[float], rope: RopePlan, after: RopeSpec) -> dict:
    """What `inspect --method` shows: each dimension pair's new scale and action (added to `dims`),
    and the conversion's summary."""
    classes = dimension_classes(base_inv, rope.inv_freq, rope.factor)
    for d, new, cls in zip(dims, rope.inv_freq, classes):
        d.update(new_inv_freq=new, new_scale=base_inv[d["pair"]] / new, action=cls)
    return {"method": rope.method, "factor": rope.factor, "served_context": rope.served_context,
            "attention_factor": rope.attention_factor, "after": after.to_dict(),
            "counts": {c: classes.count(c) for c in ("keep", "blend", "interpolate")}, "warnings": rope.warnings}


def dimension_classes(base: list[float], new: list[float], factor: float) -> list[str]:
    """Per dimension pair: 'keep' (unchanged), 'interpolate' (divided by the factor) or 'blend'."""
    out = []
    for b, n in zip(base, new):
        ratio = b / n
        out.append("keep" if abs(ratio - 1) < 1e-6 else "interpolate" if abs(ratio - factor) < 1e-6 * factor
                   else "blend")
    return out
