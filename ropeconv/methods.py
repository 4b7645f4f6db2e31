"""The RoPE math: one pure function per scaling method, in a registry.

Each function takes the unscaled rotary basis (θ, rotary dims, trained context L0) and the
method's parameters and returns ``(inv_freq, attention_factor)``: a list of d/2 inverse
frequencies and the factor cos/sin are multiplied by. They mirror
``transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS`` (tests compare them to it) but need
neither torch nor a config object, so `inspect` and `--help` stay light.

transformers computes in float32; the exponent 2j/d is rounded to float32 here too, because
that rounding (not the final one) dominates the difference at large θ.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

from ropeconv.errors import RopeconvError, did_you_mean
from ropeconv.numbers import finite_number


# YaRN's ramp bounds by default (the paper's, and every engine's): the one definition.
YARN_BETA_FAST = 32.0
YARN_BETA_SLOW = 1.0
# Llama 3.1's bands (its published config's low_freq_factor / high_freq_factor).
LLAMA3_LOW_FREQ_FACTOR = 1.0
LLAMA3_HIGH_FREQ_FACTOR = 4.0


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


@dataclass(frozen=True)
class Basis:
    """What a method needs to know about the model: the unscaled rotary setup."""

    theta: float
    dim: int  # rotary dimensions (head_dim × partial fraction)
    original_context: int  # L0, the context the model was trained at


def base_inv_freq(theta: float, dim: int) -> list[float]:
    """b_j = θ^(-2j/d), j = 0 … d/2-1."""
    return [1.0 / theta ** _f32(2 * j / dim) for j in range(dim // 2)]


def wavelengths(inv_freq: list[float]) -> list[float]:
    return [2 * math.pi / f for f in inv_freq]


def ntk_theta(theta: float, dim: int, factor: float) -> float:
    """Static NTK-aware base: θ' = θ · s^(d/(d-2))."""
    return theta * factor ** (dim / (dim - 2))


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_attention_factor(factor: float, params: dict) -> float:
    if params.get("attention_factor") is not None:
        return float(params["attention_factor"])
    mscale, mscale_all_dim = params.get("mscale"), params.get("mscale_all_dim")
    if mscale and mscale_all_dim:
        return yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim)
    return yarn_get_mscale(factor)


def yarn_ramp_bounds(basis: Basis, params: dict) -> tuple[float, float]:
    """Dimension-pair indices (low, high) between which YaRN ramps from keep to interpolate."""
    beta_fast = params.get("beta_fast") or YARN_BETA_FAST
    beta_slow = params.get("beta_slow") or YARN_BETA_SLOW

    def correction_dim(rotations: float) -> float:
        return (basis.dim * math.log(basis.original_context / (rotations * 2 * math.pi))) / (
            2 * math.log(basis.theta)
        )

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0), min(high, basis.dim - 1)


def _linear(basis: Basis, p: dict, seq_len: int | None) -> tuple[list[float], float]:
    return [f / p["factor"] for f in base_inv_freq(basis.theta, basis.dim)], 1.0


def _ntk(basis: Basis, p: dict, seq_len: int | None) -> tuple[list[float], float]:
    return base_inv_freq(ntk_theta(basis.theta, basis.dim, p["factor"]), basis.dim), 1.0


def _dynamic(basis: Basis, p: dict, seq_len: int | None) -> tuple[list[float], float]:
    # transformers takes `max_position_embeddings` as L here; ropeconv writes L0 there for dynamic.
    length = max(seq_len or basis.original_context, basis.original_context)
    s, d = p["factor"], basis.dim
    theta = basis.theta * ((s * length / basis.original_context) - (s - 1)) ** (d / (d - 2))
    return base_inv_freq(theta, d), 1.0


def _yarn(basis: Basis, p: dict, seq_len: int | None) -> tuple[list[float], float]:
    factor = p["factor"]
    low, high = yarn_ramp_bounds(basis, p)
    if low == high:
        high += 0.001  # same guard as the reference implementation
    out = []
    for j in range(basis.dim // 2):
        # Rounded to float32 step by step, as transformers does, so the values equal the
        # buffers a loaded model holds (the ramp mix alone drifts ~3e-6 otherwise).
        pos = _f32(basis.theta ** _f32(2 * j / basis.dim))
        extrapolation, interpolation = _f32(1.0 / pos), _f32(1.0 / _f32(factor * pos))
        keep = _f32(1 - min(max(_f32(_f32(j - _f32(low)) / _f32(high - low)), 0.0), 1.0))
        out.append(_f32(_f32(interpolation * _f32(1 - keep)) + _f32(extrapolation * keep)))
    return out, yarn_attention_factor(factor, p)


def _llama3(basis: Basis, p: dict, seq_len: int | None) -> tuple[list[float], float]:
    factor, lf, hf = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
    L0 = basis.original_context
    out = []
    for b in base_inv_freq(basis.theta, basis.dim):
        wavelen = 2 * math.pi / b
        if wavelen < L0 / hf:
            out.append(b)
        elif wavelen > L0 / lf:
            out.append(b / factor)
        else:
            t = (L0 / wavelen - lf) / (hf - lf)
            out.append((1 - t) * b / factor + t * b)
    return out, 1.0


def longrope_attention_factor(factor: float, original_context: int, params: dict) -> float:
    if params.get("attention_factor") is not None:
        return float(params["attention_factor"])
    if factor <= 1.0:
        return 1.0
    return math.sqrt(1 + math.log(factor) / math.log(original_context))


def _longrope(basis: Basis, p: dict, seq_len: int | None) -> tuple[list[float], float]:
    ext = p["long_factor"] if seq_len and seq_len > basis.original_context else p["short_factor"]
    base = base_inv_freq(basis.theta, basis.dim)
    inv = [1.0 / (_f32(e) * (1.0 / b)) for e, b in zip(ext, base)]
    return inv, longrope_attention_factor(p["factor"], basis.original_context, p)


class ParamError(RopeconvError):
    """A method parameter that is wrong on its own; `name` is the parameter, so each front end (a CLI
    flag, a recipe key) can word it."""

    def __init__(self, name: str, problem: str, fix: str | None = None):
        self.name = name
        super().__init__(problem, fix)


@dataclass(frozen=True)
class Param:
    """One method parameter: its kind ("number", "bool" or "factors": d/2 numbers) and what it does."""

    name: str
    kind: str
    help: str


PARAMS: dict[str, Param] = {p.name: p for p in [
    Param("beta_fast", "number", f"yarn: rotations above which dims are kept (default {YARN_BETA_FAST:g})"),
    Param("beta_slow", "number", f"yarn: rotations below which dims are interpolated (default {YARN_BETA_SLOW:g})"),
    Param("mscale", "number", "yarn: DeepSeek-style mscale (with mscale_all_dim)"),
    Param("mscale_all_dim", "number", "yarn: DeepSeek-style mscale_all_dim"),
    Param("attention_factor", "number", "yarn/longrope: explicit attention factor (several engines ignore it)"),
    Param("truncate", "bool", "yarn: round the ramp bounds (default: truncate)"),
    Param("low_freq_factor", "number", f"llama3: default {LLAMA3_LOW_FREQ_FACTOR:g}"),
    Param("high_freq_factor", "number", f"llama3: default {LLAMA3_HIGH_FREQ_FACTOR:g}"),
    Param("short_factor", "factors", "longrope: d/2 numbers used up to L0,"),
    Param("long_factor", "factors", "longrope: d/2 numbers used past L0,"),
]}


def _check_yarn(p: dict) -> None:
    fast, slow = p.get("beta_fast", YARN_BETA_FAST), p.get("beta_slow", YARN_BETA_SLOW)
    if fast <= slow:
        raise ParamError("beta_fast", f"beta_fast ({float(fast)}) must be greater than beta_slow ({float(slow)}): the YaRN "
                         "ramp would run backwards", f"the defaults are beta_fast {YARN_BETA_FAST:g}, beta_slow "
                         f"{YARN_BETA_SLOW:g}")


def _check_llama3(p: dict) -> None:
    if p["high_freq_factor"] <= p["low_freq_factor"]:
        raise ParamError("high_freq_factor", "high_freq_factor must be greater than low_freq_factor",
                         f"Llama 3.1 uses low_freq_factor {LLAMA3_LOW_FREQ_FACTOR:g}, high_freq_factor "
                         f"{LLAMA3_HIGH_FREQ_FACTOR:g}")


def _check_longrope(p: dict) -> None:
    if "short_factor" not in p or "long_factor" not in p:
        raise ParamError("short_factor" if "short_factor" not in p else "long_factor",
                         "longrope needs both short_factor and long_factor lists (rotary dims / 2 numbers each)",
                         "give both lists (inline 1.0,1.1,… or a JSON file)")
    if len(p["short_factor"]) != len(p["long_factor"]):
        raise ParamError("long_factor", f"short_factor has {len(p['short_factor'])} numbers but long_factor "
                         f"{len(p['long_factor'])}", "give both lists with rotary dims / 2 numbers")


def _value(name: str, kind: str, value: Any) -> Any:
    """One parameter value checked on its own: finite positive numbers, true/false, lists of them."""
    if kind == "bool":
        if not isinstance(value, bool):
            raise ParamError(name, f"{name} must be true or false, got {value!r}", f"give true or false for {name}")
        return value
    if kind == "factors":
        if not isinstance(value, (list, tuple)) or not value:
            raise ParamError(name, f"{name} must be a list of numbers", "give it inline (1.0,1.2,…) or as a JSON file")
        numbers = [_positive(name, v) for v in value]
        return numbers
    return _positive(name, value)


def _positive(name: str, value: Any) -> float:
    try:
        number = finite_number(value, name)
    except RopeconvError as exc:
        raise ParamError(name, exc.problem, exc.fix) from None
    if number <= 0:
        raise ParamError(name, f"{name} must be positive, got {value!r}", f"give a positive {name}")
    return number


def validate_params(method: str, params: dict | None) -> dict:
    """A method's parameters, checked once: known names (with a did-you-mean), values of the right
    kind, the method's own rules; numbers become floats and the method's defaults are filled in where
    the written config needs them. Model-dependent checks (list length = d/2) are the plan's."""
    m = get_method(method)
    out: dict = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if key not in m.params:
            hint = did_you_mean(key, m.params) if m.params else ""
            raise ParamError(key, f"'{key}' is not a parameter of {method}{hint}",
                             f"{method} takes: {', '.join(m.params) or 'no parameters besides the factor'}")
        out[key] = _value(key, PARAMS[key].kind, value)
    for key, default in m.params.items():
        if default is not None and m.fill_defaults:
            out.setdefault(key, default)
    if m.check is not None:
        m.check(out)
    return out


@dataclass(frozen=True)
class Method:
    name: str
    compute: Callable[[Basis, dict, int | None], tuple[list[float], float]] | None
    summary: str
    training: str
    short_context: str
    engines: str
    # parameter name -> default (None: optional, no default); "factor" is always required
    params: dict = field(default_factory=dict)
    convertible: bool = True
    check: Callable[[dict], None] | None = None  # the method's own rule over its parameters
    fill_defaults: bool = False  # defaults are written into the config (Llama 3's band factors)


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "linear",
            _linear,
            "Position Interpolation: every frequency divided by the factor.",
            "needs fine-tuning (~1000 steps) to recover quality",
            "blurs nearby positions: perplexity rises at every length",
            "all engines (transformers, vLLM, SGLang, TGI, llama.cpp, exllama)",
        ),
        Method(
            "ntk",
            _ntk,
            "Static NTK-aware: a larger θ, written as plain RoPE so every engine honours it.",
            "works without training at small factors (≤4); fine-tuning helps",
            "small: high frequencies barely move",
            "all engines (it is just a new rope_theta)",
        ),
        Method(
            "dynamic",
            _dynamic,
            "Dynamic NTK: θ grows with the running sequence length past L0.",
            "none",
            "none: unchanged up to L0",
            "transformers, TGI; static in SGLang, no effect in vLLM (θ unchanged), dropped by llama.cpp/exllamav2, "
            "refused by exllamav3",
        ),
        Method(
            "yarn",
            _yarn,
            "YaRN: NTK-by-parts interpolation plus an attention temperature.",
            "works without training; ~400 steps of fine-tuning reach the paper's figures",
            "some: static YaRN costs a little on short inputs in every engine",
            "transformers, vLLM, SGLang, TGI, llama.cpp, exllamav2/v3",
            {"beta_fast": YARN_BETA_FAST, "beta_slow": YARN_BETA_SLOW, "mscale": None, "mscale_all_dim": None,
             "attention_factor": None, "truncate": None},
            check=_check_yarn,
        ),
        Method(
            "llama3",
            _llama3,
            "Llama 3.1 scaling: low frequencies interpolated, high kept, smooth in between.",
            "designed with long-context training; usable without",
            "small: high frequencies kept",
            "transformers, vLLM, SGLang, TGI, llama.cpp (rope_freqs tensor), exllamav2/v3",
            {"low_freq_factor": LLAMA3_LOW_FREQ_FACTOR, "high_freq_factor": LLAMA3_HIGH_FREQ_FACTOR},
            check=_check_llama3, fill_defaults=True,
        ),
        Method(
            "longrope",
            _longrope,
            "LongRoPE: searched per-dimension factors, short and long sets.",
            "factors come from a search (and usually training); supply them",
            "none with short_factor below L0",
            "transformers, vLLM, SGLang, llama.cpp (factor tensors); switching rules differ per engine",
            {"short_factor": None, "long_factor": None, "attention_factor": None},
            check=_check_longrope,
        ),
        Method(
            "alibi",
            None,
            "ALiBi: a linear distance penalty on attention scores, not a rotation.",
            "n/a: extrapolates without conversion; cannot become RoPE without pre-training",
            "n/a",
            "n/a (bloom, mpt, falcon with alibi)",
            convertible=False,
        ),
        Method(
            "absolute",
            None,
            "Learned/sinusoidal absolute positions added to embeddings: no RoPE to scale.",
            "n/a: the position table ends at the trained length",
            "n/a",
            "n/a (gpt2, opt, gpt_bigcode)",
            convertible=False,
        ),
    ]
}

CONVERTIBLE = [name for name, m in METHODS.items() if m.convertible]


def get_method(name: str) -> Method:
    name = name.strip().lower() if isinstance(name, str) else name  # -m YaRN is yarn
    method = METHODS.get(name)
    if method is None or not method.convertible:
        if method is not None:
            raise RopeconvError(f"'{name}' is not a RoPE scaling method: {method.summary}",
                                f"choose one of: {', '.join(CONVERTIBLE)}")
        raise RopeconvError(f"unknown method '{name}'{did_you_mean(name, CONVERTIBLE)}",
                            f"choose one of: {', '.join(CONVERTIBLE)}")
    return method


def compute(method: str, basis: Basis, params: dict, seq_len: int | None = None) -> tuple[list[float], float]:
    """(inv_freq, attention_factor) of `method` with `params` (which include `factor`)."""
    return get_method(method).compute(basis, params, seq_len)


def unscaled(basis: Basis) -> tuple[list[float], float]:
    return base_inv_freq(basis.theta, basis.dim), 1.0
