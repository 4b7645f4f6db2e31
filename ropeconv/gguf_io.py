"""GGUF files (llama.cpp, Ollama): read their RoPE description, write an extended copy.

`inspect_gguf` reads the same description `inspect` gives for Hugging Face folders from GGUF metadata
(`{arch}.context_length`, `{arch}.rope.*`) and the `rope_freqs` / `rope_factors_*` tensors.
`extend_gguf` writes a copy with the metadata llama.cpp reads for the new scaling. The source is
never modified; the output is built in a temporary file beside the destination and renamed into
place once it reads back; tensor data is streamed from the source in chunks, never held in memory.

What llama.cpp reads, and how (its src/llama-model.cpp, llama-context.cpp, models/*.cpp and
ggml's rope kernel; the reason each rule below exists):

- `context_length` is the trained/served length (n_ctx_train, the default context);
  `rope.scaling.original_context_length` is L0 for YaRN's ramp and for LongRoPE's short/long
  switch (default: context_length). `rope.freq_base` defaults to 10000.
- `rope.scaling.type` (none / linear / yarn / longrope; absent means linear) and
  `rope.scaling.factor` (absent or 0 means 1). `rope.scale_linear` is an older spelling of factor.
- YaRN: ext_factor 1, ramp bounds floor/ceil-rounded (transformers' truncate=true) from
  beta_fast 32 / beta_slow 1, attention factor 0.1·ln(s) + 1 times `rope.scaling.attn_factor`
  (read for every architecture). The `yarn_beta_*` keys are read only by a few architectures.
- The frequency-factor tensors divide each pair's frequency: inv_j = b_j / ff_j. `rope_freqs`
  carries Llama 3 scaling (ff_j = b_j / llama3_j, as llama.cpp's converter computes it);
  `rope_factors_long` / `rope_factors_short` carry LongRoPE (ff = the ext factors), chosen by
  whether the context exceeds original_context_length; with them the factor key must stay absent.
- A tensor the architecture does not create fails the load ("wrong number of tensors"), so the
  tensor kinds are only written for the architectures listed below.
- Dynamic NTK does not exist in llama.cpp.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ropeconv import __version__
from ropeconv.errors import RopeconvError
from ropeconv.families import family_of
from ropeconv.methods import Basis, base_inv_freq, compute, get_method, ntk_theta, yarn_get_mscale
from ropeconv.plan import dimension_classes, normalise_params, resolve_scale, scaling_start
from ropeconv.spec import RopeSpec

ROPE_FREQS = "rope_freqs.weight"
FACTORS_LONG = "rope_factors_long.weight"
FACTORS_SHORT = "rope_factors_short.weight"
ROPE_TENSORS = (ROPE_FREQS, FACTORS_LONG, FACTORS_SHORT)

# Architectures whose llama.cpp loader creates `rope_freqs` for every layer (Llama 3 frequency factors).
ROPE_FREQS_ARCHS = frozenset({
    "llama", "llama4", "deci", "granite", "granitemoe", "minicpm", "mistral3", "refact", "apertus", "arcee",
    "exaone", "exaone4", "pangu-embedded",
})
# Architectures that create `rope_factors_long`/`_short`: always (phi3, phimoe) or, for the rest, only when
# rope.scaling.type is longrope (then they do not create rope_freqs).
LONGROPE_ARCHS = frozenset({
    "phi3", "phimoe", "llama", "deci", "granite", "granitemoe", "minicpm", "mistral3", "refact", "apertus",
    "pangu-embedded",
})
# Architectures that read rope.scaling.yarn_beta_fast / yarn_beta_slow, with their defaults there.
YARN_BETA_ARCHS = {"grok": (8.0, 1.0), "mistral3": (32.0, 1.0)}
YARN_BETA_DEFAULT = (32.0, 1.0)
NON_ROPE = {
    "bloom": "ALiBi (a linear distance penalty), not RoPE",
    "mpt": "ALiBi (a linear distance penalty), not RoPE",
    "jina-bert-v2": "ALiBi (a linear distance penalty), not RoPE",
    "jais": "ALiBi (a linear distance penalty), not RoPE",
    "gpt2": "learned absolute position embeddings, not RoPE",
    "starcoder": "learned absolute position embeddings, not RoPE",
    "bert": "learned absolute position embeddings, not RoPE",
    "t5": "relative position buckets, not RoPE",
    "t5encoder": "relative position buckets, not RoPE",
    "mamba": "a state-space model with no attention positions",
    "mamba2": "a state-space model with no attention positions",
    "rwkv6": "a recurrent model with no attention positions",
    "rwkv6qwen2": "a recurrent model with no attention positions",
    "rwkv7": "a recurrent model with no attention positions",
    "arwkv7": "a recurrent model with no attention positions",
    "wavtokenizer-dec": "an audio decoder without RoPE",
    "clip": "a vision encoder without RoPE",
}
RECORD_PREFIX = "ropeconv."
CHUNK = 8 << 20  # bytes copied per read
HEADER_MIN = 24  # magic, version, tensor count, kv count
SMALL_ARRAY = 256  # arrays up to this length are read into the metadata view


# ---------------------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class FieldRef:
    """Where one metadata key/value lies in the file (copied byte for byte when unchanged)."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class TensorRef:
    """One tensor: its info record in the header and its data, by position in the file."""

    name: str
    info_offset: int
    info_size: int  # including the trailing 8-byte data offset
    type_name: str
    type_id: int
    shape: tuple[int, ...]  # as stored (ne0 first)
    n_bytes: int
    data_offset: int  # absolute


@dataclass
class GgufInfo:
    """An opened GGUF file, without its reader: keys and tensors by position, small values by key.

    The gguf reader builds Python objects for every vocabulary entry (~160 MB for a 49k vocabulary);
    it is dropped as soon as these light references are taken.
    """

    path: Path
    fields: list[FieldRef]
    tensors: list[TensorRef]
    arch: str
    kv: dict[str, Any]  # scalar / short-array values by key (long arrays are left out)
    types: dict[str, int]  # GGUFValueType of every key
    rope_tensors: dict[str, list[float]]
    version: int
    endian: str  # struct prefix: "<" or ">"
    alignment: int
    file_size: int

    @property
    def split_count(self) -> int:
        return int(self.kv.get("split.count") or 1)


def _damaged(path: Path, why: str) -> RopeconvError:
    return RopeconvError(f"{path} is not a readable GGUF file: {why}",
                         "the file is damaged or incomplete; download or convert it again")


def open_gguf(path: str | Path) -> GgufInfo:
    """Open and validate a GGUF file (clear errors for missing, truncated or foreign files)."""
    path = Path(path)
    if not path.is_file():
        raise RopeconvError(f"{path} does not exist", "pass a .gguf model file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(HEADER_MIN)
    except OSError as exc:
        raise RopeconvError(f"cannot read {path}: {exc.strerror or exc}",
                            "check the file and its permissions") from None
    if len(head) >= 4 and head[:4] != b"GGUF":
        raise RopeconvError(f"{path} is not a GGUF file (it starts with {head[:4]!r}, not b'GGUF')",
                            "pass a llama.cpp .gguf model file")
    if size < HEADER_MIN:
        raise _damaged(path, f"only {size} bytes, shorter than a GGUF header (truncated)")

    from gguf import GGUFReader

    try:
        reader = GGUFReader(path, "r")
    except Exception as exc:  # the reader signals damage with ValueError, IndexError, KeyError, …
        raise _damaged(path, _reason(exc)) from None
    try:
        end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=reader.data_offset)
        if end > size:
            raise _damaged(path, f"tensor data ends at byte {end} but the file has {size} bytes (truncated)")
        kv, types, rope_tensors = _read_metadata(reader)
        fields = [FieldRef(name, int(fld.offset), _field_size(fld)) for name, fld in reader.fields.items()
                  if not name.startswith("GGUF.")]
        tensors = [TensorRef(t.name, int(t.field.offset), _field_size(t.field), t.tensor_type.name,
                             int(t.tensor_type), tuple(int(x) for x in t.shape), int(t.n_bytes), int(t.data_offset))
                   for t in reader.tensors]
        version = int(reader.fields["GGUF.version"].parts[0][0])
        endian = "<" if reader.endianess.name == "LITTLE" else ">"
        alignment = int(reader.alignment)
    except RopeconvError:
        raise
    except Exception as exc:
        raise _damaged(path, _reason(exc)) from None
    finally:
        del reader
    arch = kv.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _damaged(path, "it has no general.architecture")
    return GgufInfo(path=path, fields=fields, tensors=tensors, arch=arch, kv=kv, types=types,
                    rope_tensors=rope_tensors, version=version, endian=endian, alignment=alignment, file_size=size)


def _read_metadata(reader: Any) -> tuple[dict[str, Any], dict[str, int], dict[str, list[float]]]:
    """(values of the scalar and short-array keys, value type of every key, frequency-factor tensors)."""
    import numpy as np
    from gguf import GGUFValueType

    kv: dict[str, Any] = {}
    types: dict[str, int] = {}
    for name, fld in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        types[name] = int(fld.types[0]) if fld.types else -1
        if not fld.types or (fld.types[0] == GGUFValueType.ARRAY and len(fld.data) > SMALL_ARRAY):
            continue
        try:
            value = fld.contents()
        except (UnicodeDecodeError, ValueError):  # e.g. a string that is not UTF-8: not a RoPE key
            continue
        kv[name] = value.item() if hasattr(value, "item") else value
    tensors = {t.name: [float(v) for v in np.asarray(t.data, dtype=np.float64).reshape(-1)]
               for t in reader.tensors if t.name in ROPE_TENSORS}
    return kv, types, tensors


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (IndexError, ValueError)) and ("reshape" in text or "index" in text or "out of bounds" in text):
        return f"it ends before its header or tensors do (truncated): {text}"
    return text


# ---------------------------------------------------------------------------------------------------------
# the RoPE description


@dataclass
class GgufRopeSpec(RopeSpec):
    """A RopeSpec read from GGUF metadata. With a frequency-factor tensor, the tensor is the truth."""

    freq_factors: list[float] | None = None  # rope_freqs values (inv_j = b_j / ff_j)
    raw: dict = field(default_factory=dict)  # the rope keys as stored

    def inv_freq(self, seq_len: int | None = None) -> tuple[list[float], float]:
        if self.freq_factors is not None:
            base = base_inv_freq(self.theta, self.rotary_dim)
            return [b / f for b, f in zip(base, self.freq_factors)], 1.0
        return super().inv_freq(seq_len)


def _key(arch: str, name: str) -> str:
    return f"{arch}.{name}"


def _scalar(value: Any) -> Any:
    if isinstance(value, list):
        nonzero = [v for v in value if v]
        return max(nonzero) if nonzero else None
    return value


def spec_from_gguf(reader: Any, original_context: int | None = None) -> GgufRopeSpec:
    """The RoPE description of an opened `gguf.GGUFReader` (same fields as `read_spec` gives for configs)."""
    kv, _, tensors = _read_metadata(reader)
    arch = kv.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise RopeconvError("the GGUF file has no general.architecture", "the file is damaged; convert it again")
    return spec_from_metadata(arch, kv, tensors, original_context=original_context)


def check_rope_arch(arch: str, kv: dict) -> list[str]:
    """Refuse architectures without RoPE; warn about ones this module does not know."""
    if arch in NON_ROPE:
        raise RopeconvError(f"unsupported architecture '{arch}': it uses {NON_ROPE[arch]}",
                            "no RoPE context extension applies to it")
    from gguf import MODEL_ARCH_NAMES

    has_rope_keys = any(k.startswith(f"{arch}.rope.") for k in kv)
    if arch not in MODEL_ARCH_NAMES.values():
        if not has_rope_keys:
            raise RopeconvError(f"unsupported architecture '{arch}': unknown to the gguf package and its file has "
                                f"no {arch}.rope.* keys",
                                "ropeconv handles GGUF files of RoPE models that llama.cpp knows")
        return [f"architecture '{arch}' is unknown to the installed gguf package; read from its {arch}.rope.* keys"]
    return []


def spec_from_metadata(arch: str, kv: dict, tensors: dict[str, list[float]],
                       original_context: int | None = None) -> GgufRopeSpec:
    """Build the RoPE description from metadata values and the frequency-factor tensors."""
    warnings = check_rope_arch(arch, kv)
    k = lambda name: _key(arch, name)  # noqa: E731
    raw = {key: value for key, value in kv.items()
           if key.startswith(f"{arch}.rope.") or key == k("context_length")}

    ctx = kv.get(k("context_length"))
    if not isinstance(ctx, int) or isinstance(ctx, bool) or ctx <= 0:
        raise RopeconvError(f"the GGUF file has no valid {k('context_length')} ({ctx!r})",
                            "llama.cpp needs it too: convert the model again")
    theta = float(kv.get(k("rope.freq_base")) or 10000.0)
    if theta <= 1:
        raise RopeconvError(f"{k('rope.freq_base')} is {theta:g}, which must be greater than 1",
                            "convert the model again")
    heads = _scalar(kv.get(k("attention.head_count")))
    embd = kv.get(k("embedding_length"))
    head_dim = kv.get(k("attention.key_length")) or (embd // heads if embd and heads else None)
    rotary_dim = kv.get(k("rope.dimension_count")) or head_dim
    if not head_dim or not rotary_dim:
        raise RopeconvError(f"the GGUF file gives neither {k('rope.dimension_count')} nor the head size",
                            "convert the model again")
    head_dim, rotary_dim = int(head_dim), int(rotary_dim)
    if rotary_dim < 2 or rotary_dim % 2:
        raise RopeconvError(f"rotary dimension {rotary_dim} is odd or too small", "convert the model again")

    stored_orig = kv.get(k("rope.scaling.original_context_length"))
    if original_context is not None:
        L0, source = int(original_context), "--original-context"
    elif stored_orig:
        L0, source = int(stored_orig), "rope.scaling.original_context_length"
    else:
        L0, source = int(ctx), "context_length"

    scaling_type = kv.get(k("rope.scaling.type"))
    factor = kv.get(k("rope.scaling.factor")) or kv.get(k("rope.scale_linear")) or None
    attn = float(kv.get(k("rope.scaling.attn_factor"), 1.0) or 1.0)
    freqs, long_f, short_f = tensors.get(ROPE_FREQS), tensors.get(FACTORS_LONG), tensors.get(FACTORS_SHORT)
    half = rotary_dim // 2
    for name, values in ((ROPE_FREQS, freqs), (FACTORS_LONG, long_f), (FACTORS_SHORT, short_f)):
        if values is not None and len(values) != half:
            raise RopeconvError(f"{name} has {len(values)} values but the model has {half} rotary pairs",
                                "the file is inconsistent; convert it again")

    if scaling_type not in (None, "none", "linear", "yarn", "longrope"):
        raise RopeconvError(f"{k('rope.scaling.type')} is {scaling_type!r}, which llama.cpp does not know",
                            "llama.cpp knows none, linear, yarn and longrope; convert the model again")
    # llama.cpp: type "none" forces scale 1; otherwise the factor key (or the old scale_linear) applies.
    eff_factor = None if scaling_type == "none" or not factor or float(factor) == 1.0 else float(factor)
    freq_factors = None
    scaling: dict = {}
    if scaling_type == "longrope" or (long_f and short_f and scaling_type != "yarn"):
        rope_type = "longrope"
        if not (long_f and short_f):
            raise RopeconvError(f"{k('rope.scaling.type')} is longrope but the file lacks the "
                                "rope_factors_long / rope_factors_short tensors", "convert the model again")
        scaling = {"factor": ctx / L0, "original_max_position_embeddings": L0, "short_factor": short_f,
                   "long_factor": long_f, "attention_factor": attn}
        if eff_factor:
            warnings.append(f"{k('rope.scaling.factor')} = {eff_factor:g} is set on a LongRoPE file: llama.cpp "
                            "divides the frequencies by it on top of the factor tensors")
    elif freqs is not None and not eff_factor and scaling_type != "yarn" and all(abs(f - 1) < 1e-6 for f in freqs):
        rope_type = "default"  # an all-ones rope_freqs tensor changes nothing
    elif freqs is not None and not eff_factor and scaling_type != "yarn":
        rope_type = "llama3"
        freq_factors = freqs
        fitted = fit_llama3(theta, rotary_dim, freqs, L0 if source != "context_length" else None)
        if fitted is not None:
            fit_L0, lf, hf, s = fitted
            if fit_L0 != L0:
                L0, source = fit_L0, "fitted to the rope_freqs tensor"
            scaling = {"factor": s, "low_freq_factor": lf, "high_freq_factor": hf,
                       "original_max_position_embeddings": L0}
        else:
            scaling = {"factor": max(freqs), "freq_factors": "rope_freqs tensor"}
            warnings.append("the rope_freqs tensor is not Llama 3 scaling with any L0/low/high factors ropeconv "
                            "could fit: shown as custom frequency factors")
    elif scaling_type == "yarn":
        rope_type = "yarn"
        s = float(factor or 1.0)
        scaling = {"factor": s, "original_max_position_embeddings": L0}
        # The betas llama.cpp uses: the keys where this architecture reads them, else its defaults.
        defaults = YARN_BETA_ARCHS.get(arch, YARN_BETA_DEFAULT)
        for i, name in enumerate(("beta_fast", "beta_slow")):
            stored = kv.get(k(f"rope.scaling.yarn_{name}"))
            if stored is not None and arch not in YARN_BETA_ARCHS:
                warnings.append(f"{k(f'rope.scaling.yarn_{name}')} = {stored:g} is ignored by llama.cpp for '{arch}' "
                                f"(it uses {defaults[i]:g})")
            value = float(stored) if stored is not None and arch in YARN_BETA_ARCHS else defaults[i]
            if value != YARN_BETA_DEFAULT[i]:
                scaling[name] = value
        if abs(attn - 1.0) > 1e-7:
            scaling["attention_factor"] = yarn_get_mscale(s) * attn
        if freqs is not None:
            warnings.append("the file has both YaRN keys and a rope_freqs tensor: llama.cpp applies both "
                            "(shown here without the tensor)")
        if kv.get(k("rope.scaling.yarn_log_multiplier")) is not None:
            warnings.append(f"{k('rope.scaling.yarn_log_multiplier')} is set: llama.cpp derives this "
                            f"architecture's YaRN attention factor from it")
    elif eff_factor:
        rope_type = "linear"
        scaling = {"factor": eff_factor}
        if freqs is not None:
            warnings.append("the file has a rope_freqs tensor and a linear factor: llama.cpp applies both "
                            "(shown here without the tensor)")
    else:
        rope_type = "default"
    if kv.get("split.count", 1) and int(kv.get("split.count", 1)) > 1:
        warnings.append(f"this is part {int(kv.get('split.no', 0)) + 1} of a {int(kv['split.count'])}-part split GGUF")
    extra = {}
    if kv.get(k("rope.dimension_sections")) is not None:
        extra["mrope_section"] = kv[k("rope.dimension_sections")]

    return GgufRopeSpec(model_type=arch, family=family_of(arch), path=(), theta=theta, head_dim=head_dim,
                        partial_rotary_factor=rotary_dim / head_dim, rotary_dim=rotary_dim,
                        max_position_embeddings=int(ctx), original_context=L0, original_context_source=source,
                        rope_type=rope_type, scaling=scaling, shape="gguf", extra=extra, warnings=warnings,
                        freq_factors=freq_factors, raw=raw)


def fit_llama3(theta: float, dim: int, ff: list[float], L0: int | None) -> tuple[int, float, float, float] | None:
    """(L0, low_freq_factor, high_freq_factor, factor) that reproduce a rope_freqs tensor, or None.

    In the blend band 1/ff_j = (1-t)/s + t with t = (L0/λ_j - lf)/(hf - lf), linear in 1/λ_j; a line
    through the band gives L0/(hf-lf) and lf/(hf-lf). With L0 unknown, lf = 1 (Llama 3.1) is assumed.
    Every candidate is checked against the whole tensor.
    """
    s = max(ff)
    if s <= 1 + 1e-6:
        return None
    s = float(f"{s:.6g}")
    wavelengths = [2 * math.pi / b for b in base_inv_freq(theta, dim)]
    band = [(1 / lam, (1 / f - 1 / s) / (1 - 1 / s)) for lam, f in zip(wavelengths, ff)
            if 1 + 1e-5 < f < s * (1 - 1e-5)]
    candidates: list[tuple[int, float, float]] = []
    if len(band) >= 2:
        n = len(band)
        mx = sum(x for x, _ in band) / n
        my = sum(y for _, y in band) / n
        sxx = sum((x - mx) ** 2 for x, _ in band)
        if sxx > 0:
            a = sum((x - mx) * (y - my) for x, y in band) / sxx
            c = my - a * mx
            if a > 0 and c < 0:
                if L0:
                    width = L0 / a
                    lf = -c * width
                    candidates.append((L0, lf, lf + width))
                else:
                    width = -1 / c
                    candidates.append((int(round(a * width)), 1.0, 1.0 + width))
    if L0:
        candidates.append((L0, 1.0, 4.0))
    for cand_L0, lf, hf in candidates:
        lf, hf = float(f"{lf:.6g}"), float(f"{hf:.6g}")
        if cand_L0 <= 0 or hf <= lf or lf <= 0:
            continue
        inv, _ = compute("llama3", Basis(theta, dim, cand_L0),
                         {"factor": s, "low_freq_factor": lf, "high_freq_factor": hf})
        if all(abs(b / i - f) <= 1e-4 * f for b, i, f in zip(base_inv_freq(theta, dim), inv, ff)):
            return cand_L0, lf, hf, s
    return None


def read_record(kv: dict) -> dict | None:
    """The ropeconv.* keys an earlier conversion wrote (the unscaled base), if any."""
    rec = {key[len(RECORD_PREFIX):]: v for key, v in kv.items() if key.startswith(RECORD_PREFIX)}
    return rec or None


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


# ---------------------------------------------------------------------------------------------------------
# inspect


def inspect_gguf(path: str | Path, method: str | None = None, factor: Any = None, params: dict | None = None, *,
                 target_context: Any = None, original_context: int | None = None) -> dict:
    """Explain a GGUF file's RoPE setup; with `method`, what `extend_gguf` would write."""
    info = open_gguf(path)
    spec = spec_from_metadata(info.arch, info.kv, info.rope_tensors, original_context=original_context)
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
            "ropeconv_record": read_record(info.kv),
            "llama_cpp_methods": supported_methods(info.arch),
        },
    }
    if method:
        plan = plan_gguf(info, method, factor=factor, target_context=target_context,
                         original_context=original_context, params=params, rebase=True)
        classes = dimension_classes(base_inv, plan.inv_freq, plan.factor)
        for d, new, cls in zip(dims, plan.inv_freq, classes):
            d.update(new_inv_freq=new, new_scale=base_inv[d["pair"]] / new, action=cls)
        result["conversion"] = {"method": method, "factor": plan.factor, "served_context": plan.served_context,
                                "attention_factor": plan.attention_factor, "after": plan.after.to_dict(),
                                "counts": {c: classes.count(c) for c in ("keep", "blend", "interpolate")},
                                "metadata_changes": plan.changes, "warnings": plan.warnings}
    return result


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
# extend


def default_output(path: Path, method: str, factor: float) -> Path:
    return path.absolute().parent / f"{path.stem}-{method}-x{factor:g}.gguf"


def _destination(src: Path, output: str | Path | None, method: str, factor: float, force: bool) -> Path:
    if output is None:
        dest = default_output(src, method, factor)
    else:
        dest = Path(output).expanduser()
        if dest.is_dir():
            dest = dest / default_output(src, method, factor).name
    dest = dest.absolute()
    if dest.suffix != ".gguf":
        raise RopeconvError(f"the output {dest.name} does not end in .gguf",
                            f"choose a name ending in .gguf, e.g. {default_output(src, method, factor).name}")
    if dest.resolve() == src.resolve() or (dest.exists() and os.path.samefile(dest, src)):
        raise RopeconvError(f"the output {dest} is the source file", "choose another -o: the source is never modified")
    if dest.exists() and not force:
        raise RopeconvError(f"{dest} already exists", "choose another -o, or pass --force to replace it")
    if dest.exists() and not dest.is_file():
        raise RopeconvError(f"{dest} exists and is not a file", "choose another -o")
    if not dest.parent.is_dir():
        raise RopeconvError(f"the output's folder {dest.parent} does not exist", "create it or choose another -o")
    if not os.access(dest.parent, os.W_OK):
        raise RopeconvError(f"cannot write into {dest.parent}: permission denied", "choose another -o")
    return dest


def extend_gguf(path: str | Path, method: str, *, factor: Any = None, target_context: Any = None,
                original_context: int | None = None, params: dict | None = None, output: str | Path | None = None,
                force: bool = False, dry_run: bool = False, progress: Callable[[int], None] | None = None,
                rebase: bool = False) -> dict:
    """Write a copy of the GGUF file at `path` whose metadata extends its context with `method`.

    Returns a report (JSON-able). `progress(n)` is called with the number of tensor bytes copied.
    With dry_run nothing is written. Raises RopeconvError for bad input; nothing is written then.
    """
    info = open_gguf(path)
    plan = plan_gguf(info, method, factor=factor, target_context=target_context,
                     original_context=original_context, params=params, rebase=rebase)
    dest = _destination(info.path, output, method, plan.factor, force)
    kept = [t for t in info.tensors if t.name not in plan.drop_tensors]
    report = {
        "source": {"kind": "gguf", "path": str(info.path)},
        "output": str(dest),
        "method": method,
        "factor": plan.factor,
        "params": plan.params,
        "served_context": plan.served_context,
        "attention_factor": plan.attention_factor,
        "before": plan.before.to_dict(),
        "after": plan.after.to_dict(),
        "config_diff": _diff_lines(plan.changes),
        "metadata_changes": plan.changes,
        "tensors": {"copied": len(kept), "added": sorted(plan.add_tensors),
                    "removed": sorted(plan.drop_tensors - set(plan.add_tensors)),
                    "replaced": sorted(plan.drop_tensors & set(plan.add_tensors)),
                    "bytes_copied": sum(t.n_bytes for t in kept)},
        "buffers": {"mode": "rewrite", "found": [], "pickled_shards": [], "changed": []},
        "gguf": {"architecture": info.arch, "source_size": info.file_size},
        "warnings": plan.warnings,
        "dry_run": dry_run,
    }
    if dry_run:
        return report
    written = write_gguf(info, plan, dest, progress=progress)
    report["gguf"]["output_size"] = written
    return report


def _encode_str(text: str | bytes, e: str) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack(e + "Q", len(data)) + data


def _encode_kv(key: str, vtype: int, value: Any, e: str) -> bytes:
    from gguf import GGUFValueType as T

    formats = {T.UINT8: "B", T.INT8: "b", T.UINT16: "H", T.INT16: "h", T.UINT32: "I", T.INT32: "i",
               T.FLOAT32: "f", T.UINT64: "Q", T.INT64: "q", T.FLOAT64: "d", T.BOOL: "?"}
    out = _encode_str(key, e) + struct.pack(e + "I", vtype)
    if T(vtype) == T.STRING:
        return out + _encode_str(value, e)
    return out + struct.pack(e + formats[T(vtype)], value)


def _field_size(fld: Any) -> int:
    return sum(int(part.nbytes) for part in fld.parts)


def _read_exact(src, offset: int, size: int) -> bytes:
    src.seek(offset)
    data = src.read(size)
    if len(data) != size:
        raise RopeconvError(f"{src.name} ended early while copying (truncated)", "download or convert it again")
    return data


def _pad(n: int, align: int) -> int:
    return (align - n % align) % align


def write_gguf(info: GgufInfo, plan: GgufPlan, dest: Path, progress: Callable[[int], None] | None = None) -> int:
    """Write the planned file to `dest`: a temporary file beside it, checked, then renamed. Returns its size."""
    umask = os.umask(0)
    os.umask(umask)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".ropeconv-tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            write_stream(info, plan, out, progress=progress)
            out.flush()
            os.fsync(out.fileno())
        _verify(tmp, info, plan)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise RopeconvError(f"cannot write {dest}: {exc.strerror or exc}",
                                "check free space and permissions, or choose another -o") from None
        raise
    return dest.stat().st_size


def write_stream(info: GgufInfo, plan: GgufPlan, out: Any, progress: Callable[[int], None] | None = None) -> None:
    """Write the new file to the binary stream `out`: header, metadata, tensor infos, then tensor data
    copied from the source in CHUNK-sized reads (never more than one chunk in memory)."""
    import numpy as np
    from gguf import GGMLQuantizationType

    e, align = info.endian, info.alignment
    with open(info.path, "rb") as src:
        kv_blobs: list[bytes] = []
        for fld in info.fields:
            if fld.name in plan.drop_kv:
                continue
            if fld.name in plan.set_kv:
                kv_blobs.append(_encode_kv(fld.name, *plan.set_kv[fld.name], e))
            else:  # copied byte for byte: types and values exactly as they were
                kv_blobs.append(_read_exact(src, fld.offset, fld.size))
        present = {fld.name for fld in info.fields}
        for key, (vtype, value) in plan.set_kv.items():
            if key not in present:
                kv_blobs.append(_encode_kv(key, vtype, value, e))

        entries = []  # (tensor-info bytes without the offset, nbytes, source offset or the new tensor's bytes)
        for t in info.tensors:
            if t.name in plan.drop_tensors:
                continue
            entries.append((_read_exact(src, t.info_offset, t.info_size - 8), t.n_bytes, t.data_offset))
        for name, values in plan.add_tensors.items():
            data = np.asarray(values, dtype=np.dtype(np.float32).newbyteorder(e)).tobytes()
            ti = (_encode_str(name, e) + struct.pack(e + "I", 1) + struct.pack(e + "Q", len(values))
                  + struct.pack(e + "I", int(GGMLQuantizationType.F32)))
            entries.append((ti, len(data), data))

        pos = 0

        def emit(data) -> None:
            nonlocal pos
            out.write(data)
            pos += len(data)

        emit(_read_exact(src, 0, 4))  # magic
        emit(struct.pack(e + "I", info.version))
        emit(struct.pack(e + "Q", len(entries)))
        emit(struct.pack(e + "Q", len(kv_blobs)))
        for blob in kv_blobs:
            emit(blob)
        offset = 0
        for ti, nbytes, _ in entries:
            emit(ti + struct.pack(e + "Q", offset))
            offset += nbytes + _pad(nbytes, align)
        emit(b"\0" * _pad(pos, align))

        buf = bytearray(CHUNK)
        view = memoryview(buf)
        for _, nbytes, origin in entries:
            if isinstance(origin, bytes):
                emit(origin)
            else:
                src.seek(origin)
                left = nbytes
                while left:
                    got = src.readinto(view[:min(CHUNK, left)])
                    if not got:
                        raise RopeconvError(f"{info.path} ended early while copying tensor data (truncated)",
                                            "download or convert it again")
                    emit(view[:got])
                    left -= got
                    if progress:
                        progress(got)
            emit(b"\0" * _pad(nbytes, align))


def _verify(tmp: Path, info: GgufInfo, plan: GgufPlan) -> None:
    """The written file must read back: every tensor, the planned metadata and RoPE description."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(tmp, "r")
    except Exception as exc:
        raise AssertionError(f"the written GGUF does not read back: {exc}") from None
    try:
        src = {t.name: t for t in info.tensors if t.name not in plan.drop_tensors}
        got = {t.name: t for t in reader.tensors}
        if set(got) != set(src) | set(plan.add_tensors):
            raise AssertionError("the written GGUF has a different tensor list than planned")
        for name, t in src.items():
            g = got[name]
            if int(g.tensor_type) != t.type_id or g.n_bytes != t.n_bytes or tuple(int(x) for x in g.shape) != t.shape:
                raise AssertionError(f"tensor {name} was written with a different type or shape")
        after = spec_from_gguf(reader)
        if after.to_dict() != plan.after.to_dict():
            raise AssertionError("the written GGUF reads back a different RoPE description than planned")
    finally:
        del reader
