"""Planning a GGUF conversion: the metadata keys and tensors llama.cpp reads for each method.

`plan_gguf` turns an opened file (`GgufInfo`) and a method into a `GgufPlan`: keys to set or drop,
frequency-factor tensors to add or remove, and the RoPE description before and after;
`supported_methods` says which methods an architecture's llama.cpp loader can carry. The rules are
listed in `ropeconv.gguf_io`'s docstring.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from ropeconv import __version__
from ropeconv.errors import RopeconvError
from ropeconv.gguf_io.read import (
    FACTORS_LONG,
    FACTORS_SHORT,
    LONGROPE_ARCHS,
    RECORD_PREFIX,
    ROPE_FREQS,
    ROPE_FREQS_ARCHS,
    ROPE_TENSORS,
    YARN_BETA_ARCHS,
    YARN_BETA_DEFAULT,
    GgufInfo,
    GgufRopeSpec,
    _key,
    read_record,
    spec_from_metadata,
)
from ropeconv.methods import Basis, base_inv_freq, compute, get_method, ntk_theta, yarn_get_mscale
from ropeconv.plan import normalise_params, resolve_scale, scaling_start


# ---------------------------------------------------------------------------------------------------------
# planning


@dataclass
class GgufPlan:
    method: str
    factor: float
    params: dict
    before: GgufRopeSpec
    after: GgufRopeSpec
    served_context: int
    inv_freq: list[float]
    attention_factor: float
    set_kv: dict[str, tuple[int, Any]]  # key -> (GGUFValueType, value)
    drop_kv: set[str]
    add_tensors: dict[str, list[float]]
    drop_tensors: set[str]
    changes: list[dict]
    warnings: list[str] = field(default_factory=list)


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _int_type(info_types: dict, key: str, value: int) -> int:
    from gguf import GGUFValueType as T

    existing = info_types.get(key)
    limits = {int(T.UINT32): 2 ** 32, int(T.UINT64): 2 ** 64, int(T.INT32): 2 ** 31, int(T.INT64): 2 ** 63}
    if existing in limits and value < limits[existing]:
        return int(existing)
    return int(T.UINT32 if value < 2 ** 32 else T.UINT64)


def _float_type(info_types: dict, key: str) -> int:
    from gguf import GGUFValueType as T

    existing = info_types.get(key)
    return int(existing) if existing in (int(T.FLOAT32), int(T.FLOAT64)) else int(T.FLOAT32)


def plan_gguf(info: GgufInfo, method: str, *, factor: Any = None, target_context: Any = None,
              original_context: int | None = None, params: dict | None = None, rebase: bool = False) -> GgufPlan:
    """What `extend_gguf` would write: new metadata values, tensors added/removed, before/after specs."""
    from gguf import GGUFValueType as T

    get_method(method)
    arch = info.arch
    k = lambda name: _key(arch, name)  # noqa: E731
    if method == "dynamic":
        raise RopeconvError("llama.cpp has no dynamic NTK scaling, so a GGUF file cannot express it "
                            "(llama.cpp would run the model unscaled)",
                            "use --method yarn (no training needed; the nearest static method llama.cpp runs) "
                            "or --method ntk (a larger rope.freq_base)")
    before = spec_from_metadata(arch, info.kv, info.rope_tensors, original_context=original_context)
    warnings = list(before.warnings)
    if info.split_count > 1:
        raise RopeconvError(f"{info.path.name} is one part of a {info.split_count}-part split GGUF",
                            "merge the parts first (llama-gguf-split --merge), then extend the merged file")
    if method == "llama3" and arch not in ROPE_FREQS_ARCHS:
        raise RopeconvError(f"llama.cpp's '{arch}' architecture does not load a rope_freqs tensor, so Llama 3 "
                            "scaling cannot be expressed in this GGUF",
                            "use --method yarn (it also keeps high frequencies and interpolates low ones)")
    if method == "longrope" and arch not in LONGROPE_ARCHS:
        raise RopeconvError(f"llama.cpp's '{arch}' architecture does not load LongRoPE factor tensors "
                            "(rope_factors_long / rope_factors_short)",
                            "use --method yarn, or a model family whose llama.cpp loader reads them "
                            f"({', '.join(sorted(LONGROPE_ARCHS))})")

    record = read_record(info.kv)
    earlier = record and {"method": record.get("method", "?"), "rope_theta": record.get("base.freq_base"),
                          "original_context": record.get("base.original_context")}
    theta, L0, note = scaling_start(before, rebase=rebase, earlier=earlier, original_context=original_context)
    warnings += note
    if (rebase and before.is_scaled and not (record and record.get("base.freq_base"))
            and before.original_context_source == "context_length" and before.rope_type != "linear"):
        raise RopeconvError(f"the file's {before.rope_type} scaling does not say the length it was trained at "
                            "before scaling (no rope.scaling.original_context_length)",
                            "pass --original-context (e.g. 8192 for Llama 3.1)")
    s, served = resolve_scale(before, theta, L0, factor, target_context)
    p = normalise_params(method, params, before)
    if method == "yarn" and arch not in YARN_BETA_ARCHS:
        for name, default in zip(("beta_fast", "beta_slow"), YARN_BETA_DEFAULT):
            if name in p and float(p[name]) != default:
                raise RopeconvError(f"llama.cpp reads rope.scaling.yarn_{name} only for "
                                    f"{', '.join(sorted(YARN_BETA_ARCHS))}: for '{arch}' it always uses "
                                    f"{name} {default:g}, so {p[name]:g} cannot be expressed",
                                    f"drop --{name.replace('_', '-')} (llama.cpp's YaRN uses 32 / 1 here)")
    if method == "yarn" and p.get("truncate") is False:
        raise RopeconvError("truncate=false cannot be expressed in GGUF: llama.cpp always rounds the YaRN ramp "
                            "bounds (floor/ceil)", "drop --no-truncate")

    rot = before.rotary_dim
    inv, attention = compute(method, Basis(theta, rot, L0), {"factor": s, **p})

    drop_kv = {key for key in info.kv if key.startswith(f"{arch}.rope.scaling.") or key == k("rope.scale_linear")}
    drop_kv |= {key for key in info.types if key.startswith(f"{arch}.rope.scaling.")}
    log_mul = k("rope.scaling.yarn_log_multiplier")
    if log_mul in drop_kv:
        drop_kv.discard(log_mul)  # a property of the model (DeepSeek's mscale_all_dim), not of the old scaling
        if method == "yarn":
            warnings.append(f"{log_mul} is kept: llama.cpp derives this architecture's YaRN attention factor from it")
    drop_tensors = {name for name in info.rope_tensors if name in ROPE_TENSORS}
    set_kv: dict[str, tuple[int, Any]] = {}
    add_tensors: dict[str, list[float]] = {}

    set_kv[k("context_length")] = (_int_type(info.types, k("context_length"), served), served)
    new_theta = ntk_theta(theta, rot, s) if method == "ntk" else theta
    if abs(new_theta - before.theta) > 1e-9 * new_theta:  # ntk, or --rebase back to the unscaled θ
        set_kv[k("rope.freq_base")] = (_float_type(info.types, k("rope.freq_base")), new_theta)
    orig_key = k("rope.scaling.original_context_length")
    if method != "ntk":
        set_kv[orig_key] = (_int_type(info.types, orig_key, L0), L0)
    if method == "linear":
        set_kv[k("rope.scaling.type")] = (int(T.STRING), "linear")
        set_kv[k("rope.scaling.factor")] = (_float_type(info.types, k("rope.scaling.factor")), s)
    elif method == "yarn":
        set_kv[k("rope.scaling.type")] = (int(T.STRING), "yarn")
        set_kv[k("rope.scaling.factor")] = (_float_type(info.types, k("rope.scaling.factor")), s)
        relative = attention / yarn_get_mscale(s)  # llama.cpp multiplies its own 0.1·ln(s)+1 by attn_factor
        if abs(relative - 1.0) > 1e-6:
            set_kv[k("rope.scaling.attn_factor")] = (int(T.FLOAT32), relative)
            warnings.append(f"attention factor {attention:.6g} differs from llama.cpp's default "
                            f"{yarn_get_mscale(s):.6g}: written as rope.scaling.attn_factor {relative:.6g}")
        defaults = YARN_BETA_ARCHS.get(arch, YARN_BETA_DEFAULT)
        wanted = (float(p.get("beta_fast", 32.0)), float(p.get("beta_slow", 1.0)))
        for name, want, default in zip(("yarn_beta_fast", "yarn_beta_slow"), wanted, defaults):
            if want != default:
                set_kv[k(f"rope.scaling.{name}")] = (int(T.FLOAT32), want)
    elif method == "llama3":
        base = base_inv_freq(theta, rot)
        add_tensors[ROPE_FREQS] = [b / i for b, i in zip(base, inv)]
    elif method == "longrope":
        set_kv[k("rope.scaling.type")] = (int(T.STRING), "longrope")
        if abs(attention - 1.0) > 1e-7:
            set_kv[k("rope.scaling.attn_factor")] = (int(T.FLOAT32), attention)
        add_tensors[FACTORS_LONG] = list(p["long_factor"])
        add_tensors[FACTORS_SHORT] = list(p["short_factor"])
        warnings.append("llama.cpp switches LongRoPE factors per context: a context longer than "
                        f"{L0} tokens uses the long factors for every position")
    set_kv[RECORD_PREFIX + "version"] = (int(T.STRING), __version__)
    set_kv[RECORD_PREFIX + "method"] = (int(T.STRING), method)
    set_kv[RECORD_PREFIX + "factor"] = (int(T.FLOAT32), s)
    set_kv[RECORD_PREFIX + "base.freq_base"] = (int(T.FLOAT32), theta)
    set_kv[RECORD_PREFIX + "base.original_context"] = (int(T.UINT32), L0)

    # Values as the file will store them (float32 rounding), so `after` equals what reads back.
    stored = {key: (_f32(v) if vt == int(T.FLOAT32) else v) for key, (vt, v) in set_kv.items()}
    final_kv = {key: v for key, v in info.kv.items() if key not in drop_kv}
    final_kv.update(stored)
    final_tensors = {name: v for name, v in info.rope_tensors.items() if name not in drop_tensors}
    final_tensors.update({name: [_f32(x) for x in values] for name, values in add_tensors.items()})
    after = spec_from_metadata(arch, final_kv, final_tensors)
    expected = "default" if method == "ntk" else method
    if after.rope_type != expected:  # our own output must read back as written
        raise AssertionError(f"planned GGUF metadata reads back as {after.rope_type}, not {expected}")
    for w in after.warnings:
        if w not in warnings and not w.startswith("architecture"):
            warnings.append(w)

    changes = []
    for key in list(dict.fromkeys([*sorted(drop_kv), *set_kv])):
        old, new = info.kv.get(key), stored.get(key)
        if key in set_kv and old == new:
            continue
        changes.append({"key": key, "before": old, "after": new})
    dropped_t = sorted(drop_tensors - set(add_tensors))
    for name in sorted(drop_tensors | set(add_tensors)):
        changes.append({"key": f"tensor {name}", "before": _tensor_note(info.rope_tensors.get(name)),
                        "after": _tensor_note(final_tensors.get(name))})
    if dropped_t:
        warnings.append(f"removed {', '.join(dropped_t)}: the new scaling replaces it")
    return GgufPlan(method=method, factor=s, params=p, before=before, after=after, served_context=served,
                    inv_freq=inv, attention_factor=attention, set_kv=set_kv, drop_kv=drop_kv - set(set_kv),
                    add_tensors=add_tensors, drop_tensors=drop_tensors, changes=changes, warnings=warnings)


def _tensor_note(values: list[float] | None) -> str | None:
    if values is None:
        return None
    return f"F32[{len(values)}] min {min(values):.6g} max {max(values):.6g}"


def _diff_lines(changes: list[dict]) -> list[str]:
    lines = []
    for c in changes:
        if c["before"] is not None:
            lines.append(f"- {c['key']} = {_show(c['before'])}")
        if c["after"] is not None:
            lines.append(f"+ {c['key']} = {_show(c['after'])}")
    return lines


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.9g}"
    if isinstance(value, list) and len(value) > 8:
        return f"[{', '.join(_show(v) for v in value[:4])}, … {len(value)} values]"
    return repr(value) if isinstance(value, str) else str(value)


def supported_methods(arch: str) -> dict[str, str]:
    """Which methods a GGUF of `arch` can carry for llama.cpp, each with how (or why not)."""
    out = {"linear": "rope.scaling.type linear + factor", "ntk": "a larger rope.freq_base",
           "yarn": "rope.scaling.type yarn + factor + original_context_length",
           "dynamic": "not available: llama.cpp has no dynamic NTK"}
    out["llama3"] = ("rope_freqs tensor" if arch in ROPE_FREQS_ARCHS
                     else f"not available: llama.cpp's {arch} loads no rope_freqs tensor")
    out["longrope"] = ("rope_factors_long/short tensors" if arch in LONGROPE_ARCHS
                       else f"not available: llama.cpp's {arch} loads no LongRoPE factor tensors")
    return out
