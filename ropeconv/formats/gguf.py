"""The GGUF adapter: what a RoPE plan writes into a GGUF file's metadata and rope tensors.

`plan_gguf` turns an opened file (`GgufInfo`) and a request into a `GgufPlan`: the format-free
`RopePlan` (from `ropeconv.plan`, shared with Hugging Face folders), the keys to set or drop, the
frequency-factor tensors to add or remove, and the RoPE description before and after;
`supported_methods` says which methods an architecture's llama.cpp loader can carry. The llama.cpp
rules are listed in `ropeconv.gguf_io`'s docstring.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ropeconv import __version__
from ropeconv.errors import RopeconvError
from ropeconv.gguf_io.read import (
    FACTORS_LONG,
    FACTORS_SHORT,
    LONGROPE_ARCHS,
    ROPE_FREQS,
    ROPE_FREQS_ARCHS,
    ROPE_TENSORS,
    YARN_BETA_ARCHS,
    YARN_BETA_DEFAULT,
    YARN_LOG_MUL_ARCHS,
    GgufInfo,
    GgufRopeSpec,
    _key,
    open_gguf,
    spec_from_metadata,
)
from ropeconv.gguf_io.write import _destination, write_gguf
from ropeconv.launch import gguf_launch_lines
from ropeconv.methods import YARN_BETA_FAST, YARN_BETA_SLOW, base_inv_freq, yarn_get_mscale
from ropeconv.plan import RopePlan, conversion_summary, conversion_view, plan
from ropeconv.record import gguf_base, gguf_record, gguf_record_keys
from ropeconv.request import ConversionRequest


# ---------------------------------------------------------------------------------------------------------
# planning


@dataclass
class GgufPlan:
    rope: RopePlan
    before: GgufRopeSpec
    after: GgufRopeSpec
    set_kv: dict[str, tuple[int, Any]]  # key -> (GGUFValueType, value)
    drop_kv: set[str]
    add_tensors: dict[str, list[float]]
    drop_tensors: set[str]
    changes: list[dict]
    warnings: list[str] = field(default_factory=list)

    # the RopePlan's figures, as reports and tests read them
    method = property(lambda self: self.rope.method)
    factor = property(lambda self: self.rope.factor)
    params = property(lambda self: self.rope.params)
    served_context = property(lambda self: self.rope.served_context)
    inv_freq = property(lambda self: self.rope.inv_freq)
    attention_factor = property(lambda self: self.rope.attention_factor)


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


def plan_gguf(info: GgufInfo, request: ConversionRequest) -> GgufPlan:
    """What `extend_gguf` would write: new metadata values, tensors added/removed, before/after specs."""
    from gguf import GGUFValueType as T

    method, arch = request.method, info.arch
    k = lambda name: _key(arch, name)  # noqa: E731
    if method == "dynamic":
        raise RopeconvError("llama.cpp has no dynamic NTK scaling, so a GGUF file cannot express it "
                            "(llama.cpp would run the model unscaled)",
                            "use --method yarn (no training needed; the nearest static method llama.cpp runs) "
                            "or --method ntk (a larger rope.freq_base)")
    before = spec_from_metadata(arch, info.kv, info.rope_tensors, original_context=request.original_context)
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
    earlier = gguf_base(info.kv)
    if (request.rebase and before.is_scaled and earlier is None
            and before.original_context_source == "context_length" and before.rope_type != "linear"):
        raise RopeconvError(f"the file's {before.rope_type} scaling does not say the length it was trained at "
                            "before scaling (no rope.scaling.original_context_length)",
                            "pass --original-context (e.g. 8192 for Llama 3.1)")
    rope = plan(before, request, earlier)
    p, s, L0, theta = rope.params, rope.factor, rope.original_context, rope.base_theta
    served, inv, attention = rope.served_context, rope.inv_freq, rope.attention_factor
    warnings = list(rope.warnings)
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
    new_theta = rope.theta
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
        mscale_all = p.get("mscale_all_dim") or (info.kv[log_mul] / 0.1 if log_mul in info.kv else None)
        if arch in YARN_LOG_MUL_ARCHS and mscale_all:
            # DeepSeek: the softmax scale comes from the log multiplier, the rotary magnitude is attn_factor
            if p.get("mscale") and abs(float(p["mscale"]) - float(mscale_all)) > 1e-9:
                raise RopeconvError(f"llama.cpp's '{arch}' YaRN assumes mscale = mscale_all_dim, so mscale "
                                    f"{p['mscale']:g} with mscale_all_dim {mscale_all:g} cannot be expressed",
                                    "pass the same value for --mscale and --mscale-all-dim")
            set_kv[log_mul] = (int(T.FLOAT32), 0.1 * float(mscale_all))
            relative = attention
        else:
            relative = attention / yarn_get_mscale(s)  # llama.cpp multiplies its own 0.1·ln(s)+1 by attn_factor
        if abs(relative - 1.0) > 1e-6:
            set_kv[k("rope.scaling.attn_factor")] = (int(T.FLOAT32), relative)
            warnings.append(f"attention factor {attention:.6g} differs from llama.cpp's default "
                            f"{yarn_get_mscale(s):.6g}: written as rope.scaling.attn_factor {relative:.6g}")
        defaults = YARN_BETA_ARCHS.get(arch, YARN_BETA_DEFAULT)
        wanted = (float(p.get("beta_fast", YARN_BETA_FAST)), float(p.get("beta_slow", YARN_BETA_SLOW)))
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
    kinds = {"str": int(T.STRING), "f32": int(T.FLOAT32), "u32": int(T.UINT32)}
    for key, (kind, value) in gguf_record_keys(method, s, theta, L0, __version__).items():
        set_kv[key] = (kinds[kind], value)

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
    return GgufPlan(rope=rope, before=before, after=after, set_kv=set_kv, drop_kv=drop_kv - set(set_kv),
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


# ---------------------------------------------------------------------------------------------------------
# entry points: inspect and extend a GGUF file


def inspect_gguf(path: str | Path, request: ConversionRequest | None = None, *,
                 original_context: int | None = None) -> dict:
    """Explain a GGUF file's RoPE setup; with a request, what `extend_gguf` would write."""
    info = open_gguf(path)
    L0 = request.original_context if request else original_context
    spec = spec_from_metadata(info.arch, info.kv, info.rope_tensors, original_context=L0)
    base_inv = base_inv_freq(spec.theta, spec.rotary_dim)
    current_inv, _ = spec.inv_freq()
    dims = [{"pair": j, "inv_freq": cur, "wavelength": 2 * math.pi / cur,
             "wavelength_over_L0": (2 * math.pi / b) / spec.original_context, "current_scale": b / cur}
            for j, (b, cur) in enumerate(zip(base_inv, current_inv))]
    rope_tensors = {}
    for t in info.tensors:
        if t.name in ROPE_TENSORS:
            values = info.rope_tensors[t.name]
            rope_tensors[t.name] = {"type": t.type_name, "shape": list(t.shape), "min": min(values),
                                    "max": max(values), "values": values}
    result: dict = {
        "source": {"kind": "gguf", "path": str(info.path)},
        "spec": spec.to_dict(),
        "dimensions": dims,
        "buffers": [],
        "warnings": list(spec.warnings),
        "gguf": {
            "architecture": info.arch,
            "name": info.kv.get("general.name"),
            "version": info.version,
            "file_size": info.file_size,
            "tensor_count": len(info.tensors),
            "kv_count": len(info.types),
            "alignment": info.alignment,
            "endian": "little" if info.endian == "<" else "big",
            "rope_keys": {key: info.kv.get(key) for key in sorted(info.kv)
                          if key.startswith(f"{info.arch}.rope.") or key == f"{info.arch}.context_length"},
            "rope_tensors": rope_tensors,
            "ropeconv_record": gguf_record(info.kv),
            "llama_cpp_methods": supported_methods(info.arch),
        },
    }
    if request is not None:
        gplan = plan_gguf(info, replace(request, rebase=True))
        result["conversion"] = {**conversion_view(dims, base_inv, gplan.rope, gplan.after),
                                "metadata_changes": gplan.changes}
    return result


def extend_gguf(path: str | Path, request: ConversionRequest,
                progress: Callable[[int], None] | None = None) -> dict:
    """Write a copy of the GGUF file at `path` whose metadata extends its context as `request` asks.

    Returns a report (JSON-able). `progress(n)` is called with the number of tensor bytes copied.
    With a dry run nothing is written. Raises RopeconvError for bad input; nothing is written then.
    """
    info = open_gguf(path)
    gplan = plan_gguf(info, request)
    # a dry run says where it would write (and whether that exists) rather than refusing an existing output
    dest = _destination(info.path, request.output, request.method, gplan.factor, request.force or request.dry_run)
    kept = [t for t in info.tensors if t.name not in gplan.drop_tensors]
    report = {
        "source": {"kind": "gguf", "path": str(info.path)},
        "output": str(dest),
        **conversion_summary(gplan.rope, gplan.before, gplan.after),
        "config_diff": _diff_lines(gplan.changes),
        "metadata_changes": gplan.changes,
        "tensors": {"copied": len(kept), "added": sorted(gplan.add_tensors),
                    "removed": sorted(gplan.drop_tensors - set(gplan.add_tensors)),
                    "replaced": sorted(gplan.drop_tensors & set(gplan.add_tensors)),
                    "bytes_copied": sum(t.n_bytes for t in kept)},
        "buffers": {"mode": "rewrite", "found": [], "pickled_shards": [], "changed": []},
        "gguf": {"architecture": info.arch, "source_size": info.file_size},
        "warnings": gplan.warnings,
        # the GGUF's context_length is L0·s: llama.cpp serves it as is, Ollama needs num_ctx
        "launch": [line.to_dict() for line in gguf_launch_lines(gplan.rope.served_context, str(dest))],
        "dry_run": request.dry_run,
    }
    if request.dry_run:
        report["output_exists"] = dest.exists()
        return report
    report["gguf"]["output_size"] = write_gguf(info, gplan, dest, progress=progress)
    return report
