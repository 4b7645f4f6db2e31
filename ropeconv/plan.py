"""Planning a conversion: from (config.json, method, factor, parameters) to the new config.json.

The portability rules live here (README "What ropeconv writes"): both config shapes with identical
values, `rope_type` only, floats as floats, and `max_position_embeddings` /
`original_max_position_embeddings` the way each engine reads them for that method.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ropeconv.errors import RopeconvError, did_you_mean
from ropeconv.methods import METHODS, Basis, compute, get_method, ntk_theta
from ropeconv.spec import FULL_ATTENTION, RopeSpec, read_spec

# Methods whose trained length L0 stays in max_position_embeddings (vLLM and SGLang multiply it by
# `factor` themselves for linear; transformers and TGI read it as the trained length for dynamic).
KEEPS_L0_IN_MAX = ("linear", "dynamic")
# Methods that need original_max_position_embeddings inside the scaling entry.
NEEDS_ORIGINAL = ("yarn", "llama3", "longrope")
# ... and at top level too (llama.cpp's converter, Phi3 code and TGI read it there).
NEEDS_TOP_ORIGINAL = ("llama3", "longrope")
LIST_PARAMS = ("short_factor", "long_factor")
BOOL_PARAMS = ("truncate",)


@dataclass
class Plan:
    method: str
    factor: float
    params: dict  # method parameters as written (without factor / original context)
    before: RopeSpec
    after: RopeSpec
    config: dict  # the whole new config.json
    served_context: int  # the context the new config gives
    original_context: int  # the L0 the conversion scaled from
    base_theta: float  # the unscaled θ it scaled from
    inv_freq: list[float]
    attention_factor: float
    warnings: list[str] = field(default_factory=list)


_TOKENS = re.compile(r"^(\d+(?:\.\d+)?)([km]?)$", re.IGNORECASE)
_TOKEN_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}


def parse_tokens(value: Any) -> int | None:
    """A whole number of tokens: 32768, "32768", "32k", "1.5k", "1m", "128_000" — else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    match = _TOKENS.match(str(value).strip().replace("_", ""))
    number = float(match.group(1)) * _TOKEN_UNITS[match.group(2).lower()] if match else None
    return int(number) if number is not None and number == int(number) else None


def parse_factor(value: Any, what: str = "factor") -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RopeconvError(f"--{what} {value!r} is not a number", f"pass a number greater than 1, e.g. --{what} 4") from None
    if not math.isfinite(number):
        raise RopeconvError(f"--{what} {value!r} is not a finite number", f"pass a number greater than 1, e.g. --{what} 4")
    if number <= 1:
        raise RopeconvError(f"--{what} {value!r} must be greater than 1 to extend the context",
                            f"pass a number greater than 1, e.g. --{what} 4")
    return number


def resolve_factor(spec: RopeSpec, factor: Any, target_context: Any) -> float:
    if (factor is None) == (target_context is None):
        raise RopeconvError("give exactly one of --factor and --target-context",
                            "e.g. --factor 4, or --target-context 32768")
    if factor is not None:
        return parse_factor(factor)
    target = parse_tokens(target_context)
    if target is None:
        raise RopeconvError(f"--target-context {target_context!r} is not a whole number of tokens",
                            "e.g. --target-context 32768 or 32k")
    if target <= spec.original_context:
        raise RopeconvError(f"--target-context {target} is not longer than the trained context {spec.original_context}",
                            "pass a longer target, or --original-context if L0 is wrong")
    return target / spec.original_context


def normalise_params(method: str, params: dict | None, spec: RopeSpec) -> dict:
    """Validate a method's parameters; numbers become floats. Unknown keys get a did-you-mean."""
    allowed = METHODS[method].params
    out: dict = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if key not in allowed:
            hint = did_you_mean(key, allowed) if allowed else ""
            raise RopeconvError(f"'{key}' is not a parameter of {method}{hint}",
                                f"{method} takes: {', '.join(allowed) or 'no parameters besides the factor'}")
        if key in LIST_PARAMS:
            out[key] = _factor_list(key, value, spec.rotary_dim // 2)
        elif key in BOOL_PARAMS:
            if not isinstance(value, bool):
                raise RopeconvError(f"{key} must be true or false, got {value!r}", f"pass --{key.replace('_', '-')} or --no-{key.replace('_', '-')}")
            out[key] = value
        else:
            number = _finite(key, value)
            if number <= 0:
                raise RopeconvError(f"{key} must be positive, got {value!r}", f"pass a positive {key}")
            out[key] = number
    if method == "yarn" and out.get("beta_fast", 32.0) <= out.get("beta_slow", 1.0):
        raise RopeconvError(f"beta_fast ({out.get('beta_fast', 32.0)}) must be greater than beta_slow "
                            f"({out.get('beta_slow', 1.0)})", "the defaults are beta_fast 32, beta_slow 1")
    if method == "llama3":
        out.setdefault("low_freq_factor", 1.0)
        out.setdefault("high_freq_factor", 4.0)
        if out["high_freq_factor"] <= out["low_freq_factor"]:
            raise RopeconvError("high_freq_factor must be greater than low_freq_factor",
                                "Llama 3.1 uses low_freq_factor 1, high_freq_factor 4")
    if method == "longrope" and ("short_factor" not in out or "long_factor" not in out):
        raise RopeconvError("longrope needs both short_factor and long_factor lists "
                            f"({spec.rotary_dim // 2} numbers each)",
                            "pass --short-factor and --long-factor (inline 1.0,1.1,… or a JSON file)")
    return out


def _finite(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise RopeconvError(f"{key} {value!r} is not a number", f"pass a number for {key}") from None
    if not math.isfinite(value):
        raise RopeconvError(f"{key} {value!r} is not a finite number", f"pass a finite number for {key}")
    return float(value)


def _factor_list(key: str, value: Any, expected: int) -> list[float]:
    if not isinstance(value, (list, tuple)):
        raise RopeconvError(f"{key} must be a list of numbers", "pass it inline (1.0,1.2,…) or as a JSON file")
    numbers = [_finite(key, v) for v in value]
    if len(numbers) != expected:
        raise RopeconvError(f"{key} has {len(numbers)} numbers but this model has {expected} rotary dimension pairs",
                            f"pass exactly {expected} numbers (rotary dims / 2)")
    if any(n <= 0 for n in numbers):
        raise RopeconvError(f"{key} has a value ≤ 0", "every LongRoPE factor must be positive")
    return numbers


def parse_factor_list(key: str, text: str) -> list:
    """A LongRoPE list: inline `1.0,1.1,…`, a JSON list, or a JSON file (a list, or an object with `key`)."""
    path = Path(text).expanduser()
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RopeconvError(f"--{key.replace('_', '-')} file {path} is not valid JSON ({exc})",
                                "give a JSON list of numbers") from None
        if isinstance(data, dict):
            data = data.get(key, data.get("rope_scaling", {}).get(key) if isinstance(data.get("rope_scaling"), dict) else None)
        if not isinstance(data, list):
            raise RopeconvError(f"--{key.replace('_', '-')} file {path} holds no list named {key}",
                                "give a JSON list of numbers, or an object with that key")
        return data
    try:
        data = json.loads(text if text.strip().startswith("[") else f"[{text}]")
    except ValueError:
        raise RopeconvError(f"--{key.replace('_', '-')} {text[:40]!r} is neither a file nor a list of numbers",
                            "pass 1.0,1.1,… or a JSON file") from None
    return data


def check_family(spec: RopeSpec, method: str) -> None:
    fam = spec.family
    if fam is not None and fam.methods is not None and method not in fam.methods:
        allowed = ", ".join(fam.methods) if fam.methods else "none"
        raise RopeconvError(f"{spec.model_type} cannot take {method}: {fam.methods_reason}",
                            f"methods it accepts: {allowed}")


def scaling_start(before: RopeSpec, *, rebase: bool, earlier: dict | None,
                  original_context: int | None) -> tuple[float, int, list[str]]:
    """(θ, L0) a conversion scales from, and a note. Two scalings are never stacked silently: an
    already-scaled model is refused unless `rebase`, which scales from the unscaled base instead.

    `earlier` describes an earlier ropeconv conversion ({"method", "rope_theta", "original_context"}):
    it makes an NTK-rescaled θ count as scaled and holds the base to return to.
    """
    if not (before.is_scaled or earlier):
        return before.theta, before.original_context, []
    current = (f"{before.rope_type} ×{before.factor:g}" if before.is_scaled and before.factor
               else before.rope_type if before.is_scaled
               else f"{earlier.get('method', '?')} by ropeconv (θ {earlier['rope_theta']:g} → {before.theta:g})")
    if not rebase:
        raise RopeconvError(f"the model is already scaled ({current}, serving {before.served_context()} tokens); "
                            "stacking a second scaling would apply the factor twice",
                            "pass --rebase to replace it, computed from the unscaled base")
    note = [f"--rebase: replacing {current}; computed from the unscaled base"]
    if earlier and earlier.get("rope_theta") is not None:
        L0 = int(original_context or earlier.get("original_context") or before.original_context)
        return float(earlier["rope_theta"]), L0, note
    return before.theta, before.original_context, note


def resolve_scale(before: RopeSpec, theta: float, L0: int, factor: Any,
                  target_context: Any) -> tuple[float, int]:
    """(factor, served context in whole tokens) from --factor or --target-context over L0."""
    base = copy.copy(before)
    base.theta, base.original_context = theta, L0
    factor_value = resolve_factor(base, factor, target_context)
    served = L0 * factor_value
    if abs(served - round(served)) > 1e-6:
        raise RopeconvError(f"factor {factor_value:g} × trained context {L0} = {served:g} is not a whole number "
                            "of tokens, so max_position_embeddings / L0 cannot equal the factor",
                            f"pass --target-context with a whole number (e.g. {int(served)})")
    return factor_value, int(round(served))


def plan_extension(config: dict, method: str, *, factor: Any = None, target_context: Any = None,
                   original_context: int | None = None, params: dict | None = None, rebase: bool = False,
                   unscaled_base: dict | None = None) -> Plan:
    """Compute the new config.json for `method` at `factor` (or `target_context`).

    `unscaled_base` is the RoPE description before an earlier ropeconv conversion (from the source's
    ropeconv.json): it makes an NTK-rescaled θ count as scaled, and is the base for --rebase.
    """
    get_method(method)
    before = read_spec(config, original_context=original_context)
    check_family(before, method)
    warnings = list(before.warnings)

    theta, L0, note = scaling_start(before, rebase=rebase, earlier=unscaled_base,
                                    original_context=original_context)
    warnings += note
    factor_value, served = resolve_scale(before, theta, L0, factor, target_context)
    method_params = normalise_params(method, params, before)

    basis = Basis(theta, before.rotary_dim, L0)
    inv_freq, attention = compute(method, basis, {"factor": factor_value, **method_params})

    new_theta = ntk_theta(theta, before.rotary_dim, factor_value) if method == "ntk" else theta
    entry: dict[str, Any] = {"rope_type": "default" if method == "ntk" else method}
    if method != "ntk":
        entry["factor"] = float(factor_value)
        entry.update(method_params)
    if method in NEEDS_ORIGINAL:
        entry["original_max_position_embeddings"] = L0
    entry.update(before.extra)  # mrope_section and friends travel with the entry

    keeps_L0 = method in KEEPS_L0_IN_MAX and not (method == "linear" and before.family
                                                  and before.family.linear_max_is_scaled)
    max_pos = L0 if keeps_L0 else served
    new_config = write_rope(config, before, entry, new_theta, max_pos, L0, method)
    after = read_spec(new_config)
    if method != "ntk" and after.rope_type != method:  # our own output must read back as written
        raise AssertionError(f"planned config reads back as {after.rope_type}, not {method}")
    if method == "yarn" and method_params.get("attention_factor") is not None:
        warnings.append("attention_factor is written explicitly: older vLLM, SGLang, TGI and exllamav2 ignore it "
                        "and llama.cpp recomputes it")
    if method == "dynamic":
        warnings.append("dynamic is not portable: static in SGLang and older vLLM, dropped by llama.cpp and "
                        "exllamav2, refused by exllamav3 (see `ropeconv methods`)")
    return Plan(method=method, factor=factor_value, params=method_params, before=before, after=after,
                config=new_config, served_context=served, original_context=L0, base_theta=theta, inv_freq=inv_freq, attention_factor=attention,
                warnings=warnings)


def write_rope(config: dict, before: RopeSpec, entry: dict, theta: float, max_pos: int, L0: int,
               method: str) -> dict:
    """A copy of config.json with the new RoPE written in every shape the engines read."""
    new = copy.deepcopy(config)
    section = new
    for key in before.path:
        section = section[key]

    scaling = {k: v for k, v in entry.items()} if entry["rope_type"] != "default" or before.extra else None
    if before.nested is not None:
        if not (isinstance(section.get("rope_parameters"), dict)
                and before.scaled_layer_type in section["rope_parameters"]):
            section["rope_parameters"] = copy.deepcopy(before.nested)  # legacy-shaped source
        nested = section["rope_parameters"]
        old = nested.get(before.scaled_layer_type) or {}
        kept = {k: v for k, v in old.items() if k == "partial_rotary_factor"}
        nested[before.scaled_layer_type] = {**entry, "rope_theta": float(theta), **kept}
    else:
        old = section.get("rope_parameters") if isinstance(section.get("rope_parameters"), dict) else {}
        kept = {k: v for k, v in old.items() if k == "partial_rotary_factor"}
        section["rope_parameters"] = {"rope_type": entry["rope_type"], "rope_theta": float(theta), **kept,
                                      **{k: v for k, v in entry.items() if k != "rope_type"}}
    # Legacy readers (transformers 4.x, exllamav2, Ollama's converter): rope_scaling + top-level θ.
    if scaling is not None and before.nested is not None and before.scaled_layer_type != FULL_ATTENTION:
        scaling = None  # legacy rope_scaling only ever meant full attention
    section["rope_scaling"] = scaling
    section["rope_theta"] = float(theta)
    theta_key = before.family.theta_key if before.family else "rope_theta"
    partial_key = before.family.partial_key if before.family else "partial_rotary_factor"
    for key in {theta_key} | ({"rotary_emb_base"} & set(section)):
        section[key] = float(theta)  # e.g. GPT-NeoX reads only rotary_emb_base
    if before.partial_rotary_factor != 1.0 and not ({"partial_rotary_factor", "rotary_pct"} & set(section)):
        # rope_scaling replaces rope_parameters in transformers v5, so the fraction must be top-level too
        section[partial_key] = before.partial_rotary_factor
    if "head_dim" in section and section["head_dim"] is None and not before.model_type.startswith("deepseek"):
        # transformers' dynamic/yarn/longrope read getattr(config, "head_dim", …) and crash on null
        section["head_dim"] = before.head_dim
    section["max_position_embeddings"] = int(max_pos)
    if method in NEEDS_TOP_ORIGINAL or "original_max_position_embeddings" in section:
        section["original_max_position_embeddings"] = int(L0)
    return new


def conversion_summary(plan) -> dict:
    """The part of an extend report every source kind shares (a folder's Plan or a GGUF plan)."""
    return {"method": plan.method, "factor": plan.factor, "params": plan.params,
            "served_context": plan.served_context, "attention_factor": plan.attention_factor,
            "before": plan.before.to_dict(), "after": plan.after.to_dict()}


def conversion_view(dims: list[dict], base_inv: list[float], plan) -> dict:
    """What `inspect --method` shows: each dimension pair's new scale and action (added to `dims`),
    and the conversion's summary."""
    classes = dimension_classes(base_inv, plan.inv_freq, plan.factor)
    for d, new, cls in zip(dims, plan.inv_freq, classes):
        d.update(new_inv_freq=new, new_scale=base_inv[d["pair"]] / new, action=cls)
    return {"method": plan.method, "factor": plan.factor, "served_context": plan.served_context,
            "attention_factor": plan.attention_factor, "after": plan.after.to_dict(),
            "counts": {c: classes.count(c) for c in ("keep", "blend", "interpolate")}, "warnings": plan.warnings}


def dimension_classes(base: list[float], new: list[float], factor: float) -> list[str]:
    """Per dimension pair: 'keep' (unchanged), 'interpolate' (divided by the factor) or 'blend'."""
    out = []
    for b, n in zip(base, new):
        ratio = b / n
        out.append("keep" if abs(ratio - 1) < 1e-6 else "interpolate" if abs(ratio - factor) < 1e-6 * factor
                   else "blend")
    return out
