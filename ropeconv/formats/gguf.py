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
from typing import Any, Callable, Collection

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
from ropeconv.gguf_io.write import write_gguf
from ropeconv.launch import gguf_launch_lines
from ropeconv.methods import YARN_BETA_FAST, YARN_BETA_SLOW, base_inv_freq, yarn_get_mscale
from ropeconv.plan import RopePlan, conversion_summary, conversion_view, plan
from ropeconv.output import gguf_destination
from ropeconv.record import Base, gguf_base, gguf_record, gguf_record_keys
from ropeconv.request import ConversionRequest, RequestError


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


# ---------------------------------------------------------------------------------------------------------
# the method table: how a GGUF file carries each method for llama.cpp, or why it cannot (one row per method;
# tests/test_methods.py fails when a convertible method has none)


@dataclass
class _Writes:
    """What one conversion sets in the file, filled in by the method's writer."""

    info: GgufInfo
    rope: RopePlan
    set_kv: dict[str, tuple[int, Any]] = field(default_factory=dict)
    add_tensors: dict[str, list[float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def key(self, name: str) -> str:
        return _key(self.info.arch, name)

    def set_type(self, scaling_type: str) -> None:
        from gguf import GGUFValueType as T

        self.set_kv[self.key("rope.scaling.type")] = (int(T.STRING), scaling_type)

    def set_factor(self) -> None:
        key = self.key("rope.scaling.factor")
        self.set_kv[key] = (_float_type(self.info.types, key), self.rope.factor)


@dataclass(frozen=True)
class GgufMethod:
    """How a GGUF file carries one method: `how` it is written by `write`, for the architectures in `archs`
    (None: every one); elsewhere — or everywhere when `write` is None — `refusal(arch)` says why not and
    what to do instead, and `missing` is the short reason `supported_methods` gives."""

    how: str
    write: Callable[[_Writes], None] | None
    archs: Collection[str] | None = None
    missing: str = ""
    refusal: Callable[[str], RopeconvError] | None = None
    check: Callable[[str, dict], None] | None = None  # parameters llama.cpp cannot express for an architecture
    # the metadata names the method and states L0 (rope.scaling.original_context_length); ntk's plain RoPE
    # with a larger θ reads back as unscaled
    states_l0: bool = True

    def unavailable(self, arch: str) -> str | None:
        """Why a GGUF of `arch` cannot carry the method (None: it can)."""
        if self.write is None:
            return self.missing
        if self.archs is not None and arch not in self.archs:
            return f"llama.cpp's {arch} {self.missing}"
        return None


def _write_linear(w: _Writes) -> None:
    w.set_type("linear")
    w.set_factor()


def _write_ntk(w: _Writes) -> None:
    pass  # the larger θ is the rope.freq_base every conversion writes where θ changes (_write_common)


def _write_yarn(w: _Writes) -> None:
    from gguf import GGUFValueType as T

    w.set_type("yarn")
    w.set_factor()
    arch, p, s, attention = w.info.arch, w.rope.params, w.rope.factor, w.rope.attention_factor
    log_mul = w.key("rope.scaling.yarn_log_multiplier")
    mscale_all = p.get("mscale_all_dim") or (w.info.kv[log_mul] / 0.1 if log_mul in w.info.kv else None)
    if arch in YARN_LOG_MUL_ARCHS and mscale_all:
        # DeepSeek: the softmax scale comes from the log multiplier, the rotary magnitude is attn_factor
        if p.get("mscale") and abs(float(p["mscale"]) - float(mscale_all)) > 1e-9:
            raise RequestError("mscale", f"llama.cpp's '{arch}' YaRN assumes mscale = mscale_all_dim, so mscale "
                               f"{p['mscale']:g} with mscale_all_dim {mscale_all:g} cannot be expressed",
                               "pass the same value for {name} and {name:mscale_all_dim}")
        w.set_kv[log_mul] = (int(T.FLOAT32), 0.1 * float(mscale_all))
        relative = attention
    else:
        relative = attention / yarn_get_mscale(s)  # llama.cpp multiplies its own 0.1·ln(s)+1 by attn_factor
    if abs(relative - 1.0) > 1e-6:
        w.set_kv[w.key("rope.scaling.attn_factor")] = (int(T.FLOAT32), relative)
        w.warnings.append(f"attention factor {attention:.6g} differs from llama.cpp's default "
                          f"{yarn_get_mscale(s):.6g}: written as rope.scaling.attn_factor {relative:.6g}")
    defaults = YARN_BETA_ARCHS.get(arch, YARN_BETA_DEFAULT)
    wanted = (float(p.get("beta_fast", YARN_BETA_FAST)), float(p.get("beta_slow", YARN_BETA_SLOW)))
    for name, want, default in zip(("yarn_beta_fast", "yarn_beta_slow"), wanted, defaults):
        if want != default:
            w.set_kv[w.key(f"rope.scaling.{name}")] = (int(T.FLOAT32), want)


def _check_yarn(arch: str, p: dict) -> None:
    if arch not in YARN_BETA_ARCHS:
        for name, default in zip(("beta_fast", "beta_slow"), YARN_BETA_DEFAULT):
            if name in p and float(p[name]) != default:
                raise RequestError(name, f"llama.cpp reads rope.scaling.yarn_{name} only for "
                                   f"{', '.join(sorted(YARN_BETA_ARCHS))}: for '{arch}' it always uses "
                                   f"{name} {default:g}, so {p[name]:g} cannot be expressed",
                                   "drop {name} (llama.cpp's YaRN uses 32 / 1 here)")
    if p.get("truncate") is False:
        raise RequestError("truncate", "truncate=false cannot be expressed in GGUF: llama.cpp always rounds the "
                           "YaRN ramp bounds (floor/ceil)", "drop {name:no_truncate}")


def _write_llama3(w: _Writes) -> None:
    base = base_inv_freq(w.rope.base_theta, w.rope.rotary_dim)
    w.add_tensors[ROPE_FREQS] = [b / i for b, i in zip(base, w.rope.inv_freq)]


def _write_longrope(w: _Writes) -> None:
    from gguf import GGUFValueType as T

    w.set_type("longrope")
    if abs(w.rope.attention_factor - 1.0) > 1e-7:
        w.set_kv[w.key("rope.scaling.attn_factor")] = (int(T.FLOAT32), w.rope.attention_factor)
    w.add_tensors[FACTORS_LONG] = list(w.rope.params["long_factor"])
    w.add_tensors[FACTORS_SHORT] = list(w.rope.params["short_factor"])
    w.warnings.append("llama.cpp switches LongRoPE factors per context: a context longer than "
                      f"{w.rope.original_context} tokens uses the long factors for every position")


GGUF_METHODS: dict[str, GgufMethod] = {
    "linear": GgufMethod("rope.scaling.type linear + factor", _write_linear),
    "ntk": GgufMethod("a larger rope.freq_base", _write_ntk, states_l0=False),
    "yarn": GgufMethod("rope.scaling.type yarn + factor + original_context_length", _write_yarn, check=_check_yarn),
    "dynamic": GgufMethod(
        "", None, missing="llama.cpp has no dynamic NTK",
        refusal=lambda arch: RequestError(
            "method", "llama.cpp has no dynamic NTK scaling, so a GGUF file cannot express it (llama.cpp would run "
            "the model unscaled)", "use {name} yarn (no training needed; the nearest static method llama.cpp runs) "
            "or {name} ntk (a larger rope.freq_base)")),
    "llama3": GgufMethod(
        "rope_freqs tensor", _write_llama3, archs=ROPE_FREQS_ARCHS, missing="loads no rope_freqs tensor",
        refusal=lambda arch: RequestError(
            "method", f"llama.cpp's '{arch}' architecture does not load a rope_freqs tensor, so Llama 3 scaling "
            "cannot be expressed in this GGUF", "use {name} yarn (it also keeps high frequencies and interpolates "
            "low ones)")),
    "longrope": GgufMethod(
        "rope_factors_long/short tensors", _write_longrope, archs=LONGROPE_ARCHS,
        missing="loads no LongRoPE factor tensors",
        refusal=lambda arch: RequestError(
            "method", f"llama.cpp's '{arch}' architecture does not load LongRoPE factor tensors (rope_factors_long "
            "/ rope_factors_short)", "use {name} yarn, or a model family whose llama.cpp loader reads them "
            f"({', '.join(sorted(LONGROPE_ARCHS))})")),
}


def gguf_method(method: str) -> GgufMethod:
    row = GGUF_METHODS.get(method)
    if row is None:  # a method added to methods.METHODS without its row here
        raise RopeconvError(f"ropeconv cannot write {method} into a GGUF file yet (no row in GGUF_METHODS)",
                            "choose another method")
    return row


def supported_methods(arch: str) -> dict[str, str]:
    """Which methods a GGUF of `arch` can carry for llama.cpp, each with how (or why not)."""
    out = {}
    for name, row in GGUF_METHODS.items():
        reason = row.unavailable(arch)
        out[name] = row.how if reason is None else f"not available: {reason}"
    return out


# ---------------------------------------------------------------------------------------------------------
# planning: checks → the method's writer → what changes


def plan_gguf(info: GgufInfo, request: ConversionRequest) -> GgufPlan:
    """What `extend_gguf` would write: new metadata values, tensors added/removed, before/after specs."""
    row = gguf_method(request.method)
    if row.write is None:  # refused whatever the file holds: said before its RoPE is read
        raise row.refusal(info.arch)
    before = spec_from_metadata(info.arch, info.kv, info.rope_tensors, original_context=request.original_context)
    earlier = _check_gguf_request(info, request, row, before)
    rope = plan(before, request, earlier)
    if row.check is not None:
        row.check(info.arch, rope.params)
    writes = _Writes(info, rope, warnings=list(rope.warnings))
    drop_kv = _old_scaling_keys(writes)
    drop_tensors = {name for name in info.rope_tensors if name in ROPE_TENSORS}
    _write_common(writes, before)
    row.write(writes)
    _write_record(writes)
    return _changes(info, rope, before, writes, drop_kv, drop_tensors)


def _check_gguf_request(info: GgufInfo, request: ConversionRequest, row: GgufMethod,
                        before: GgufRopeSpec) -> Base | None:
    """Refusals that depend on the file; returns the base an earlier ropeconv conversion recorded."""
    if info.split_count > 1:
        raise RopeconvError(f"{info.path.name} is one part of a {info.split_count}-part split GGUF",
                            "merge the parts first (llama-gguf-split --merge), then extend the merged file")
    if row.unavailable(info.arch):
        raise row.refusal(info.arch)
    earlier = gguf_base(info.kv)
    if (request.rebase and before.is_scaled and earlier is None
            and before.original_context_source == "context_length" and before.rope_type != "linear"):
        raise RequestError("original_context", f"the file's {before.rope_type} scaling does not say the length "
                           "it was trained at before scaling (no rope.scaling.original_context_length)",
                           "{on} (e.g. 8192 for Llama 3.1)")
    return earlier


def _old_scaling_keys(w: _Writes) -> set[str]:
    """The earlier scaling's keys, dropped (the YaRN log multiplier stays: a property of the model)."""
    info, arch = w.info, w.info.arch
    drop_kv = {key for key in info.kv if key.startswith(f"{arch}.rope.scaling.") or key == w.key("rope.scale_linear")}
    drop_kv |= {key for key in info.types if key.startswith(f"{arch}.rope.scaling.")}
    log_mul = w.key("rope.scaling.yarn_log_multiplier")
    if log_mul in drop_kv:
        drop_kv.discard(log_mul)  # a property of the model (DeepSeek's mscale_all_dim), not of the old scaling
        if w.rope.method == "yarn":
            w.warnings.append(f"{log_mul} is kept: llama.cpp derives this architecture's YaRN attention factor from it")
    return drop_kv


def _write_common(w: _Writes, before: GgufRopeSpec) -> None:
    """What every method writes: the served context, θ where it changes, and L0 where the method keeps it."""
    types, rope = w.info.types, w.rope
    ctx = w.key("context_length")
    w.set_kv[ctx] = (_int_type(types, ctx, rope.served_context), rope.served_context)
    if abs(rope.theta - before.theta) > 1e-9 * rope.theta:  # ntk, or --rebase back to the unscaled θ
        w.set_kv[w.key("rope.freq_base")] = (_float_type(types, w.key("rope.freq_base")), rope.theta)
    if gguf_method(rope.method).states_l0:
        orig_key = w.key("rope.scaling.original_context_length")
        w.set_kv[orig_key] = (_int_type(types, orig_key, rope.original_context), rope.original_context)


def _write_record(w: _Writes) -> None:
    from gguf import GGUFValueType as T

    kinds = {"str": int(T.STRING), "f32": int(T.FLOAT32), "u32": int(T.UINT32)}
    rope = w.rope
    for key, (kind, value) in gguf_record_keys(rope.method, rope.factor, rope.base_theta, rope.original_context,
                                               __version__).items():
        w.set_kv[key] = (kinds[kind], value)


def _changes(info: GgufInfo, rope: RopePlan, before: GgufRopeSpec, w: _Writes, drop_kv: set[str],
             drop_tensors: set[str]) -> GgufPlan:
    """The plan: the file as it will read back (checked against the method), and the key/tensor diff."""
    from gguf import GGUFValueType as T

    set_kv, add_tensors, warnings = w.set_kv, w.add_tensors, w.warnings
    # Values as the file will store them (float32 rounding), so `after` equals what reads back.
    stored = {key: (_f32(v) if vt == int(T.FLOAT32) else v) for key, (vt, v) in set_kv.items()}
    final_kv = {key: v for key, v in info.kv.items() if key not in drop_kv}
    final_kv.update(stored)
    final_tensors = {name: v for name, v in info.rope_tensors.items() if name not in drop_tensors}
    final_tensors.update({name: [_f32(x) for x in values] for name, values in add_tensors.items()})
    after = spec_from_metadata(info.arch, final_kv, final_tensors)
    expected = rope.method if gguf_method(rope.method).states_l0 else "default"
    if after.rope_type != expected:  # our own output must read back as written
        raise AssertionError(f"planned GGUF metadata reads back as {after.rope_type}, not {expected}")
    for warning in after.warnings:
        if warning not in warnings and not warning.startswith("architecture"):
            warnings.append(warning)
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
    dest = gguf_destination(info.path, request.output, request.method, gplan.factor, request.force or request.dry_run)
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
