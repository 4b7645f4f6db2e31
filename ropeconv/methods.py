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
from typing import Callable

from ropeconv.errors import RopeconvError, did_you_mean


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
    beta_fast = params.get("beta_fast") or 32.0
    beta_slow = params.get("beta_slow") or 1.0

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
            "transformers, TGI; static in SGLang/older vLLM, dropped by llama.cpp/exllamav2, refused by exllamav3",
        ),
        Method(
            "yarn",
            _yarn,
            "YaRN: NTK-by-parts interpolation plus an attention temperature.",
            "works without training; ~400 steps of fine-tuning reach the paper's figures",
            "some: static YaRN costs a little on short inputs in every engine",
            "transformers, vLLM, SGLang, TGI, llama.cpp, exllamav2/v3",
            {"beta_fast": 32.0, "beta_slow": 1.0, "mscale": None, "mscale_all_dim": None,
             "attention_factor": None, "truncate": None},
        ),
        Method(
            "llama3",
            _llama3,
            "Llama 3.1 scaling: low frequencies interpolated, high kept, smooth in between.",
            "designed with long-context training; usable without",
            "small: high frequencies kept",
            "transformers, vLLM, SGLang, TGI, llama.cpp (rope_freqs tensor), exllamav2/v3",
            {"low_freq_factor": 1.0, "high_freq_factor": 4.0},
        ),
        Method(
            "longrope",
            _longrope,
            "LongRoPE: searched per-dimension factors, short and long sets.",
            "factors come from a search (and usually training); supply them",
            "none with short_factor below L0",
            "transformers, vLLM, SGLang, llama.cpp (factor tensors); switching rules differ per engine",
            {"short_factor": None, "long_factor": None, "attention_factor": None},
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
